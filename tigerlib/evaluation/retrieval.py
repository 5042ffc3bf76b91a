"""Retrieval metrics: Recall@K with any number of correct gallery items per query.

A hit is defined once, by the data (:func:`tigerlib.data.world_store.hit_sets`): the same entity,
or a scene with exactly the query's attributes. Recall is computed once, here, whether a method
gives a full score matrix or rankings of any length."""
from __future__ import annotations

import time

import numpy as np
import torch

from ..data.world_store import hit_sets
from .judging import top1_accuracy

__all__ = ["hit_sets", "recall_at_k", "rankings_of", "retrieval_metrics"]

KINDS = ("knowledge", "common")
KS = (1, 5, 10)


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


def _recalls(rankings, hits) -> dict[str, float]:
    return {f"r{k}": v for k, v in recall_at_k(rankings, hits, KS).items()}


def retrieval_metrics(retriever, queries, judge_reading=None, n_queries: int | None = None) -> dict:
    """R@1/5/10 per query kind (the first ``n_queries`` of each; None: all), ms per query and
    (with the judge's reading of the gallery) the judge's accuracy of each top-1, for any :class:`Retriever`."""
    out: dict = {}
    seconds, n = 0.0, 0
    for kind in KINDS:
        q = queries.subset(kind)
        if n_queries is not None:
            q = q.subset(np.arange(min(n_queries, len(q))))
        t0 = time.perf_counter()
        rankings = retriever.retrieve(list(q.texts), k=max(KS))
        seconds += time.perf_counter() - t0
        n += len(q)
        out[kind] = _recalls(rankings, q.hits)
        if judge_reading is not None:
            top1 = np.array([r.top1 for r in rankings], dtype=np.int64)
            acc = top1_accuracy(judge_reading, top1, q.attributes)
            out.setdefault("judge_top1_accuracy", {})[kind] = acc["entity"] if kind == "knowledge" else acc["all"]
    out["ms_per_query"] = round(1000 * seconds / max(1, n), 2)
    return out
