"""The mini world: a seeded, vectorized generator of small captioned images.

It reproduces the structure of the real retrieve-or-generate problem (DESIGN.md section 4):

- **common scenes**: one shape with a colour, size and position on a background; several
  paraphrased captions each. Most of the training data and of the gallery.
- **knowledge entities**: invented flags and logos with arbitrary patterns and made-up names. The
  name says nothing about the look, so only a model that has seen the image can draw it: prompts
  about them should be answered by *retrieval*.
- **creative prompts**: (shape, colour) pairs held out of all training data and of the gallery. A
  compositional generator can draw them; retrieval only finds near misses: prompts about them
  should be answered by *generation*.

Everything is a pure function of the seed (numpy PCG64 streams spawned per split), so the world is
identical across runs and machines.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import TigerError
from . import language as L

WORLD_VERSION = 3  # 2: entity photos are always shifted (no training photo equals a gallery image). 3: held-out phrasings of the queries

SHAPES = ("circle", "square", "triangle", "diamond", "cross", "ring")
COLORS = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 90, 235),
    "yellow": (240, 220, 40),
    "purple": (150, 60, 205),
    "orange": (250, 140, 30),
    "white": (245, 245, 245),
    "cyan": (40, 215, 225),
}
COLOR_NAMES = tuple(COLORS)
SIZES = ("small", "large")
POSITIONS = ("center", "left", "right", "top", "bottom")
BACKGROUNDS = {"black": (12, 12, 12), "gray": (125, 125, 125), "brown": (105, 65, 35), "pink": (245, 175, 200)}
BACKGROUND_NAMES = tuple(BACKGROUNDS)
ENTITY_KINDS = ("flag", "logo")

# Paraphrase material. Size and position words have synonyms; templates vary the sentence.
SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big")}
POSITION_WORDS = {
    "center": ("in the center", "in the middle"),
    "left": ("on the left", "at the left side"),
    "right": ("on the right", "at the right side"),
    "top": ("at the top", "near the top"),
    "bottom": ("at the bottom", "near the bottom"),
}
SCENE_TEMPLATES = (
    "a {size} {color} {shape} {pos} on a {bg} background",
    "{size} {color} {shape} {pos}, {bg} background",
    "there is a {size} {color} {shape} {pos} on {bg}",
    "a picture of a {size} {color} {shape} {pos} over a {bg} background",
    "a {bg} image with a {size} {color} {shape} {pos}",
)
ENTITY_TEMPLATES = {
    "flag": ("the flag of {name}", "{name}'s flag", "the national flag of {name}", "a picture of the {name} flag"),
    "logo": ("the logo of {name}", "{name} logo", "the {name} company logo", "a picture of the logo of {name}"),
}

# Geometry as fractions of the image side.
POSITION_XY = {"center": (0.5, 0.5), "left": (0.27, 0.5), "right": (0.73, 0.5), "top": (0.5, 0.27), "bottom": (0.5, 0.73)}
RADIUS = {"small": 0.14, "large": 0.24}

KIND_COMMON, KIND_ENTITY = 0, 1
RENDER_CHUNK = 4096
ATTRIBUTES = ("shape", "color", "size", "pos", "bg")


@dataclass(frozen=True)
class WorldConfig:
    """Sizes of the built world. The defaults are the course's mini world."""

    seed: int = 0
    image_size: int = 32
    n_train: int = 20_000  # common scenes for training (creative pairs excluded)
    n_val: int = 1_000  # held-out common scenes for model quality checks
    n_gallery: int = 1_000  # common scenes in the retrieval gallery
    n_entities: int = 100  # knowledge entities (each has one gallery image)
    entity_variants: int = 20  # training images per entity
    n_creative_pairs: int = 8  # (shape, colour) pairs held out as creative
    n_common_queries: int = 200
    n_creative_queries: int = 200
    captions_per_image: int = 5

    def validate(self) -> "WorldConfig":
        for name, value in asdict(self).items():
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise TigerError(f"world setting {name}={value!r} must be an integer")
        if not 0 <= self.seed < 2**32:
            raise TigerError(f"invalid world seed {self.seed}: use an integer in [0, 2**32)")
        if self.image_size % 16 or not 16 <= self.image_size <= 256:
            raise TigerError(f"invalid image_size {self.image_size}: use a multiple of 16 between 16 and 256 (default 32)")
        for name in ("n_train", "n_val", "n_gallery", "n_common_queries", "n_creative_queries", "entity_variants"):
            if getattr(self, name) < 0:
                raise TigerError(f"invalid world size {name}={getattr(self, name)}: must be >= 0")
        if not 1 <= self.n_entities <= MAX_ENTITIES:
            raise TigerError(f"invalid n_entities {self.n_entities}: use 1..{MAX_ENTITIES}")
        if not 1 <= self.n_creative_pairs <= len(COLORS):
            raise TigerError(f"invalid n_creative_pairs {self.n_creative_pairs}: use 1..{len(COLORS)}")
        if self.n_gallery < 1:
            raise TigerError("invalid n_gallery 0: the gallery needs at least one common scene")
        if not 1 <= self.captions_per_image <= len(SCENE_TEMPLATES):
            raise TigerError(f"invalid captions_per_image {self.captions_per_image}: use 1..{len(SCENE_TEMPLATES)}")
        return self

    def world_id(self) -> str:
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:8]
        return f"mini-v{WORLD_VERSION}-seed{self.seed}-{self.image_size}px-{digest}"


