"""Dense retrieval: the dual-encoder baseline every generative retriever is compared with.

The gallery is embedded once; a query is one text embedding and an exact top-k over a matrix
product (cost grows linearly with the gallery)."""
from __future__ import annotations

import torch

from ..errors import TigerError
from .retriever import EmbeddingRetriever


class DenseRetriever(EmbeddingRetriever):
    """Ranks the gallery by cosine similarity of the prompt and image embeddings."""

    def __init__(self, dual_encoder, gallery_images, batch_size: int = 512):
        if len(gallery_images) == 0:
            raise TigerError("the gallery is empty: dense retrieval needs at least one image")
        self.encoder = dual_encoder
        self.embeddings = dual_encoder.encode_images(gallery_images, batch_size=batch_size)

    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        return self.encoder.encode_text(prompts)

    def known_word_shares(self, prompts: list[str]) -> list[float]:
        return self.encoder.known_word_share(prompts)
