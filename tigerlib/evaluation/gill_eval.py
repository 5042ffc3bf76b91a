"""``tiger eval gill``: GILL on the mini world, next to the diffusion model conditioned directly.

- **generation**: for held-out common prompts (validation scenes), the same scenes phrased as no
  training caption is (``heldout_language``: ``tigerlib.data.language``), creative prompts and
  ``paraphrase`` prompts phrased in words and sentences the world never uses
  (``tigerlib.data.out_of_world``: "scarlet", "a ball", chatty requests), one image per prompt through the
  mapper (GILL) and one through the diffusion model's own text encoder (direct), same seed; the
  judge's all-attributes and per-attribute accuracy and CLIP-T (the dual encoder) of each path;
- **retrieval**: the retrieval head's R@1/5/10 on knowledge and common queries next to dense
  (``retrieval.<kind>.gill`` and ``retrieval.<kind>.dense``);
- **image input**: the share of captions the LLM writes for validation images that name the
  image's shape and colour in the world's words.
"""
from __future__ import annotations

import numpy as np

from ..data import world as W
from ..data.out_of_world import out_of_world_prompts
from ..models.vocabulary import words
from .judging import judge_images
from .retrieval import KINDS, retrieval_metrics
from .zoo_metrics import evaluation_prompts

SETS = ("common", "creative", "heldout_language", "paraphrase")


def prompt_sets(world, n: int = 100) -> dict[str, tuple[list[str], dict[str, np.ndarray]]]:
    """Prompts with their ground truth: held-out common scenes, the same scenes in held-out
    phrasings, creative ones, and paraphrases in words the world never uses (50 to 60 of them; no
    training ever sees any of them)."""
    base = evaluation_prompts(world, n)
    truth = base["common"][1]
    held = W.heldout_phrasings(truth, W.stream(world.config.seed, "queries", 2))
    return {"common": base["common"], "creative": base["creative"], "heldout_language": (held, truth),
            "paraphrase": out_of_world_prompts(world, max(50, min(n, 60)))}


def _judged(judge, dual_encoder, prompts, images, truth) -> dict:
    acc = judge_images(judge, images, truth)
    return {"judge_all": acc["all"], "judge_per_attribute": {k: acc[k] for k in W.ATTRIBUTES}, "clip_t": round(float(dual_encoder.clip_score(prompts, images).mean()), 4)}


def generation_metrics(gill, judge, prompts: list[str], truth: dict, seed: int = 0) -> dict:
    """Mapped (GILL) and direct conditioning on the same prompts and seed; ratios mapped/direct."""
    t2i, de = gill.t2i, gill.dual_encoder
    mapped = gill.generate(prompts, seed=seed, progress=False)
    direct = t2i(prompt=prompts, seed=seed, progress=False).images
    out = {"n": len(prompts), "mapped": _judged(judge, de, prompts, mapped, truth), "direct": _judged(judge, de, prompts, direct, truth)}
    for key in ("judge_all", "clip_t"):
        d = out["direct"][key]
        out[f"{key}_ratio"] = round(out["mapped"][key] / d, 4) if d else None
    return out


def caption_accuracy(gill, images, attrs: dict[str, np.ndarray]) -> dict:
    """Share of the LLM's captions of scene images that name the shape, the colour, and both."""
    caps = gill.caption(images)
    said = [set(words(c)) for c in caps]
    shape = np.array([W.SHAPES[s] in w for s, w in zip(np.asarray(attrs["shape"]), said)])
    color = np.array([W.COLOR_NAMES[c] in w for c, w in zip(np.asarray(attrs["color"]), said)])
    return {"shape_and_color": round(float((shape & color).mean()), 4), "shape": round(float(shape.mean()), 4), "color": round(float(color.mean()), 4),
            "n": len(caps), "examples": caps[:3]}


def _val_scenes(world, n: int):
    rows = np.flatnonzero(np.asarray(world.val.attributes["kind"]) == W.KIND_COMMON)[:n] if "kind" in world.val.attributes else np.arange(min(n, len(world.val)))
    return world.val.images[rows], {k: np.asarray(v)[rows] for k, v in world.val.attributes.items()}


