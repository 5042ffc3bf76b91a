"""Dense retrieval: the dual-encoder baseline every generative retriever is compared with.

The gallery is embedded once; a query is one text embedding and an exact top-k over a matrix
product (cost grows linearly with the gallery)."""
from __future__ import annotations

import time

import torch

from ..errors import TigerError
from .retriever import Ranking, Retriever, check_prompts


class DenseRetriever(Retriever):
    """Ranks the gallery by cosine similarity of the prompt and image embeddings."""

    score_name = "cosine"

    def __init__(self, dual_encoder, gallery_images, batch_size: int = 512):
        if len(gallery_images) == 0:
            raise TigerError("the gallery is empty: dense retrieval needs at least one image")
        self.encoder = dual_encoder
        self.embeddings = dual_encoder.encode_images(gallery_images, batch_size=batch_size)

    def __len__(self) -> int:
        return len(self.embeddings)

    def scores(self, prompts) -> torch.Tensor:
        """Cosine similarity with every gallery image: [Q, N] for a list, [N] for one string."""
        texts, single = check_prompts(prompts)
        s = self.encoder.encode_text(texts) @ self.embeddings.T
        return s[0] if single else s

    def _retrieve(self, prompts: list[str], k: int | None) -> list[Ranking]:
        t0 = time.perf_counter()
        s = self.scores(prompts)
        top = s.topk(len(self) if k is None else min(k, len(self)), dim=1)
        seconds = (time.perf_counter() - t0) / max(1, len(prompts))
        known = self.encoder.known_word_share(prompts)
        return [Ranking(p, top.indices[i].cpu(), top.values[i].cpu(), self.score_name, seconds, known[i]) for i, p in enumerate(prompts)]
