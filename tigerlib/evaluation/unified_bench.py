"""Mini TIGeR-Bench: retrieve or generate, on knowledge, creative and common prompts.

The published TIGeR-Bench has no gold labels; the mini world has them: a knowledge prompt names an
entity only the gallery holds (gold: retrieve), a creative prompt asks for a combination no gallery
image and no method model's training has (gold: generate), and a common scene can be answered
either way. Rows (each per domain and over all prompts):

- ``generation only (G)`` / ``retrieval only (R)``: one side of a backend, or another retriever;
- ``B + rule``: backend B's two candidates, the rule choosing (``agent + reverse`` is the paper's agent);
- ``oracle (B)``: the candidate the judge finds right (the ceiling of any rule on B).

Metrics: the judge's accuracy of the chosen image (all attributes for scenes, the entity for
knowledge), CLIP-T (prompt vs chosen, dual encoder, x100), CLIP-I (chosen vs the ground-truth
image the world rendered for the prompt, x100), the share answered by retrieval, and decision
accuracy against the gold labels (knowledge and creative; for common scenes either is right, so
only the split is reported). The classifier rule trains on knowledge and creative queries that
the evaluation never uses (:func:`bench_split`), its gallery check on the creative and common ones."""
from __future__ import annotations

import time

import numpy as np
from tqdm.auto import tqdm

from ..data.dataset import Queries
from ..errors import TigerError
from ..methods.unified import BACKENDS, Backend, Candidate, LikelihoodRule, choose, fit_classifier_rules, retrieval_wins
from .judging import judged_right, pick

DOMAINS = ("knowledge", "creative", "common")


def bench_split(world, n: int = 50) -> tuple[dict[str, Queries], tuple[list[str], list[str]]]:
    """The first ``n`` queries of each domain for evaluation; training prompts and gold labels
    from the ``n`` queries after them (never evaluated). Labels are the world's
    (``Queries.label``): retrieve, generate, or either (common scenes: the classifier skips
    them, the gallery check learns from them)."""
    if n < 1:
        raise TigerError(f"n={n}: the benchmark needs at least one prompt per domain")
    evaluation, train_prompts, labels = {}, [], []
    for domain in DOMAINS:
        q = world.queries.subset(domain)
        if len(q) == 0:
            raise TigerError(f"the world has no {domain} queries: rebuild it (`tiger world build --force`)")
        evaluation[domain] = q.subset(np.arange(min(n, len(q))))
        rest = np.arange(len(evaluation[domain]), min(len(q), len(evaluation[domain]) + n))
        keep = [int(i) for i in rest if q.label[i] in ("retrieve", "generate", "either")]
        train_prompts += [q.texts[i] for i in keep]
        labels += [str(q.label[i]) for i in keep]
    return evaluation, (train_prompts, labels)


class _Side:
    """One candidate per prompt of one domain (a backend's retrievals or generations), judged."""

    def __init__(self, candidates, q: Queries, truth_emb, judge, dual_encoder):
        self.candidates = candidates
        present = np.array([c is not None for c in candidates])
        n = len(candidates)
        self.right, self.clip_t, self.clip_i = np.zeros(n, bool), np.full(n, np.nan), np.full(n, np.nan)
        if present.any():
            rows = np.flatnonzero(present)
            images = np.stack([candidates[i].image for i in rows])
            self.right[rows] = judged_right(judge.read(images), pick(q.attributes, rows))
            emb = dual_encoder.encode_images(images)
            self.clip_t[rows] = 100 * (dual_encoder.encode_text([q.texts[i] for i in rows]) * emb).sum(-1).cpu().numpy()
            self.clip_i[rows] = 100 * (emb * truth_emb[rows]).sum(-1).cpu().numpy()


def _row(name: str, backend: str | None, rule: str | None, domain: str, gold: np.ndarray, retrieved: np.ndarray, sides: tuple) -> dict:
    """Metrics of the choice ``retrieved`` (bool per prompt) between sides (retrieval, generation)."""
    r, g = sides
    pick_r = lambda a, b: np.where(retrieved, a, b)  # noqa: E731
    right = pick_r(r.right if r else np.zeros(len(retrieved), bool), g.right if g else np.zeros(len(retrieved), bool))
    clip_t = pick_r(r.clip_t if r else np.nan, g.clip_t if g else np.nan)
    clip_i = pick_r(r.clip_i if r else np.nan, g.clip_i if g else np.nan)
    labelled = np.isin(gold, ("retrieve", "generate"))
    decision = float(np.mean(retrieved[labelled] == (gold[labelled] == "retrieve"))) if labelled.any() else None
    mean = lambda x: None if np.all(np.isnan(x)) else round(float(np.nanmean(x)), 2)  # noqa: E731
    return {"name": name, "backend": backend, "rule": rule, "domain": domain, "judge_accuracy": round(float(right.mean()), 4),
            "clip_t": mean(clip_t), "clip_i": mean(clip_i), "retrieved_share": round(float(retrieved.mean()), 4),
            "decision_accuracy": None if decision is None else round(decision, 4), "n": int(len(retrieved)), "n_labelled": int(labelled.sum())}