# ---------------------------------------------------------------------------------------------
# Random streams: one independent stream per purpose, so changing one size leaves the rest alone.

_STREAMS = {"layout": 0, "entities": 1, "train": 2, "val": 3, "gallery": 4, "queries": 5, "sample": 6}


def stream(seed: int, purpose: str, extra: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, _STREAMS[purpose], extra]))


# ---------------------------------------------------------------------------------------------
# Held-out creative pairs and the entity table.


def creative_pairs(seed: int, n_pairs: int) -> np.ndarray:
    """(shape, colour) index pairs never shown in training or the gallery: one per colour, at most,
    spread over shapes so every shape and colour is still seen in other combinations."""
    rng = stream(seed, "layout")
    colors = rng.permutation(len(COLOR_NAMES))[:n_pairs]
    shapes = (rng.integers(len(SHAPES)) + np.arange(n_pairs)) % len(SHAPES)
    return np.stack([shapes, colors], axis=1)


_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "kr", "tr", "st", "gr", "th", "sh", "pl")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ou", "ei")
_CODAS = ("", "", "n", "r", "s", "l", "k", "m")
_SUFFIXES = ("ia", "or", "an", "ex", "eth", "ara", "ion", "ul")
MAX_ENTITIES = 5_000
_PLAIN_WORDS = set(SHAPES) | set(COLORS) | set(BACKGROUNDS) | {"flag", "logo", "small", "large", "big", "tiny"}


def entity_names(seed: int, n: int) -> list[str]:
    """Made-up, unique, pronounceable names ("Zorvania"): they carry no hint of the look."""
    rng = stream(seed, "entities", 1)
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        syl = "".join(
            _ONSETS[rng.integers(len(_ONSETS))] + _VOWELS[rng.integers(len(_VOWELS))] + _CODAS[rng.integers(len(_CODAS))]
            for _ in range(int(rng.integers(1, 3)))
        )
        name = (syl + _SUFFIXES[rng.integers(len(_SUFFIXES))]).capitalize()
        if name.lower() not in seen and name.lower() not in _PLAIN_WORDS and 4 <= len(name) <= 11:
            seen.add(name.lower())
            names.append(name)
    return names


@dataclass(frozen=True)
class Entities:
    names: list[str]
    kinds: np.ndarray  # index into ENTITY_KINDS
    canonical: np.ndarray  # uint8 [n, S, S, 3], the gallery image of each entity

    def heldout_phrasings(self, idx, rng: np.random.Generator) -> list[str]:
        """One held-out phrasing (``language.py``) of a prompt for each entity index."""
        draws = rng.random((len(idx), L.DRAWS))
        return [L.entity_phrasing(self.names[e], ENTITY_KINDS[self.kinds[e]], r) for e, r in zip(np.asarray(idx).tolist(), draws)]

    def captions(self, idx: np.ndarray, template: np.ndarray) -> list[str]:
        out = []
        for e, t in zip(idx.tolist(), template.tolist()):
            templates = ENTITY_TEMPLATES[ENTITY_KINDS[self.kinds[e]]]
            out.append(templates[t % len(templates)].format(name=self.names[e]))
        return out


