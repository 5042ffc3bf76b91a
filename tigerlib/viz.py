"""Matplotlib figures used by the notebooks and the CLI."""
from __future__ import annotations

import textwrap

import numpy as np


def image_grid(images: np.ndarray, titles: list[str] | None = None, ncols: int = 8, scale: float = 1.6, wrap: int = 22):
    """A grid of uint8 images with optional wrapped titles; returns the figure."""
    import matplotlib.pyplot as plt

    images = np.asarray(images)
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = max(1, -(-n // ncols))
    title_lines = max((len(textwrap.wrap(t, wrap)) for t in titles), default=0) if titles else 0
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * scale, nrows * (scale + 0.17 * title_lines)), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            ax.imshow(images[k], interpolation="nearest")
            if titles:
                ax.set_title("\n".join(textwrap.wrap(titles[k], wrap)), fontsize=7)
    fig.tight_layout()
    return fig


def text_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A plain monospace table of dicts (what a notebook prints)."""
    columns = columns or list(rows[0])
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else "" if v is None else str(v)  # noqa: E731
    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[k]) for row in cells)) for k, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in cells])


def cluster_grid(identifiers, images: np.ndarray, n_clusters: int = 6, per_cluster: int = 8, scale: float = 1.0):
    """Rows = first-level clusters of structured identifiers, columns = images inside them."""
    import matplotlib.pyplot as plt

    first = np.array([s[0] for s in identifiers.sequences])
    clusters = [c for c, _ in sorted(zip(*np.unique(first, return_counts=True)), key=lambda t: -t[1])][:n_clusters]
    fig, axes = plt.subplots(len(clusters), per_cluster, figsize=(per_cluster * scale, len(clusters) * scale * 1.05), squeeze=False)
    for r, c in enumerate(clusters):
        members = identifiers.images[first == c][:per_cluster]
        for k, ax in enumerate(axes[r]):
            ax.axis("off")
            if k < len(members):
                ax.imshow(images[members[k]], interpolation="nearest")
        axes[r][0].set_title(f"cluster {c} ({int((first == c).sum())} images)", fontsize=7, loc="left")
    fig.tight_layout()
    return fig


def draw_trie(trie, symbols: dict[int, str] | None = None, highlight: list[int] | None = None, max_nodes: int = 80):
    """Draw a small trie as a tree: nodes by depth, edges labelled with their token."""
    import matplotlib.pyplot as plt
    import torch

    if trie.num_nodes > max_nodes:
        raise ValueError(f"the trie has {trie.num_nodes} nodes; draw_trie is for small examples (<= {max_nodes})")
    row_ptr, tokens = trie.row_ptr.cpu().tolist(), trie.tokens.cpu().tolist()
    children = {v: [(tokens[e], e + 1) for e in range(row_ptr[v], row_ptr[v + 1])] for v in range(trie.num_nodes)}
    pos, depth, next_x = {}, {0: 0}, [0]

    def place(v):  # leaves left to right, parents centred over their children
        kids = children[v]
        for _, c in kids:
            depth[c] = depth[v] + 1
            place(c)
        if kids:
            pos[v] = float(np.mean([pos[c] for _, c in kids]))
        else:
            pos[v] = float(next_x[0])
            next_x[0] += 1

    place(0)
    hl = set(highlight or [])
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * next_x[0]), 0.9 * (max(depth.values()) + 1)))
    for v, kids in children.items():
        for tok, c in kids:
            ax.plot([pos[v], pos[c]], [-depth[v], -depth[c]], color="tab:red" if c in hl else "0.6", lw=2 if c in hl else 1, zorder=1)
            label = symbols.get(tok, str(tok)) if symbols else str(tok)
            ax.text((pos[v] + pos[c]) / 2, -(depth[v] + depth[c]) / 2, label, fontsize=8, ha="center", va="center", bbox=dict(fc="white", ec="none", pad=0.5))
    leaves = set(trie.leaf_nodes.cpu().tolist())
    for v in children:
        ax.scatter(pos[v], -depth[v], s=60, color="tab:green" if v in leaves else ("tab:red" if v in hl or v == 0 else "tab:blue"), zorder=2)
        if v in leaves:
            items = trie.items_at(torch.tensor([v]))[0].tolist()
            ax.text(pos[v], -depth[v] - 0.35, "img " + ",".join(map(str, items)), fontsize=7, ha="center", va="top")
    ax.axis("off")
    ax.set_title("prefix trie: root at the top, one gallery image per green leaf", fontsize=9)
    fig.tight_layout()
    return fig


def plot_trie_benchmark(result: dict):
    """Per-step constraint time and memory per node against gallery size, both implementations."""
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    for impl, style in (("tensor", "o-"), ("reference", "s--")):
        rows = [r for r in result["results"] if r["impl"] == impl and r["status"] == "ok"]
        if rows:
            a.plot([r["n"] for r in rows], [r["step_ms"] for r in rows], style, label=impl)
            b.plot([r["n"] for r in rows], [r["bytes_per_node"] for r in rows], style, label=impl)
    for ax, title in ((a, f"ms per decoding step ({result['results'][0]['beams']} beams)"), (b, "bytes per trie node")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("gallery size (sequences)")
        ax.set_title(title, fontsize=9)
        ax.legend()
    fig.tight_layout()
    return fig


def plot_beam_search(result, title: str = ""):
    """Live and finished beams after each step of a trie-constrained beam search."""
    import matplotlib.pyplot as plt

    steps = np.arange(1, len(result.beams_per_step) + 1)
    fig, ax = plt.subplots(figsize=(5.5, 3))
    ax.plot(steps, result.beams_per_step, "o-", label="live beams")
    ax.plot(steps, result.finished_per_step, "s--", label="finished (complete images)")
    if result.stopped_early_at:
        ax.axvline(result.stopped_early_at, color="grey", ls=":", label=f"early stop (all paths unique) after step {result.stopped_early_at}")
    ax.set_xlabel("visual token")
    ax.set_ylabel("beams")
    ax.set_title(title or f"{result.num_beams} beams")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_eta_sweep(sweep: list[dict], keys=("knowledge_r1", "common_r1")):
    """R@1 against the PMI weight eta (eta = 0 is the raw forward likelihood)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    etas = [row["eta"] for row in sweep]
    for key in keys:
        ax.plot(etas, [row[key] for row in sweep], "o-", label=key.replace("_r1", ""))
    ax.set_xlabel("eta (weight of log p(Y | null prompt))")
    ax.set_ylabel("R@1")
    ax.set_ylim(0, 1.02)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_retrieval_scaling(result: dict):
    """Latency per query against gallery size, generative vs dense (log-log)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for method, marker in (("generative", "o-"), ("dense", "s-")):
        rows = [r for r in result["results"] if r["method"] == method]
        ax.loglog([r["n"] for r in rows], [r["ms_per_query"] for r in rows], marker, label=method)
    ax.set_xlabel("gallery images")
    ax.set_ylabel("ms per query")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_loss_curve(curves: dict[str, list[float]], title: str = ""):
    """Training loss per step of each objective (GRACE: memorize and retrieve)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    for name, values in curves.items():
        if values:
            ax.plot(np.arange(1, len(values) + 1), values, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per identifier token)")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_method_bars(results: dict[str, dict], kinds=("knowledge", "common")):
    """R@1 per method (for example GRACE's identifier types and the dense baseline), one bar group per query kind."""
    import matplotlib.pyplot as plt

    names = list(results)
    x = np.arange(len(names))
    width = 0.8 / len(kinds)
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(names)), 3.2))
    for j, kind in enumerate(kinds):
        ax.bar(x + (j - (len(kinds) - 1) / 2) * width, [results[n][kind]["r1"] for n in names], width, label=kind)
    ax.set_xticks(x, names)
    ax.set_ylabel("R@1")
    ax.set_ylim(0, 1.05)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_answer(answer, scale: float = 2.2):
    """One retrieve-or-generate answer: both candidates with their scores, the chosen one marked."""
    import matplotlib.pyplot as plt

    sides = [("retrieved", answer.retrieved), ("generated", answer.generated)]
    fig, axes = plt.subplots(1, 2, figsize=(2 * scale, scale + 0.9))
    chosen = "retrieved" if answer.decision == "retrieve" else "generated"
    for ax, (name, cand) in zip(axes, sides):
        ax.axis("off")
        if cand is None:
            ax.text(0.5, 0.5, f"no {name} image", ha="center", va="center", fontsize=8)
            continue
        ax.imshow(cand.image, interpolation="nearest")
        score = f"{answer.scores[name]:.2f}" if name in answer.scores else "-"
        label = f"{name}{f' #{cand.index}' if cand.index is not None else ''}\nscore {score}"
        ax.set_title(("✓ " + label) if name == chosen else label, fontsize=8, color="green" if name == chosen else "black")
    head = textwrap.shorten(answer.prompt, 60)
    fig.suptitle(f"{head}\n{answer.backend} + {answer.rule}: {answer.decision} ({answer.seconds.get('total', 0):.1f}s)", fontsize=8)
    fig.tight_layout()
    return fig


def plot_bench(result: dict, names: list[str] | None = None):
    """The mini TIGeR-Bench: the judge's accuracy of each row per domain, and decision accuracy."""
    import matplotlib.pyplot as plt

    domains = ("knowledge", "creative", "common", "all")
    rows = {(r["name"], r["domain"]): r for r in result["rows"]}
    names = names or list(dict.fromkeys(r["name"] for r in result["rows"]))
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [3, 1.3]})
    width = 0.8 / max(1, len(names))
    for k, name in enumerate(names):
        ax.bar(np.arange(len(domains)) + k * width, [rows[(name, d)]["judge_accuracy"] for d in domains], width, label=name)
    ax.set_xticks(np.arange(len(domains)) + 0.4 - width / 2, domains)
    ax.set_ylabel("judge accuracy of the chosen image")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=6, ncol=2)
    acc = [rows[(n, "all")]["decision_accuracy"] or 0 for n in names]
    bx.barh(np.arange(len(names)), acc, color="gray")
    bx.set_yticks(np.arange(len(names)), names, fontsize=6)
    bx.set_xlim(0, 1)
    bx.set_xlabel("decision accuracy (knowledge + creative)")
    bx.invert_yaxis()
    fig.tight_layout()
    return fig