def _all_domains(gold: dict[str, np.ndarray], name, backend, rule, retrieved: dict[str, np.ndarray], sides: dict[str, tuple]) -> list[dict]:
    """The row in each domain, then over all prompts (decision accuracy over the gold-labelled ones)."""
    out = [_row(name, backend, rule, d, gold[d], retrieved[d], sides[d]) for d in DOMAINS]
    n = {d: len(retrieved[d]) for d in DOMAINS}
    total = sum(n.values())
    overall = {"name": name, "backend": backend, "rule": rule, "domain": "all", "n": total}
    for key in ("judge_accuracy", "retrieved_share"):
        overall[key] = round(sum(r[key] * n[r["domain"]] for r in out) / total, 4)
    for key in ("clip_t", "clip_i"):
        vals = [(r[key], n[r["domain"]]) for r in out if r[key] is not None]
        overall[key] = round(sum(v * k for v, k in vals) / sum(k for _, k in vals), 2) if vals else None
    labelled = [r for r in out if r["decision_accuracy"] is not None]
    overall["n_labelled"] = sum(r["n_labelled"] for r in labelled)
    overall["decision_accuracy"] = round(sum(r["decision_accuracy"] * r["n_labelled"] for r in labelled) / overall["n_labelled"], 4) if labelled else None
    return out + [overall]


def run_bench(backends: dict[str, Backend], world, judge, dual_encoder, lmm=None, visual_tokenizer=None, gill=None, retrievers: dict | None = None,
              n: int = 50, seed: int = 0, eta: float = 1.0, keep: bool = False) -> dict:
    """Every row of the mini TIGeR-Bench for the given backends (name -> :class:`Backend`) and
    extra retrievers (retrieval-only rows, for example GRACE's best type). The likelihood rules
    need ``lmm`` and ``visual_tokenizer``; the learned rules need ``gill`` (``classifier+gallery``
    is left out, and ``gallery_check`` says why, when its check cannot be fitted). ``keep``: also
    return ``records``, one per backend and prompt with both candidates (images included), the
    judge's verdicts and each rule's scores and choice (for browsing wins and losses; not JSON)."""
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        raise TigerError(f"unknown backend(s) {sorted(unknown)}: use {', '.join(BACKENDS)}")
    t0 = time.perf_counter()
    evaluation, (train_prompts, labels) = bench_split(world, n)
    truth_emb = {d: dual_encoder.encode_images(evaluation[d].images) for d in DOMAINS}
    gold = {d: np.asarray(evaluation[d].label).astype(str) for d in DOMAINS}
    rules = {}
    if lmm is not None and visual_tokenizer is not None:
        rules.update({d: LikelihoodRule(lmm, visual_tokenizer, d, eta) for d in ("forward", "reverse")})
    stats = {"classifier": None, "gallery_check": None, "heldout_language": None}
    if gill is not None:
        learned, stats = fit_classifier_rules(gill, dual_encoder, world.gallery.images, train_prompts, labels, seed=seed)
        rules.update(learned)
        stats["heldout_language"] = heldout_language_decisions(learned, evaluation, gold)
    seconds: dict[str, float] = {}
    rows: list[dict] = []
    records: list[dict] = []

    def judged(candidates: dict[str, list]) -> dict[str, _Side]:
        return {d: _Side(candidates[d], evaluation[d], truth_emb[d], judge, dual_encoder) for d in DOMAINS}

    for name, backend in tqdm(backends.items(), desc="bench: backends", leave=False):
        t = time.perf_counter()
        prompts = {d: list(evaluation[d].texts) for d in DOMAINS}
        ret = judged({d: backend.retrieve_many(prompts[d]) for d in DOMAINS}) if backend.can_retrieve else None
        gen = judged({d: backend.generate_many(prompts[d], seed) for d in DOMAINS}) if backend.can_generate else None
        sides = {d: (ret[d] if ret else None, gen[d] if gen else None) for d in DOMAINS}
        always = {d: np.ones(len(prompts[d]), bool) for d in DOMAINS}
        never = {d: np.zeros(len(prompts[d]), bool) for d in DOMAINS}
        if gen:
            rows += _all_domains(gold, f"generation only ({name})", name, None, never, sides)
        if ret:
            rows += _all_domains(gold, f"retrieval only ({name})", name, None, always, sides)
        if ret and gen:
            scores, choices = {}, {}
            for rule_name, rule in rules.items():
                scores[rule_name], choices[rule_name] = {}, {}
                for d in DOMAINS:
                    scores[rule_name][d], choices[rule_name][d], _ = choose(rule, prompts[d], ret[d].candidates, gen[d].candidates)
                rows += _all_domains(gold, f"{name} + {rule_name}", name, rule_name, choices[rule_name], sides)
            oracle = {d: ret[d].right | ~gen[d].right for d in DOMAINS}  # retrieval unless only generation is right
            rows += _all_domains(gold, f"oracle ({name})", name, "oracle", oracle, sides)
            if keep:
                records += [{"backend": name, "domain": d, "prompt": p, "gold": str(gold[d][i]), "retrieved": ret[d].candidates[i], "generated": gen[d].candidates[i],
                             "retrieved_right": bool(ret[d].right[i]), "generated_right": bool(gen[d].right[i]),
                             "scores": {r: tuple(float(v) for v in scores[r][d][i]) for r in rules},
                             "choice": {r: "retrieve" if choices[r][d][i] else "generate" for r in rules}}
                            for d in DOMAINS for i, p in enumerate(prompts[d])]
        seconds[name] = round(time.perf_counter() - t, 1)
    for name, retriever in (retrievers or {}).items():
        t = time.perf_counter()
        gallery = world.gallery.images
        cands = {}
        for d in DOMAINS:
            tops = [r.top1 for r in retriever.retrieve(list(evaluation[d].texts), k=1)]
            cands[d] = [None if i < 0 else Candidate(np.asarray(gallery[i]), int(i)) for i in tops]
        ret = judged(cands)
        rows += _all_domains(gold, f"retrieval only ({name})", None, None, {d: np.ones(len(cands[d]), bool) for d in DOMAINS}, {d: (ret[d], None) for d in DOMAINS})
        seconds[name] = round(time.perf_counter() - t, 1)
    out = {"rows": rows, "n_prompts": {d: len(evaluation[d]) for d in DOMAINS}, **stats,
           "training_prompts": len(train_prompts), "seconds": {**seconds, "total": round(time.perf_counter() - t0, 1)}}
    return {**out, "records": records} if keep else out


