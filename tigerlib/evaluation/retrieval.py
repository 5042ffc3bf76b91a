"""Retrieval metrics: Recall@K with any number of correct gallery items per query.

A hit is defined once, by the data (:func:`tigerlib.data.world_store.hit_sets`): the same entity,
or a scene with exactly the query's attributes. Recall is computed once, here, whether a method
gives a full score matrix or rankings of any length."""
from __future__ import annotations

import numpy as np
import torch

from ..data.world_store import hit_sets

__all__ = ["hit_sets", "recall_at_k", "rankings_of"]


def rankings_of(ranked, kmax: int | None = None) -> list[np.ndarray]:
    """Rankings (gallery indices best first) from a float score matrix [Q, G] (higher is better),
    an integer index matrix [Q, k] (-1: nothing there), a list of index arrays, or a list of
    :class:`~tigerlib.methods.retriever.Ranking`."""
    if isinstance(ranked, (torch.Tensor, np.ndarray)) and torch.as_tensor(ranked).is_floating_point():
        scores = torch.as_tensor(ranked, dtype=torch.float32)
        if scores.ndim != 2:
            raise ValueError(f"a score matrix must be [queries, gallery]; got shape {tuple(scores.shape)}")
        k = scores.shape[1] if kmax is None else min(kmax, scores.shape[1])
        return list(scores.topk(k, dim=1).indices.cpu().numpy())
    out = []
    for r in ranked:
        r = r.indices if hasattr(r, "score_name") else r  # a Ranking
        r = np.asarray(r.cpu() if isinstance(r, torch.Tensor) else r, dtype=np.int64).reshape(-1)
        out.append(r[r >= 0])
    return out


def recall_at_k(ranked, hits: list[np.ndarray], ks=(1, 5, 10)) -> dict[int, float]:
    """Share of queries with at least one of their ``hits`` among the first k of their ranking
    (``ranked``: anything :func:`rankings_of` reads). A query without hits never counts as found;
    a ranking shorter than k simply has fewer chances."""
    rankings = rankings_of(ranked, max(ks))
    if len(rankings) != len(hits):
        raise ValueError(f"got {len(rankings)} rankings for {len(hits)} hit lists: pass one hit list per query")
    out = {}
    for k in ks:
        found = [bool(len(h)) and bool(np.isin(r[:k], h).any()) for r, h in zip(rankings, hits)]
        out[k] = round(float(np.mean(found)) if found else 0.0, 4)
    return out
