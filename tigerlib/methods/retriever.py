"""The one retrieval interface: prompts in, a ranking out.

Every retriever (dense, TIGeR, GRACE, GILL's retrieval head; a user's own) subclasses :class:`Retriever`
and implements :meth:`Retriever._retrieve` for a batch of prompts; one that embeds prompts and images
in a shared space subclasses :class:`EmbeddingRetriever` and implements only ``encode_prompts``.
Callers use:

- ``retrieve("a prompt")`` -> one :class:`Ranking`; ``retrieve([p1, p2])`` -> a list of them;
- ``top_k(prompts, k)`` -> (indices [Q, k], scores [Q, k]) as arrays (-1 / -inf where fewer
  than k were found); a single string gives [k] arrays.

A :class:`Ranking` holds gallery indices best first, their scores on one scale per method (named by
``score_name``), the seconds it took, and the share of the prompt's words the model knows.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import TigerError
from ..models.vocabulary import unknown_prompt_warning


@dataclass
class Ranking:
    """One prompt's answer from any retriever."""

    prompt: str
    indices: torch.Tensor  # [R] gallery indices, best first
    scores: torch.Tensor  # [R] non-increasing, on the retriever's one scale (score_name)
    score_name: str
    seconds: float = 0.0
    known_word_share: float = 1.0  # share of the prompt's words seen in training; 0: the model understood nothing

    @property
    def top1(self) -> int:
        """The best gallery index (-1 if the ranking is empty)."""
        return int(self.indices[0]) if len(self.indices) else -1

    @property
    def warning(self) -> str | None:
        """A one-line warning when the model knows none of the prompt's words, else None."""
        return unknown_prompt_warning(self.prompt, self.known_word_share)


def check_prompts(prompts) -> tuple[list[str], bool]:
    """(a list of prompts, whether one bare string was given). None counts as an empty prompt."""
    if isinstance(prompts, str) or prompts is None:
        return ["" if prompts is None else prompts], True
    try:
        out = ["" if p is None else str(p) for p in prompts]
    except TypeError:
        raise TigerError(f"prompts must be a string or a list of strings, got {type(prompts).__name__}") from None
    return out, False


class Retriever:
    """Base class: subclasses set ``score_name`` and implement ``_retrieve(prompts, k)``."""

    score_name = "score"

    def __len__(self) -> int:  # gallery size
        raise NotImplementedError

    def _retrieve(self, prompts: list[str], k: int | None, **options) -> list[Ranking]:
        raise NotImplementedError

    def retrieve(self, prompts, k: int | None = None, **options):
        """Rank the gallery for one prompt (a :class:`Ranking`) or a list (a list of them).
        ``k``: keep the best k (None: everything the method ranks)."""
        if k is not None and int(k) < 1:
            raise TigerError(f"k={k}: ask for at least one result (or k=None for the whole ranking)")
        texts, single = check_prompts(prompts)
        out = self._retrieve(texts, None if k is None else int(k), **options)
        return out[0] if single else out

    def top_k(self, prompts, k: int = 5, **options) -> tuple[np.ndarray, np.ndarray]:
        """Top-k gallery indices and scores as arrays: [Q, k] for a list, [k] for one string."""
        texts, single = check_prompts(prompts)
        rankings = self.retrieve(texts, k=k, **options)
        idx, val = np.full((len(texts), k), -1), np.full((len(texts), k), -np.inf, dtype=np.float32)
        for i, r in enumerate(rankings):
            n = min(k, len(r.indices))
            idx[i, :n], val[i, :n] = r.indices[:n].cpu().numpy(), r.scores[:n].float().cpu().numpy()
        return (idx[0], val[0]) if single else (idx, val)


class EmbeddingRetriever(Retriever):
    """Cosine retrieval over a gallery embedded once: subclasses set ``self.embeddings`` ([N, D],
    unit rows) and implement ``encode_prompts`` (and ``known_word_shares`` when words can be unknown)."""

    score_name = "cosine"
    embeddings: torch.Tensor

    def __len__(self) -> int:
        return len(self.embeddings)

    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        raise NotImplementedError

    def known_word_shares(self, prompts: list[str]) -> list[float]:
        return [1.0] * len(prompts)

    def scores(self, prompts) -> torch.Tensor:
        """Cosine similarity with every gallery image: [Q, N] for a list, [N] for one string."""
        texts, single = check_prompts(prompts)
        s = self.encode_prompts(texts) @ self.embeddings.T
        return s[0] if single else s

    def _retrieve(self, prompts: list[str], k: int | None) -> list[Ranking]:
        t0 = time.perf_counter()
        top = self.scores(prompts).topk(len(self) if k is None else min(k, len(self)), dim=1)
        seconds = (time.perf_counter() - t0) / max(1, len(prompts))
        known = self.known_word_shares(prompts)
        return [Ranking(p, top.indices[i].cpu(), top.values[i].cpu(), self.score_name, seconds, known[i]) for i, p in enumerate(prompts)]