def heldout_language_decisions(rules: dict, evaluation: dict[str, Queries], gold: dict[str, np.ndarray]) -> dict | None:
    """Decision accuracy of the learned rules on the evaluation's knowledge and creative prompts
    rewritten in the world's held-out language (structures, synonyms and fillers no training
    prompt uses): does a decision that reads only the prompt survive a new way of asking? None
    for a world without a held-out language."""
    if any(evaluation[d].heldout_texts is None for d in ("knowledge", "creative")):
        return None
    out = {}
    for name, rule in rules.items():
        right = {d: retrieval_wins(rule.scores(evaluation[d].in_heldout_language().texts)) == (gold[d] == "retrieve") for d in ("knowledge", "creative")}
        out[name] = {**{d: round(float(v.mean()), 4) for d, v in right.items()}, "all": round(float(np.concatenate(list(right.values())).mean()), 4)}
    return out


def best_rows(result: dict, domain: str = "all") -> dict[str, dict]:
    """Per backend, its best unified row in ``domain``: the most chosen images the judge finds
    right (what a person sees), then decision accuracy over the labelled prompts."""
    out: dict[str, dict] = {}
    unified = [r for r in result["rows"] if r["domain"] == domain and r["rule"] not in (None, "oracle")]
    key = lambda r: (r["judge_accuracy"], r["decision_accuracy"] or 0)  # noqa: E731
    for r in unified:
        if r["backend"] not in out or key(r) > key(out[r["backend"]]):
            out[r["backend"]] = r
    return out


def findings(result: dict) -> list[str]:
    """The benchmark's claims, stated from its numbers (whichever way they came out)."""
    rows = {(r["name"], r["domain"]): r for r in result["rows"]}
    lines = []
    agent = rows.get(("agent + reverse", "all"))
    for backend, best in best_rows(result).items():
        oracle = rows.get((f"oracle ({backend})", "all"))
        lines.append(f"{backend}: the best rule is {best['rule']} (decision accuracy {best['decision_accuracy']:.2f} on knowledge + creative prompts, "
                     f"judge accuracy {best['judge_accuracy']:.2f} over all prompts" + (f"; its oracle {oracle['judge_accuracy']:.2f})" if oracle else ")"))
        for d in DOMAINS:
            unified = rows[(best["name"], d)]["judge_accuracy"]
            sides = [rows[(f"{s} only ({backend})", d)]["judge_accuracy"] for s in ("generation", "retrieval") if (f"{s} only ({backend})", d) in rows]
            line = f"  {d}: unified {unified:.2f}"
            if sides:
                line += f", {'at least' if unified >= max(sides) else 'below'} the better single side ({max(sides):.2f})"
            if agent and backend != "agent":
                them = rows[("agent + reverse", d)]["judge_accuracy"]
                line += f"; the agent {them:.2f}" + (" (the agent wins)" if them > unified else "")
            lines.append(line)
    if agent:
        lines.append(f"the paper's agent (dense + diffusion, reverse score): judge accuracy {agent['judge_accuracy']:.2f}, decision accuracy {agent['decision_accuracy']:.2f}")
    for name, acc in (result.get("heldout_language") or {}).items():
        lines.append(f"{name}, the same knowledge and creative prompts in the held-out language: decision accuracy {acc['all']:.2f} "
                     f"(knowledge {acc['knowledge']:.2f}, creative {acc['creative']:.2f})")
    return lines
