"""Retrieval metrics: Recall@K with any number of correct gallery items per query."""
from __future__ import annotations

import numpy as np
import torch

from ..data import world as W


def recall_at_k(scores, hits: list[np.ndarray], ks=(1, 5, 10)) -> dict[int, float]:
    """Share of queries with at least one correct item in the top k. ``scores``: [Q, G] (higher
    is better); ``hits[q]``: indices of the gallery items that answer query q (empty: never a hit)."""
    scores = torch.as_tensor(scores, dtype=torch.float32)
    if scores.ndim != 2 or scores.shape[0] != len(hits):
        raise ValueError(f"scores must be [queries, gallery] with one hit list per query; got {tuple(scores.shape)} and {len(hits)}")
    kmax = min(max(ks), scores.shape[1])
    top = scores.topk(kmax, dim=1).indices.cpu().numpy()
    out = {}
    for k in ks:
        found = [np.isin(top[q, :k], h).any() if len(h) else False for q, h in enumerate(hits)]
        out[k] = round(float(np.mean(found)) if found else 0.0, 4)
    return out


def attribute_hits(gallery_attrs: dict[str, np.ndarray], query_attrs: dict[str, np.ndarray], rows: np.ndarray) -> list[np.ndarray]:
    """For each query (described by ``query_attrs`` at index ``rows[q]``), the gallery items that
    show exactly the same thing: the same entity, or a common scene with identical attributes."""
    keys = ("kind", "entity") + W.ATTRIBUTES
    g = np.stack([gallery_attrs[k] for k in keys], axis=1).astype(np.int64)
    q = np.stack([query_attrs[k][rows] for k in keys], axis=1).astype(np.int64)
    # group identical descriptions once instead of comparing every pair
    uniq, inverse = np.unique(np.concatenate([g, q]), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    g_code, q_code = inverse[: len(g)], inverse[len(g) :]
    order = np.argsort(g_code, kind="stable")
    starts = np.searchsorted(g_code[order], np.arange(len(uniq) + 1))
    return [order[starts[c] : starts[c + 1]] for c in q_code]
