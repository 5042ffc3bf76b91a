"""``tiger eval grace``: GRACE's identifier types on the mini world's knowledge and common queries.

Per type: R@1/5/10 on both query kinds with 10-beam trie-constrained search, the judge's reading
of each top-1, milliseconds per query, training seconds and added parameters; next to them the
dense baseline on the same queries and gallery. Then what GRACE leaves open:

- **describe by identifier**: the model is asked to describe a memorized image from its identifier
  alone; the share of descriptions that name the image's shape and colour (or its entity);
- **forgetting**: 100 new images (scenes whose attributes no gallery image has) memorized with a
  short fine-tune; R@1 on queries for the new images and on the old queries, before and after.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from ..data import world as W
from ..data.dataset import CaptionedImages, Queries
from ..data.world_store import hit_sets
from ..errors import TigerError
from ..identifiers import words
from .retrieval import KINDS, KS, recall_at_k, retrieval_metrics  # noqa: F401 (KS, retrieval_metrics: notebook 02 and tests reach them here)


def subgallery(world, idx) -> tuple[CaptionedImages, Queries]:
    """A part of the gallery (indices ``idx``) and the queries it can answer (knowledge and common
    ones with a hit in it), their hits renumbered into it: for small experiments."""
    idx = np.asarray(idx, dtype=np.int64)
    local = {int(g): j for j, g in enumerate(idx)}
    q = world.queries
    keep = [i for i in range(len(q)) if q.kind[i] in KINDS and any(int(h) in local for h in q.hits[i])]
    sub = q.subset(keep)
    sub.hits = [np.array([local[int(h)] for h in hits if int(h) in local], dtype=np.int64) for hits in sub.hits]
    sub.gallery_index = np.array([local.get(int(g), -1) for g in sub.gallery_index], dtype=np.int64)
    return world.gallery.subset(idx), sub


def evaluate_grace_model(grace, world, n_queries: int = 100) -> dict:
    """What the zoo records for one trained GRACE model (knowledge and common R@1/5/10, ms/query)."""
    return retrieval_metrics(grace, world.queries, n_queries=n_queries)


def describe_accuracy(grace, gallery: CaptionedImages, entity_names: list[str], n: int = 100, seed: int = 0) -> dict:
    """Share of ``n`` gallery images (half scenes, half entities where there are) whose
    description from the identifier alone names their shape and colour (scenes) or their entity's
    name (entities). Words are matched as the world writes them."""
    attrs = gallery.attributes
    if not attrs:
        raise TigerError("describe accuracy needs the gallery's ground truth (the mini world's gallery)")
    rng = np.random.default_rng(seed)
    scenes = np.flatnonzero(attrs["kind"] == W.KIND_COMMON)
    ents = np.flatnonzero(attrs["kind"] == W.KIND_ENTITY)
    pick = np.concatenate([rng.choice(scenes, min(len(scenes), n - min(len(ents), n // 2)), replace=False), rng.choice(ents, min(len(ents), n // 2), replace=False)])
    texts = grace.describe(pick)
    right = {"scene": [], "entity": []}
    for i, text in zip(pick.tolist(), texts):
        said = set(words(text))
        if attrs["kind"][i] == W.KIND_COMMON:
            right["scene"].append(W.SHAPES[attrs["shape"][i]] in said and W.COLOR_NAMES[attrs["color"][i]] in said)
        else:
            right["entity"].append(set(words(entity_names[attrs["entity"][i]])) <= said)
    out = {k: round(float(np.mean(v)), 4) if v else None for k, v in right.items()}
    out["examples"] = [{"image": int(i), "identifier": grace.identifier_text(i), "description": t} for i, t in list(zip(pick.tolist(), texts))[:: max(1, len(pick) // 6)]]
    return out


def new_scenes(world, n: int = 100) -> np.ndarray:
    """Indices of ``n`` validation scenes whose attributes no gallery image has (so a query for one
    of them is answered only by new images)."""
    g, v = world.gallery.attributes, world.val.attributes
    seen = {tuple(int(g[k][i]) for k in W.ATTRIBUTES) for i in np.flatnonzero(g["kind"] == W.KIND_COMMON)}
    fresh = [i for i in range(len(world.val)) if tuple(int(v[k][i]) for k in W.ATTRIBUTES) not in seen]
    if len(fresh) < n:
        raise TigerError(f"only {len(fresh)} validation scenes are new to the gallery, {n} asked for: ask for fewer")
    return np.asarray(fresh[:n], dtype=np.int64)


def forgetting_study(grace, lmm, visual_tokenizer, dual_encoder, world, n_new: int = 100, steps: int = 40, n_queries: int | None = None, seed: int = 0) -> tuple[dict, object]:
    """Memorize ``n_new`` new images into a trained GRACE model with a short fine-tune on them
    alone (memorize + retrieve from their pseudo-queries), then R@1 on queries for the new images
    (one of their world captions each; their other captions are the semantic ids) and on the old
    knowledge and common queries (the first ``n_queries`` of each; None: all), before and after.
    Returns the numbers and the fine-tuned model."""
    from dataclasses import replace

    from ..methods.grace import extend_identifiers, pseudo_queries, train_grace

    idx = new_scenes(world, n_new)
    new = world.val.subset(idx)
    held = CaptionedImages("new", new.images, [c[1:] or c for c in new.captions], new.attributes)
    gallery = world.gallery
    all_attrs = {k: np.concatenate([gallery.attributes[k], new.attributes[k]]) for k in gallery.attributes}
    new_queries = [c[0] for c in new.captions]
    new_hits = hit_sets(all_attrs, new.attributes)
    old = {kind: world.queries.subset(kind) for kind in KINDS}
    if n_queries is not None:
        old = {kind: q.subset(np.arange(min(n_queries, len(q)))) for kind, q in old.items()}
    old_hits = {kind: hit_sets(all_attrs, q.attributes) for kind, q in old.items()}

    def r1(model, old_model=None) -> dict:
        out = {"new": recall_at_k(model.retrieve(new_queries, k=1), new_hits, (1,))[1]}
        model = old_model or model
        for kind, q in old.items():
            out[kind] = recall_at_k(model.retrieve(list(q.texts), k=1), old_hits[kind], (1,))[1]
        return out

    old_codes, new_codes = visual_tokenizer.encode(gallery.images), visual_tokenizer.encode(new.images)
    emb_old = dual_encoder.encode_images(gallery.images).cpu().numpy()
    emb_new = dual_encoder.encode_images(new.images).cpu().numpy()
    ids = extend_identifiers(grace.identifiers, held, emb_old, emb_new)
    bigger = grace.with_new_images(ids, np.concatenate([emb_old, emb_new]), seed)
    before = r1(bigger, old_model=grace)  # the old queries: the model as it was
    cfg = grace.config
    pq = pseudo_queries(lmm, new_codes, cfg.pseudo_queries, cfg.candidates, cfg.top_p, seed, dual_encoder, new.images)
    n = grace.identifiers.n_images
    queries = [[""]] * n + pq  # only the new images are trained on
    codes = torch.cat([torch.as_tensor(old_codes), torch.as_tensor(new_codes)])
    t0 = time.perf_counter()
    tuned, stats = train_grace(lmm, ids, codes, queries, replace(cfg, steps=steps, warmup=min(cfg.warmup, steps // 4), decay=min(cfg.decay, steps // 2)),
                               seed, grace=bigger, images=np.arange(n, n + n_new))
    after = r1(tuned)
    return {
        "id_type": grace.identifiers.kind,
        "new_images": n_new,
        "steps": steps,
        "train_seconds": round(time.perf_counter() - t0, 1),
        "before": before,
        "after": after,
        "forgotten": {kind: round(before[kind] - after[kind], 4) for kind in KINDS},
    }, tuned


def evaluate_grace(models: dict, dense, world, judge=None, manifests: dict | None = None, lmm=None, visual_tokenizer=None, dual_encoder=None,
                   forgetting_types: int = 2, n_new: int = 100, forgetting_steps: int = 40, n_queries: int | None = None, describe_n: int = 100,
                   seed: int = 0) -> dict:
    """The numbers behind notebook 02 and ``tiger eval grace``: ``models`` maps identifier type ->
    trained :class:`GRACE`; ``dense`` is the dense baseline on the same gallery. With the LMM,
    visual tokenizer and dual encoder, the forgetting study runs for the ``forgetting_types``
    best types (by the mean of knowledge and common R@1)."""
    if not models:
        raise TigerError("no GRACE models to evaluate: build them with `tiger zoo build`")
    reading = judge.read(world.gallery.images) if judge is not None else None
    out: dict = {"gallery": len(world.gallery), "num_beams": next(iter(models.values())).config.num_beams,
                 "n_queries": {k: min(n_queries or 10**9, int((world.queries.kind == k).sum())) for k in KINDS}, "types": {}}
    for t, model in models.items():
        rec = retrieval_metrics(model, world.queries, reading, n_queries)
        info = (manifests or {}).get(t, {})
        rec["train_seconds"] = info.get("train_seconds")
        rec["added_parameters"] = model.added_parameters
        rec["identifiers"] = model.identifiers.stats()
        out["types"][t] = rec
    out["dense"] = retrieval_metrics(dense, world.queries, reading, n_queries)
    ranked = sorted(out["types"], key=lambda t: out["types"][t]["common"]["r1"] + out["types"][t]["knowledge"]["r1"], reverse=True)
    out["best_type"] = ranked[0]
    out["describe_accuracy"] = {t: describe_accuracy(m, world.gallery, world.entity_names, n=describe_n, seed=seed) for t, m in models.items()}
    out["forgetting"] = {}
    if lmm is not None and visual_tokenizer is not None and dual_encoder is not None and forgetting_types > 0:
        for t in ranked[:forgetting_types]:
            out["forgetting"][t], _ = forgetting_study(models[t], lmm, visual_tokenizer, dual_encoder, world, n_new, forgetting_steps, n_queries, seed)
    return out


def findings(result: dict, forgetting: dict | None = None) -> list[str]:
    """What :func:`evaluate_grace` (and a forgetting study) found, stated from the numbers."""
    types, dense = result["types"], result["dense"]
    order = sorted(types, key=lambda t: types[t]["common"]["r1"], reverse=True)
    best = result["best_type"]
    lines = [
        "identifier types by common-scene R@1: " + ", ".join(f"{t} {types[t]['common']['r1']:.2f}" for t in order) + f" (dense {dense['common']['r1']:.2f})",
        f"best type {best}: common R@1 {types[best]['common']['r1']:.2f} = {types[best]['common']['r1'] / max(dense['common']['r1'], 1e-9):.2f}x dense, "
        f"knowledge R@1 {types[best]['knowledge']['r1']:.2f} (dense {dense['knowledge']['r1']:.2f})",
        f"best type at {types[best]['ms_per_query']:.0f} ms per query against dense {dense['ms_per_query']:.1f} ms",
    ]
    desc = result.get("describe_accuracy", {}).get(best)
    if desc:
        lines.append(f"describing from the identifier alone ({best}): shape and colour named for {desc['scene']:.0%} of scenes, the name for {desc['entity']:.0%} of entities")
    f = forgetting or (result.get("forgetting") or {}).get(best)
    if f:
        lines.append(f"memorizing {f['new_images']} new images ({f['id_type']}, {f['steps']} steps on them alone): new-image R@1 {f['before']['new']:.2f} -> {f['after']['new']:.2f}, "
                     f"old common {f['before']['common']:.2f} -> {f['after']['common']:.2f}, old knowledge {f['before']['knowledge']:.2f} -> {f['after']['knowledge']:.2f}")
    return lines
