"""The quality each zoo model reports when it is built (``tiger zoo status --json``).

Every number here goes through the library's one recall (:func:`recall_at_k`), one hit
definition (:func:`hit_sets`) and the judge (:mod:`judging`); the zoo calls these functions and
the quality tests check them against floors."""
from __future__ import annotations

import numpy as np
import torch

from ..data import world as W
from ..data.world_store import ATTR_KEYS
from .judging import attribute_accuracy, judge_images, pick
from .retrieval import hit_sets, recall_at_k


def own_image_hits(n: int) -> list[np.ndarray]:
    """Each query's only hit is its own image (reconstruction, exact-copy retrieval)."""
    return [np.array([i]) for i in range(n)]


def evaluate_dual_encoder(enc, world) -> dict:
    """Text->image recall on the held-out val scenes (every caption a query; a hit is any image
    with exactly the caption's attributes), ``own_image_r1`` (the caption's own image), the
    random baseline, and entity-name -> image R@1 on the gallery."""
    val = world.val
    texts = [c for caps in val.captions for c in caps]
    owner = np.repeat(np.arange(len(val)), [len(c) for c in val.captions])
    scores = enc.encode_text(texts) @ enc.encode_images(val.images).T
    hits = hit_sets(val.attributes, val.attributes, owner)
    r = recall_at_k(scores, hits, ks=(1, 5, 10))
    own = recall_at_k(scores, [np.array([o]) for o in owner], ks=(1,))
    random_r1 = float(np.mean([len(h) / len(val) for h in hits]))

    gallery = world.gallery
    idx = np.flatnonzero(gallery.attributes["entity"] >= 0)
    e_texts = [c for i in idx for c in gallery.captions[i]]
    e_owner = np.repeat(idx, [len(gallery.captions[i]) for i in idx])
    e_scores = enc.encode_text(e_texts) @ enc.encode_images(gallery.images).T
    entity = recall_at_k(e_scores, hit_sets(gallery.attributes, gallery.attributes, e_owner), ks=(1,))
    return {
        "t2i_r1": r[1],
        "t2i_r5": r[5],
        "t2i_r10": r[10],
        "own_image_r1": own[1],
        "random_r1": round(random_r1, 4),
        "entity_r1": entity[1],
        "n_queries": len(texts),
        "n_gallery": len(val),
    }


def evaluate_tokenizer(tok, dual_encoder, world) -> dict:
    """Reconstructions must stay identifiable: the dual encoder retrieves each val original from
    its reconstruction (image -> image R@1 among the val images). Codebook usage and the share of
    gallery images with a unique code sequence (duplicates are kept, never dropped)."""
    val = world.val.images
    recon = tok.decode(tok.encode(val))
    scores = dual_encoder.encode_images(recon) @ dual_encoder.encode_images(val).T
    r = recall_at_k(scores, own_image_hits(len(val)), ks=(1, 5))
    codes = tok.encode(world.gallery.images)
    _, inverse, counts = torch.unique(codes, dim=0, return_inverse=True, return_counts=True)
    mse = float(np.mean((recon.astype(np.float32) - val.astype(np.float32)) ** 2))
    return {
        "recon_r1": r[1],
        "recon_r5": r[5],
        "recon_psnr": round(float(10 * np.log10(255.0**2 / max(mse, 1e-8))), 2),
        "codebook_usage": round(len(torch.unique(codes)) / tok.codebook_size, 4),
        "unique_share": round(float((counts[inverse] == 1).float().mean()), 4),
        "tokens_per_image": tok.tokens_per_image,
        "codebook_size": tok.codebook_size,
    }


def evaluate_judge(judge, world, n: int | None = None) -> dict:
    """Accuracy on fresh held-out world images of every kind (creative pairs included), per
    attribute and for entities, plus the creative scenes alone."""
    from ..models.judge import held_out_images

    n = n or judge.config.n_eval
    data = held_out_images(world, n)
    pred = judge.read(data.images)
    acc = attribute_accuracy(pred, data.attributes)
    held = W.creative_pairs(world.config.seed, world.config.n_creative_pairs)
    creative = np.zeros(len(data), bool)
    for s, c in held:
        creative |= (data.attributes["shape"] == s) & (data.attributes["color"] == c)
    return {
        "attribute_accuracy": {k: acc[k] for k in ("all",) + W.ATTRIBUTES},
        "entity_accuracy": acc["entity"],
        "kind_accuracy": round(float((pred["kind"] == data.attributes["kind"]).mean()), 4),
        "creative_all_accuracy": attribute_accuracy(pick(pred, np.flatnonzero(creative)), pick(data.attributes, np.flatnonzero(creative)))["all"] if creative.any() else None,
        "n_eval": len(data),
    }


