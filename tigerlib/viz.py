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