def make_entities(seed: int, n: int, size: int) -> Entities:
    """Invented flags (2-3 stripes, maybe an emblem) and logos (a random 4x4 mosaic)."""
    rng = stream(seed, "entities")
    kinds = rng.integers(len(ENTITY_KINDS), size=n)
    img = np.empty((n, size, size, 3), np.float32)
    yy, xx = _grid(size)
    for e in range(n):  # a few hundred at most: clarity over speed here
        if ENTITY_KINDS[kinds[e]] == "flag":
            img[e] = (200, 215, 230)  # sky behind the flag
            top, bottom, left, right = int(0.19 * size), int(0.81 * size), int(0.1 * size), int(0.9 * size)
            n_stripes = int(rng.integers(2, 4))
            colors = rng.integers(0, 256, size=(n_stripes, 3))
            coord = yy if rng.random() < 0.5 else xx
            lo, hi = (top, bottom) if coord is yy else (left, right)
            band = np.clip(((coord - lo) * n_stripes // max(hi - lo, 1)).astype(int), 0, n_stripes - 1)
            flag = colors[band]
            inside = (yy >= top) & (yy < bottom) & (xx >= left) & (xx < right)
            img[e][inside] = flag[inside]
            if rng.random() < 0.5:
                shape = int(rng.integers(len(SHAPES)))
                sdf = _shape_sdf(np.array([shape]), np.array([0.5 * size]), np.array([0.5 * size]), np.array([0.15 * size]), size)[0]
                alpha = np.clip(sdf + 0.5, 0, 1)[..., None]
                img[e] = img[e] * (1 - alpha) + rng.integers(0, 256, size=3) * alpha
        else:
            bg, fg = rng.integers(0, 256, size=(2, 3))
            img[e] = bg
            cells = rng.random((4, 4)) < 0.5
            cells[rng.integers(4), rng.integers(4)] = True  # never an empty logo
            lo, hi = int(0.2 * size), int(0.8 * size)
            cy = np.clip(((yy - lo) * 4 // (hi - lo)).astype(int), 0, 3)
            cx = np.clip(((xx - lo) * 4 // (hi - lo)).astype(int), 0, 3)
            on = (yy >= lo) & (yy < hi) & (xx >= lo) & (xx < hi) & cells[cy, cx]
            img[e][on] = fg
    return Entities(entity_names(seed, n), kinds, np.clip(np.rint(img), 0, 255).astype(np.uint8))


# ---------------------------------------------------------------------------------------------
# Rendering (vectorized over the batch).


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    c = np.arange(size, dtype=np.float32) + 0.5
    return c[:, None].repeat(size, 1), c[None, :].repeat(size, 0)


def _shape_sdf(shape: np.ndarray, cx: np.ndarray, cy: np.ndarray, r: np.ndarray, size: int) -> np.ndarray:
    """Approximate signed distance (pixels, positive inside) of each image's shape: [n, S, S]."""
    yy, xx = _grid(size)
    out = np.empty((len(shape), size, size), np.float32)
    for s, name in enumerate(SHAPES):
        idx = np.flatnonzero(shape == s)
        if idx.size == 0:
            continue
        dx = xx[None] - cx[idx, None, None].astype(np.float32)
        dy = yy[None] - cy[idx, None, None].astype(np.float32)
        rr = r[idx, None, None].astype(np.float32)
        adx, ady = np.abs(dx), np.abs(dy)
        if name == "circle":
            d = rr - np.sqrt(dx * dx + dy * dy)
        elif name == "square":
            d = 0.85 * rr - np.maximum(adx, ady)
        elif name == "diamond":
            d = (1.2 * rr - (adx + ady)) * np.float32(0.7071)
        elif name == "triangle":
            top, height, half = -rr, 1.75 * rr, 1.05 * rr
            side = ((dy - top) * half / height - adx) * (height / np.sqrt(height * height + half * half))
            d = np.minimum(0.75 * rr - dy, side)
        elif name == "cross":
            arm = 0.36 * rr
            d = np.maximum(np.minimum(arm - adx, rr - ady), np.minimum(rr - adx, arm - ady))
        else:  # ring
            dist = np.sqrt(dx * dx + dy * dy)
            d = np.minimum(rr - dist, dist - 0.5 * rr)
        out[idx] = d
    return out


def render_scenes(attrs: dict[str, np.ndarray], size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw common scenes: uint8 [n, S, S, 3]. Small random jitter in position, size and colours
    makes every image unique while keeping its description."""
    n = len(attrs["shape"])
    pos = np.array([POSITION_XY[p] for p in POSITIONS], np.float32)[attrs["pos"]]
    radius = np.array([RADIUS[s] for s in SIZES], np.float32)[attrs["size"]] * size
    jitter = rng.uniform(-1, 1, size=(n, 3)).astype(np.float32)
    cx = pos[:, 0] * size + jitter[:, 0] * 0.04 * size
    cy = pos[:, 1] * size + jitter[:, 1] * 0.04 * size
    r = radius * (1 + 0.1 * jitter[:, 2])
    fg = np.array(list(COLORS.values()), np.float32)[attrs["color"]] + rng.uniform(-12, 12, size=(n, 3)).astype(np.float32)
    bg = np.array(list(BACKGROUNDS.values()), np.float32)[attrs["bg"]] * rng.uniform(0.9, 1.1, size=(n, 1)).astype(np.float32)
    out = np.empty((n, size, size, 3), np.uint8)
    for lo in range(0, n, RENDER_CHUNK):  # chunks keep float temporaries small (1M images fit)
        c = slice(lo, lo + RENDER_CHUNK)
        alpha = np.clip(_shape_sdf(attrs["shape"][c], cx[c], cy[c], r[c], size) + 0.5, 0, 1)[..., None]
        img = bg[c, None, None, :] + alpha * (fg[c] - bg[c])[:, None, None, :]
        out[c] = np.clip(np.rint(img), 0, 255)
    return out


def render_entities(entities: Entities, idx: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    """Photos of entities: the canonical image shifted by 1-2 px in some direction (never zero, so
    no photo equals the canonical gallery image up to brightness) and re-lit (rng=None: canonical)."""
    base = entities.canonical[idx]
    if rng is None:
        return base.copy()
    n, size = len(idx), base.shape[1]
    pad = 2
    padded = np.pad(base, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    offsets = np.array([(y, x) for y in range(2 * pad + 1) for x in range(2 * pad + 1) if (y, x) != (pad, pad)])
    oy, ox = offsets[rng.integers(len(offsets), size=n)].T
    rows = (oy[:, None] + np.arange(size)[None])[:, :, None]
    cols = (ox[:, None] + np.arange(size)[None])[:, None, :]
    shifted = padded[np.arange(n)[:, None, None], rows, cols]
    light = rng.uniform(0.85, 1.15, size=(n, 1, 1, 1)).astype(np.float32)
    return np.clip(np.rint(shifted * light), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Sampling attributes and captions.


def sample_attributes(rng: np.random.Generator, n: int, held_out: np.ndarray, creative: str = "exclude") -> dict[str, np.ndarray]:
    """Uniform scene attributes. ``creative``: 'exclude' (training/gallery), 'only' (creative
    prompts) or 'include' (the whole distribution, for the evaluator)."""
    held = np.zeros((len(SHAPES), len(COLORS)), bool)
    held[held_out[:, 0], held_out[:, 1]] = True
    if creative == "only":
        pair = held_out[rng.integers(len(held_out), size=n)]
        shape, color = pair[:, 0], pair[:, 1]
    else:
        allowed = np.argwhere(~held) if creative == "exclude" else np.argwhere(np.ones_like(held))
        pair = allowed[rng.integers(len(allowed), size=n)]
        shape, color = pair[:, 0], pair[:, 1]
    return {
        "shape": shape.astype(np.int16),
        "color": color.astype(np.int16),
        "size": rng.integers(len(SIZES), size=n).astype(np.int16),
        "pos": rng.integers(len(POSITIONS), size=n).astype(np.int16),
        "bg": rng.integers(len(BACKGROUNDS), size=n).astype(np.int16),
    }


def describe(attrs: dict[str, np.ndarray], i: int, template: int = 0, size_word: int = 0, pos_word: int = 0) -> str:
    """One caption of scene ``i``."""
    size_name, pos_name = SIZES[attrs["size"][i]], POSITIONS[attrs["pos"][i]]
    return SCENE_TEMPLATES[template % len(SCENE_TEMPLATES)].format(
        size=SIZE_WORDS[size_name][size_word % len(SIZE_WORDS[size_name])],
        color=COLOR_NAMES[attrs["color"][i]],
        shape=SHAPES[attrs["shape"][i]],
        pos=POSITION_WORDS[pos_name][pos_word % len(POSITION_WORDS[pos_name])],
        bg=BACKGROUND_NAMES[attrs["bg"][i]],
    )


def scene_captions(attrs: dict[str, np.ndarray], rng: np.random.Generator, k: int) -> list[list[str]]:
    """``k`` paraphrases per scene: distinct templates, random synonyms."""
    n = len(attrs["shape"])
    templates = np.argsort(rng.random((n, len(SCENE_TEMPLATES))), axis=1)[:, :k]
    words = rng.integers(0, 6, size=(n, k, 2))
    return [[describe(attrs, i, templates[i, j], words[i, j, 0], words[i, j, 1]) for j in range(k)] for i in range(n)]


def heldout_phrasings(attrs: dict[str, np.ndarray], rng: np.random.Generator) -> list[str]:
    """One phrasing per scene in ``language.py``'s held-out part: the world's own words for each
    attribute (a random synonym of size and position), in structures no caption template uses."""
    names = {"shape": SHAPES, "color": COLOR_NAMES, "size": SIZES, "pos": POSITIONS, "bg": BACKGROUND_NAMES}
    draws = rng.random((len(attrs["shape"]), L.DRAWS + 2))
    out = []
    for i, r in enumerate(draws):
        value = {k: names[k][attrs[k][i]] for k in ATTRIBUTES}
        own = {**value, "size": L.pick(SIZE_WORDS[value["size"]], r[-2]), "pos": L.pick(POSITION_WORDS[value["pos"]], r[-1])}
        out.append(L.scene_phrasing(own, {k: L.UNSEEN_WORDS[k][v][0] for k, v in value.items()}, r))
    return out
