"""Dense retrieval: the dual-encoder baseline every generative retriever is compared with.

The gallery is embedded once; a query is one text embedding and an exact top-k over a matrix
product (cost grows linearly with the gallery)."""
from __future__ import annotations

import numpy as np
import torch

from ..errors import TigerError


class DenseRetriever:
    def __init__(self, dual_encoder, gallery_images, batch_size: int = 512):
        if len(gallery_images) == 0:
            raise TigerError("the gallery is empty: dense retrieval needs at least one image")
        self.encoder = dual_encoder
        self.embeddings = dual_encoder.encode_images(gallery_images, batch_size=batch_size)

    def scores(self, texts: list[str]) -> torch.Tensor:
        """Cosine similarity of every prompt with every gallery image: [queries, gallery]."""
        if isinstance(texts, str):
            texts = [texts]
        return self.encoder.encode_text(list(texts)) @ self.embeddings.T

    def search(self, texts: list[str], k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """Top-k gallery indices and scores per prompt (k is capped at the gallery size)."""
        s = self.scores(texts)
        top = s.topk(min(k, s.shape[1]), dim=1)
        return top.indices.cpu().numpy(), top.values.cpu().numpy()