def _entity_naming(lmm, world, vq) -> dict:
    """R@1 of the knowledge queries by log p(X|Y) over the gallery's entity images."""
    ent = np.flatnonzero(np.asarray(world.gallery.attributes.get("entity", [])) >= 0)
    q = world.queries.subset("knowledge")
    if not len(ent) or not len(q):
        return {}
    rev = lmm.logp_text_given_image_matrix(vq.encode(world.gallery.load(ent)), list(q.texts))  # [entity image, query]
    rankings = [ent[order] for order in rev.T.argsort(dim=1, descending=True).numpy()]
    return {"entity_reverse_r1": recall_at_k(rankings, q.hits, ks=(1,))[1], "n_entities": len(ent)}


def evaluate_lmm(lmm, world, deps: dict, n: int = 200, n_candidates: int = 100, seed: int = 0) -> dict:
    """Quality on the first ``n`` held-out val scenes (first caption each).

    - forward: CLIP-T (dual-encoder cosine) of images decoded from sampled tokens (top-p 0.5),
      matched and shuffled, and the judge's reading of those images against the caption;
    - reverse: log p(text | image) ranks the image's own caption first among ``n_candidates``;
    - knowledge: each knowledge query's log p(X|Y) ranks its entity's gallery image first among
      all entity images (the canonical images; training saw only shifted, re-lit photos).

    TIGeR's proxy study (forward, PMI, reverse as retrieval) is not repeated here: it lives in
    ``tiger eval tiger`` (``tiger_eval.py``) and the quality tests, on the gallery."""
    enc, vq = deps["dual_encoder"], deps["visual_tokenizer"]
    judge = deps.get("judge")
    n = min(n, len(world.val))
    texts = [caps[0] for caps in world.val.captions[:n]]
    codes = vq.encode(world.val.images[:n])
    t_emb = enc.encode_text(texts)
    sampled = vq.decode(lmm.sample_images(texts, top_p=0.5, seed=seed))
    i_emb = enc.encode_images(sampled)
    matched = float((t_emb * i_emb).sum(-1).mean())
    shuffled = float((t_emb * i_emb.roll(1, 0)).sum(-1).mean())

    rev = lmm.logp_text_given_image_matrix(codes, texts)  # [image, text]
    rng = np.random.default_rng(seed)
    k = min(n_candidates, n) - 1
    top1 = []
    for i in range(n):
        others = rng.choice(np.delete(np.arange(n), i), size=k, replace=False)
        top1.append(bool(rev[i, i] > rev[i, others].max()) if k else True)
    out = {
        **_entity_naming(lmm, world, vq),
        "forward_clip_t": round(matched, 4),
        "shuffled_clip_t": round(shuffled, 4),
        "clip_t_gap": round(matched - shuffled, 4),
        "reverse_top1": round(float(np.mean(top1)), 4),
        "n_eval": n,
        "n_candidates": k + 1,
    }
    if judge is not None:
        out["forward_judge"] = judge_images(judge, sampled, pick(world.val.attributes, np.arange(n)))
    return out


def prompt_r1(dual_encoder, prompts: list[str], images) -> float:
    """Share of generated images whose own prompt ranks first among all ``prompts`` (image -> text)."""
    scores = dual_encoder.encode_images(images) @ dual_encoder.encode_text(prompts).T
    return recall_at_k(scores, own_image_hits(len(prompts)), ks=(1,))[1]


def evaluation_prompts(world, n: int = 100) -> dict[str, tuple[list[str], dict[str, np.ndarray]]]:
    """``n`` prompts per kind with distinct ground truth, and that truth: held-out common scenes
    (val captions), creative and knowledge queries."""

    def first_distinct(texts, attrs):
        key = np.stack([np.asarray(attrs[k]) for k in ATTR_KEYS], axis=1)
        _, first = np.unique(key, axis=0, return_index=True)
        rows = np.sort(first)[:n]
        return [texts[i] for i in rows], pick(attrs, rows)

    out = {"common": first_distinct([c[0] for c in world.val.captions], world.val.attributes)}
    for kind in ("creative", "knowledge"):
        q = world.queries.subset(kind)
        out[kind] = first_distinct(list(q.texts), q.attributes)
    return out


def evaluate_diffusion(t2i, world, deps: dict, n: int = 100, seed: int = 0) -> dict:
    """Per kind, one image generated per prompt: prompt R@1 among the ``n`` prompts and CLIP-T
    (dual encoder), and the judge's reading of the image against the prompt's ground truth."""
    enc, judge = deps["dual_encoder"], deps.get("judge")
    metrics = {}
    for kind, (prompts, truth) in evaluation_prompts(world, n).items():
        images = t2i(prompt=prompts, seed=seed, progress=False).images
        metrics[f"{kind}_r1"] = prompt_r1(enc, prompts, images)
        metrics[f"{kind}_clip_t"] = round(float(enc.clip_score(prompts, images).mean()), 4)
        if judge is not None:
            metrics[f"{kind}_judge"] = judge_images(judge, images, truth)
        metrics[f"n_{kind}"] = len(prompts)
    metrics["random_r1"] = round(1 / max(1, metrics["n_common"]), 4)
    return metrics
