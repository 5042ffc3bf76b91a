"""Helpers that keep notebooks to narrative and calls: one-call setup, browsers and tours."""
from __future__ import annotations

import os

import numpy as np

from .config import Settings, ensure_writable, get_settings, seed_everything


def setup(profile: str | None = None, seed: int | None = None, home: str | None = None, quiet: bool = False) -> Settings:
    """Everything a notebook needs in one call: profile, device, seeds, paths (printed)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    settings = get_settings(profile=profile, seed=seed, home=home)
    ensure_writable(settings.home)
    seed_everything(settings.seed)
    if not quiet:
        print(settings.describe())
    return settings


def load_or_build_world(settings: Settings):
    """The profile's mini world: loaded if built, built otherwise (it says which)."""
    from .data.world_store import build_world

    world = build_world(settings.data_dir, settings.world_config())
    print(f"world {world.id}: {'built now' if world.built_now else 'loaded from disk'}")
    return world


def show_split(world, split: str, n: int = 16, seed: int = 0, ncols: int = 8):
    """A grid of ``n`` random images of a split (train/val/gallery) or a query kind
    (knowledge/common/creative), titled by caption (queries: prompt and gold label)."""
    from .errors import TigerError
    from .viz import image_grid

    rng = np.random.default_rng(seed)
    if split in ("knowledge", "common", "creative"):
        q = world.queries.subset(split)
        idx = np.sort(rng.choice(len(q), size=min(n, len(q)), replace=False))
        texts = [f"{q.texts[i]} [{q.label[i]}]" for i in idx]
        images = q.images[idx]
    elif split in ("train", "val", "gallery"):
        d = getattr(world, split)
        idx = np.sort(rng.choice(len(d), size=min(n, len(d)), replace=False))
        texts = [d.captions[i][0] for i in idx]
        images = d.load(idx)
    else:
        raise TigerError(f"unknown split {split!r}: use train, val, gallery, knowledge, common or creative")
    return image_grid(images, texts, ncols=ncols), texts


def world_browser(world):
    """An ipywidgets browser: pick a split and an index, see the image and all its captions."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    splits = {"gallery": world.gallery, "train": world.train, "val": world.val}
    for kind in ("knowledge", "common", "creative"):
        splits[f"queries: {kind}"] = world.queries.subset(kind)
    split = widgets.Dropdown(options=list(splits), description="split")
    index = widgets.IntSlider(min=0, max=len(world.gallery) - 1, description="index", continuous_update=False)
    out = widgets.Output()

    def render(*_):
        data = splits[split.value]
        index.max = len(data) - 1
        i = min(index.value, index.max)
        with out:
            out.clear_output(wait=True)
            if hasattr(data, "captions"):
                image, lines = data.load([i])[0], data.captions[i]
            else:
                image, lines = data.images[i], [data.texts[i], f"gold label: {data.label[i]}", f"gallery image: {data.gallery_index[i]}"]
            fig, ax = plt.subplots(figsize=(2.2, 2.2))
            ax.imshow(image, interpolation="nearest")
            ax.axis("off")
            plt.show()
            print("\n".join(lines))

    split.observe(render, "value")
    index.observe(render, "value")
    render()
    return widgets.VBox([widgets.HBox([split, index]), out])


def retrieval_explorer(retriever, gallery, k: int = 6, prompt: str = "a large red circle on the left on a black background", **options):
    """Type a prompt, see the top-k gallery images of any :class:`~tigerlib.methods.Retriever`
    (``options`` go to its ``retrieve``, e.g. ``num_beams`` for TIGeR). A prompt whose words the
    model never saw gets a warning: its answer is not based on the prompt."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    from .viz import image_grid

    box = widgets.Text(value=prompt, description="prompt", layout=widgets.Layout(width="80%"), continuous_update=False)
    out = widgets.Output()

    def render(*_):
        with out:
            out.clear_output(wait=True)
            r = retriever.retrieve(box.value, k=k, **options)
            if r.warning:
                print(r.warning)
            idx, scores = r.indices.tolist(), r.scores.tolist()
            image_grid(gallery.load(idx), [f"#{i}  {s:.2f}\n{gallery.captions[i][0]}" for i, s in zip(idx, scores)], ncols=k)
            plt.show()

    box.observe(render, "value")
    render()
    return widgets.VBox([box, out])


