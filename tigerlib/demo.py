"""The main job on the default profile: build what is missing, then tour what exists."""
from __future__ import annotations

import numpy as np

from .config import Settings, info
from .notebook import reconstructions, show_split


def run_demo(settings: Settings) -> dict:
    from .data.world_store import build_world
    from .methods.dense import DenseRetriever
    from .zoo import build_zoo, load_dual_encoder, load_visual_tokenizer
    from .viz import image_grid

    world = build_world(settings.data_dir, settings.world_config())
    summary = world.summary()
    print(f"mini world {summary['world_id']}: {summary['train']} training images, {summary['gallery']} gallery images")
    print(f"queries: {summary['queries']}")
    print(f"creative (held-out) pairs: {', '.join(summary['creative_pairs'])}")
    figures = {}

    def save(fig, name):
        path = settings.home / f"demo_{name}.png"
        fig.savefig(path, dpi=110)
        figures[name] = str(path)

    for split in ("gallery", "knowledge", "creative"):
        fig, texts = show_split(world, split, n=8)
        save(fig, split)
        print(f"\n{split}:")
        for t in texts:
            print(f"  {t}")

    status = build_zoo(settings, world=world, only=["dual_encoder", "visual_tokenizer", "lmm", "diffusion"])  # what the tour uses
    print("\nmodel zoo:")
    for name, m in status["models"].items():
        if m["built"]:
            print(f"  {name:<17} {m['train_seconds']}s  {m['metrics']}")
    rest = [n for n, m in status["models"].items() if not m["built"]]
    if rest:
        print(f"  not built yet (the tour does not use them; `tiger zoo build` trains them): {', '.join(rest)}")
    encoder, tokenizer = load_dual_encoder(settings), load_visual_tokenizer(settings)
    save(reconstructions(tokenizer, world.val.images[:8]), "reconstructions")

    retriever = DenseRetriever(encoder, world.gallery.images)
    q = world.queries
    picks = [int(np.flatnonzero(q.kind == kind)[0]) for kind in ("knowledge", "common", "creative")]
    idx, scores = retriever.top_k([q.texts[i] for i in picks], k=4)
    print("\ndense retrieval (top 4 gallery images per prompt):")
    images, titles = [], []
    for row, i in enumerate(picks):
        hit = "hit" if np.isin(idx[row, 0], q.hits[i]) else "no exact match in the gallery" if len(q.hits[i]) == 0 else "miss"
        print(f"  [{q.kind[i]}] {q.texts[i]!r} -> {idx[row].tolist()} (top-1: {hit}; gold decision: {q.label[i]})")
        images += [q.images[i]] + list(world.gallery.images[idx[row]])
        titles += [f"prompt: {q.texts[i]}"] + [f"#{j} {s:.2f}" for j, s in zip(idx[row], scores[row])]
    save(image_grid(np.stack(images), titles, ncols=5), "retrieval")

    # the same prompts through TIGeR (retrieval by generation) and the diffusion model
    from .methods.tiger import TIGeR
    from .zoo import load_lmm, load_text_to_image

    tiger = TIGeR.from_images(load_lmm(settings), tokenizer, world.gallery.images)
    prompts = [q.texts[i] for i in picks]
    generated = load_text_to_image(settings)(prompt=prompts, seed=settings.seed).images
    print("\nTIGeR (beam search over visual tokens + reverse re-ranking) and generation:")
    images, titles = [], []
    for row, i in enumerate(picks):
        answer = tiger.retrieve(prompts[row], num_beams=100)
        top = answer.top1
        hit = "hit" if top in set(q.hits[i].tolist()) else "no exact match in the gallery" if len(q.hits[i]) == 0 else "miss"
        print(f"  [{q.kind[i]}] {prompts[row]!r} -> TIGeR top-1 #{top} ({hit}, {answer.seconds:.1f}s)")
        images += [q.images[i], world.gallery.images[idx[row, 0]], world.gallery.images[top], generated[row]]
        titles += [f"prompt: {prompts[row]}", "dense top-1", "TIGeR top-1", "generated"]
    save(image_grid(np.stack(images), titles, ncols=4), "tiger_and_generation")

    print("\nretrieve or generate (TIGeR backend, reverse rule), one prompt of each kind:")
    answers = tour_answers(settings, world, picks, figures, {"lmm": tiger.lmm, "visual_tokenizer": tokenizer}, "tiger", "reverse", "answer")
    answers += learned_answers(settings, world, picks, figures)
    info(f"figures: {', '.join(figures.values())}")
    return {"world": summary, "zoo": status, "figures": figures, "answers": answers}


def learned_answers(settings: Settings, world, picks: list[int], figures: dict) -> list[dict]:
    """The tour's prompts again through GILL's backend and its classifier with the gallery check
    (the mini TIGeR-Bench's best decision), when GILL is already built; the tour builds nothing for it."""
    from .errors import TigerError
    from .zoo import load_dual_encoder, load_gill

    try:
        zoo = {"gill": load_gill(settings), "dual_encoder": load_dual_encoder(settings)}
    except TigerError as e:
        print(f"\nGILL's learned decision is left out of the tour: {e}")
        return []
    print("\nthe same prompts through GILL (retrieval head; mapper + diffusion), its classifier with the gallery check deciding:")
    return tour_answers(settings, world, picks, figures, zoo, "gill", "classifier+gallery", "answer_gill")


