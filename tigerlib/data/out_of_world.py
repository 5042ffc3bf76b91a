"""Prompts in words the mini world never uses, with their ground truth.

A pretrained LLM knows "scarlet", "a ball" or a long chatty request; a model trained only on the
world's captions does not. These prompts describe held-out (validation) scenes with synonyms and
phrasings that no world caption contains, so the judge can still score what is drawn for them.
Nothing is ever trained on them (a test checks that every synonym below holds a word that no
training caption has).
"""
from __future__ import annotations

import numpy as np

from . import world as W

# Words outside the world's vocabulary for each attribute value (a pretrained LLM knows them).
COLOR_SYNONYMS = {
    "red": ("scarlet", "crimson", "ruby"),
    "green": ("emerald", "leafy green", "jade"),
    "blue": ("azure", "cobalt", "sapphire"),
    "yellow": ("golden", "lemon", "canary"),
    "purple": ("violet", "plum", "lilac"),
    "orange": ("tangerine", "amber", "pumpkin coloured"),
    "white": ("snowy", "ivory", "milky"),
    "cyan": ("turquoise", "aqua", "teal"),
}
SHAPE_SYNONYMS = {
    "circle": ("disc", "ball", "round dot"),
    "square": ("box", "tile", "block"),
    "triangle": ("three-sided shape", "triangular shape", "wedge"),
    "diamond": ("rhombus", "lozenge", "rhomb"),
    "cross": ("plus sign", "plus symbol", "cross-shaped mark"),
    "ring": ("donut", "hoop", "loop"),
}
SIZE_SYNONYMS = {"small": ("miniature", "minuscule", "teeny"), "large": ("huge", "enormous", "giant")}
POSITION_SYNONYMS = {
    "center": ("in the centre", "dead centre", "smack in the centre"),
    "left": ("toward the western edge", "on the left-hand side", "hugging the left edge"),
    "right": ("toward the eastern edge", "on the right-hand side", "hugging the right edge"),
    "top": ("up high", "along the upper edge", "toward the ceiling"),
    "bottom": ("down low", "along the lower edge", "toward the floor"),
}
BACKGROUND_SYNONYMS = {
    "black": ("pitch-dark", "jet", "ebony"),
    "gray": ("grey", "ashen", "slate"),
    "brown": ("chocolate", "coffee-coloured", "mocha"),
    "pink": ("rosy", "salmon", "blush"),
}
SYNONYMS = {"color": COLOR_SYNONYMS, "shape": SHAPE_SYNONYMS, "size": SIZE_SYNONYMS, "pos": POSITION_SYNONYMS, "bg": BACKGROUND_SYNONYMS}
FRAMES = (
    "{size} {color} {shape} {pos}, {bg} backdrop",
    "could you draw me a {size} {color} {shape} sitting {pos} against a {bg} backdrop? thanks!",
    "hey, I'd love a picture with a {size} {color} {shape} {pos}; make the backdrop {bg}",
    "imagine a {bg} canvas and put a {size} {color} {shape} {pos}",
    "please paint one {size} {color} {shape}, placed {pos}, on a {bg} backdrop",
    "my daughter wants a {color} {shape} that is {size}, {pos}, with a {bg} backdrop",
)


def out_of_world_prompts(world, n: int = 60, seed: int = 0) -> tuple[list[str], dict[str, np.ndarray]]:
    """``n`` prompts (default 60) for distinct validation scenes, every attribute said in words
    the world never uses, and their ground truth (the world's attribute arrays)."""
    attrs = world.val.attributes
    key = np.stack([np.asarray(attrs[k]) for k in W.ATTRIBUTES], axis=1)
    _, first = np.unique(key, axis=0, return_index=True)
    rows = np.sort(first)[:n]
    rng = np.random.default_rng(seed)
    prompts = []
    for r in rows.tolist():
        pick = lambda table, name: table[name][rng.integers(len(table[name]))]  # noqa: E731
        prompts.append(FRAMES[rng.integers(len(FRAMES))].format(
            size=pick(SIZE_SYNONYMS, W.SIZES[attrs["size"][r]]),
            color=pick(COLOR_SYNONYMS, W.COLOR_NAMES[attrs["color"][r]]),
            shape=pick(SHAPE_SYNONYMS, W.SHAPES[attrs["shape"][r]]),
            pos=pick(POSITION_SYNONYMS, W.POSITIONS[attrs["pos"][r]]),
            bg=pick(BACKGROUND_SYNONYMS, W.BACKGROUND_NAMES[attrs["bg"][r]]),
        ))
    return prompts, {k: np.asarray(v)[rows] for k, v in attrs.items()}