def judge_readings(judge, queries, n: int = 8):
    """The ground-truth images of ``n`` queries, each titled with what the judge reads in it."""
    from .data import world as W
    from .viz import image_grid

    images = queries.images[:n]
    pred = judge.read(images)
    titles = []
    for i in range(len(images)):
        if pred["kind"][i] == W.KIND_ENTITY:
            read = f"entity #{pred['entity'][i]}"
        else:
            read = " ".join(str(vocab[pred[k][i]]) for k, vocab in (("size", W.SIZES), ("color", W.COLOR_NAMES), ("shape", W.SHAPES), ("pos", W.POSITIONS), ("bg", W.BACKGROUND_NAMES)))
        titles.append(f"asked: {queries.texts[i]}\nread: {read}")
    return image_grid(images, titles, ncols=min(4, len(images)), wrap=30)


def reconstructions(tokenizer, images: np.ndarray):
    """Originals (top row) and their reconstructions from visual tokens (bottom row)."""
    from .viz import image_grid

    codes = tokenizer.encode(images)
    both = np.concatenate([images, tokenizer.decode(codes)])
    titles = ["original"] * len(images) + [f"from {codes.shape[1]} codes"] * len(images)
    return image_grid(both, titles, ncols=len(images))


def unified_explorer(backends: dict, rules: dict, prompt: str = "a small red circle on the left on a blue background", seed: int = 0):
    """Type a prompt, pick a backend and a rule: both candidates, their scores and the choice
    (:func:`tigerlib.methods.unified.answer`). Notes say when the system fell back."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    from .errors import TigerError
    from .methods.unified import answer
    from .viz import plot_answer

    box = widgets.Text(value=prompt, description="prompt", layout=widgets.Layout(width="70%"), continuous_update=False)
    backend = widgets.Dropdown(options=list(backends), description="backend")
    rule = widgets.Dropdown(options=list(rules), description="rule", value="reverse" if "reverse" in rules else next(iter(rules)))
    out = widgets.Output()

    def render(*_):
        with out:
            out.clear_output(wait=True)
            try:
                a = answer(box.value, backends[backend.value], rules[rule.value], seed=seed)
            except TigerError as e:
                print(e)
                return
            for note in a.notes:
                print("note:", note)
            plot_answer(a)
            plt.show()

    for w in (box, backend, rule):
        w.observe(render, "value")
    render()
    return widgets.VBox([box, widgets.HBox([backend, rule]), out])


def bench_browser(records: list[dict], rule: str = "reverse"):
    """Browse the benchmark's prompts (``run_bench(..., keep=True)["records"]``): pick a backend,
    a domain and wins or losses of ``rule`` (the judge decides what is right)."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    from .viz import image_grid

    backend = widgets.Dropdown(options=sorted({r["backend"] for r in records}), description="backend")
    domain = widgets.Dropdown(options=["knowledge", "creative", "common"], description="domain")
    which = widgets.ToggleButtons(options=["losses", "wins"], description="show")
    out = widgets.Output()

    def right(r):
        return r["retrieved_right"] if r["choice"][rule] == "retrieve" else r["generated_right"]

    def render(*_):
        with out:
            out.clear_output(wait=True)
            shown = [r for r in records if r["backend"] == backend.value and r["domain"] == domain.value and right(r) == (which.value == "wins")][:4]
            print(f"{len(shown)} shown ({rule} rule; gold for {domain.value}: {shown[0]['gold'] if shown else '-'})")
            if not shown:
                return
            images, titles = [], []
            for r in shown:
                s_r, s_g = r["scores"][rule]
                for side, decision, s in (("retrieved", "retrieve", s_r), ("generated", "generate", s_g)):
                    mark = "✓" if r[f"{side}_right"] else "✗"
                    chosen = " (chosen)" if r["choice"][rule] == decision else ""
                    images.append(r[side].image)
                    titles.append(f"{mark} {side}{chosen} {s:.2f}\n{r['prompt'][:40]}")
            image_grid(images, titles, ncols=4, wrap=26)
            plt.show()

    for w in (backend, domain, which):
        w.observe(render, "value")
    render()
    return widgets.VBox([widgets.HBox([backend, domain, which]), out])