def tour_answers(settings: Settings, world, picks: list[int], figures: dict, zoo: dict, backend: str, rule: str, tag: str) -> list[dict]:
    """Answer the tour's prompts (query rows ``picks``) with one backend and rule, fitted once;
    print each gold decision and add each figure to ``figures`` as ``{tag}_{kind}``."""
    q, fitted, answers = world.queries, demo_rule(rule, zoo, world, settings.seed), []
    for i in picks:
        a = answer_prompt(settings, q.texts[i], backend, rule, world=world, zoo=zoo, save_as=f"{tag}_{q.kind[i]}", fitted_rule=fitted)
        print(f"  [{q.kind[i]}] gold decision: {q.label[i]}")
        figures[f"{tag}_{q.kind[i]}"] = a["figure"]
        answers.append(a)
    return answers


def demo_models(settings: Settings, backend: str, world, rule: str = "reverse") -> dict:
    """Build what ``backend`` and ``rule`` need if missing (with progress), then load them: the
    LMM the likelihood rules score with, GILL and the dual encoder for the learned rules."""
    from .zoo import build_zoo, load_dual_encoder, load_gill, load_lmm, load_text_to_image, load_visual_tokenizer

    needs = {"tiger": set(), "agent": {"dual_encoder", "diffusion"}, "gill": {"gill"}}[backend]
    needs |= {"gill", "dual_encoder"} if rule.startswith("classifier") else set()
    build_zoo(settings, world=world, only=["lmm", "visual_tokenizer", *sorted(needs)])  # only what this backend and rule use
    zoo = {"lmm": load_lmm(settings), "visual_tokenizer": load_visual_tokenizer(settings)}
    if "dual_encoder" in needs:
        zoo["dual_encoder"] = load_dual_encoder(settings)
    if "diffusion" in needs:
        zoo["diffusion"] = load_text_to_image(settings)
    if "gill" in needs:
        zoo["gill"] = load_gill(settings)
    return zoo


def demo_training_prompts(world) -> tuple[int, list[str], list[str]]:
    """(n, prompts, gold labels): the benchmark's split at ``n`` prompts per domain (50, or half
    the smallest domain of a small world), whose training prompts its evaluation never uses."""
    from .evaluation.unified_bench import DOMAINS, bench_split

    n = max(1, min(50, min(len(world.queries.subset(d)) for d in DOMAINS) // 2))
    _, (prompts, labels) = bench_split(world, n=n)
    return n, prompts, labels


def demo_rule(rule: str, zoo: dict, world, seed: int = 0):
    """The rule named ``rule``; the learned ones train first (seconds) on
    :func:`demo_training_prompts`."""
    from .errors import TigerError
    from .methods.unified import fit_classifier_rules, make_rule

    if not rule.startswith("classifier"):
        return make_rule(rule, zoo)
    missing = [m for m in ("gill", "dual_encoder") if zoo.get(m) is None]
    if missing:
        raise TigerError(f"the {rule} rule needs {', '.join(missing)}: build it with `tiger zoo build`")
    _, prompts, labels = demo_training_prompts(world)
    info(f"training the {rule} rule on {len(prompts)} labelled prompts")
    rules, stats = fit_classifier_rules(zoo["gill"], zoo["dual_encoder"], world.gallery.images, prompts, labels, seed=seed)
    if rule not in rules:
        raise TigerError(f"the {rule} rule could not be fitted here: {stats['gallery_check'].get('skipped')}")
    return rules[rule]


def answer_prompt(settings: Settings, prompt: str, backend: str = "tiger", rule: str = "reverse", world=None, zoo: dict | None = None,
                  save_as: str = "answer", quiet: bool = False, fitted_rule=None) -> dict:
    """``tiger demo "a prompt"``: build what is missing, answer the prompt (retrieve, generate,
    decide), write the figure and print the decision. Returns the answer object with its figure.
    ``fitted_rule``: ``rule`` as :func:`demo_rule` made it, to answer many prompts without refitting."""
    from .data.world_store import build_world
    from .errors import TigerError
    from .methods.unified import BACKENDS, RULES, answer, make_backend
    from .viz import plot_answer

    if backend not in BACKENDS or rule not in RULES:
        raise TigerError(f"backend {backend!r}, rule {rule!r}: use a backend of {', '.join(BACKENDS)} and a rule of {', '.join(RULES)}")
    world = world or build_world(settings.data_dir, settings.world_config())
    zoo = zoo or demo_models(settings, backend, world, rule)
    a = answer(prompt, make_backend(backend, zoo, world.gallery.images), fitted_rule or demo_rule(rule, zoo, world, settings.seed), seed=settings.seed)
    path = settings.home / f"demo_{save_as}.png"
    plot_answer(a).savefig(path, dpi=120)
    out = {**a.to_json(), "figure": str(path)}
    if not quiet:
        scores = ", ".join(f"{k} {v:.2f}" for k, v in a.scores.items()) or "not judged"
        print(f"{a.prompt!r} -> {a.decision} ({a.backend} + {a.rule}: {scores}; {a.seconds['total']:.1f}s); figure {path}")
        for note in a.notes:
            print(f"  note: {note}")
    return out