def evaluate_gill_model(gill, world, deps: dict, n: int = 100, seed: int = 0) -> dict:
    """What the zoo records when it builds GILL: mapped vs direct on ``n`` held-out common prompts,
    the retrieval head's R@1 against dense on the first ``n`` queries of each kind, captioning."""
    from ..methods.dense import DenseRetriever

    prompts, truth = evaluation_prompts(world, n)["common"]
    gen = generation_metrics(gill, deps["judge"], prompts, truth, seed)
    ret = retrieval_metrics(gill.retriever(world.gallery.images), world.queries, n_queries=n)
    dense = retrieval_metrics(DenseRetriever(gill.dual_encoder, world.gallery.images), world.queries, n_queries=n)
    images, attrs = _val_scenes(world, n)
    return {
        "common_mapped_judge_all": gen["mapped"]["judge_all"],
        "common_direct_judge_all": gen["direct"]["judge_all"],
        "common_judge_ratio": gen["judge_all_ratio"],
        "common_clip_t_ratio": gen["clip_t_ratio"],
        "retrieval": {k: ret[k]["r1"] for k in ("knowledge", "common")},
        "dense": {k: dense[k]["r1"] for k in ("knowledge", "common")},
        "caption_shape_and_color": caption_accuracy(gill, images, attrs)["shape_and_color"],
        "n": n,
    }


def evaluate_gill(gill, world, judge, n_prompts: int = 100, n_queries: int | None = None, seed: int = 0, manifest: dict | None = None) -> dict:
    """The whole study (``tiger eval gill --json``)."""
    from ..methods.dense import DenseRetriever

    out: dict = {"generation": {name: generation_metrics(gill, judge, p, t, seed) for name, (p, t) in prompt_sets(world, n_prompts).items()}}
    reading = judge.read(world.gallery.images)
    ret = {"gill": retrieval_metrics(gill.retriever(world.gallery.images), world.queries, reading, n_queries),
           "dense": retrieval_metrics(DenseRetriever(gill.dual_encoder, world.gallery.images), world.queries, reading, n_queries)}
    out["retrieval"] = {k: {m: {**r[k], "judge_top1_accuracy": r["judge_top1_accuracy"][k]} for m, r in ret.items()} for k in KINDS}
    out["retrieval"]["ms_per_query"] = {m: r["ms_per_query"] for m, r in ret.items()}
    out["retrieval_ratio"] = {k: round(ret["gill"][k]["r1"] / ret["dense"][k]["r1"], 4) if ret["dense"][k]["r1"] else None for k in KINDS}
    images, attrs = _val_scenes(world, n_prompts)
    out["captioning"] = caption_accuracy(gill, images, attrs)
    out["trained_parameters"] = gill.trained_parameters
    if manifest:
        out["train_seconds"] = manifest.get("train_seconds")
    return out


def findings(result: dict) -> list[str]:
    """The study's outcomes as sentences computed from its numbers (the notebook's summary)."""
    g = result["generation"]
    lines = []
    for name in SETS:
        r = g[name]
        lines.append(f"{name} prompts: mapped {r['mapped']['judge_all']:.2f} vs direct {r['direct']['judge_all']:.2f} all attributes right "
                     f"(ratio {r['judge_all_ratio']}), CLIP-T {r['mapped']['clip_t']:.3f} vs {r['direct']['clip_t']:.3f}")
    o = g["paraphrase"]
    winner = "the mapped path (the pretrained LLM)" if o["mapped"]["judge_all"] > o["direct"]["judge_all"] else "direct conditioning"
    lines.append(f"on words the world never uses, {winner} draws more prompts right")
    for k in ("knowledge", "common"):
        r = result["retrieval"][k]
        lines.append(f"{k} retrieval: GILL's head R@1 {r['gill']['r1']:.2f} vs dense {r['dense']['r1']:.2f}")
    lines.append(f"captions naming shape and colour right: {result['captioning']['shape_and_color']:.2f}")
    return lines
