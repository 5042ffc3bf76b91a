"""The caption language of the mini world: how people write about a scene or an entity.

People do not write in five templates (DESIGN.md section 4). Every caption and query of the world
is written here, as a pure function of a numpy Generator (vectorized: 100,000 captions take
about half a second on one core). A caption always states all five attributes of a scene (shape, colour,
size, position, background) or the name of an entity, and varies everything else:

- **structure**: statements ("a large red triangle in the center on a black background"),
  requests ("show me ...", "draw ..."), questions ("is there a picture of ...?", "do you have
  ...?"), fragments, attribute lists ("red, triangle, large, center, black background"), the
  background first ("a black backdrop with ..."), the position first, postposed attributes
  ("a red triangle, large, in the center, on black"), ... (``SCENE_STRUCTURES``); the order of
  the attribute phrases varies where the structure allows;
- **synonyms** of colours, shapes, sizes, positions and backgrounds (``COLOR_WORDS`` ...), and of
  "picture" and "background";
- **fillers**: greetings ("hey,"), wishes ("i'd like", "can i see"), politeness ("could you",
  "please", "thanks");
- **punctuation and case**: a trailing "." "!" or "?", Capitalized, rarely ALL CAPS.

Entities: the flag or logo of a name in many ways ("the flag of X", "X's banner", "what does the
X logo look like?", "show me X's emblem", ...). The name is always the entity's name (its case
follows the caption's case).

**The held-out part** (``part="heldout"``) is never used in training captions, val or gallery
captions, or the in-language queries; it writes the ``heldout_queries`` split. Every held-out
caption has a held-out *structure* (so it differs from all training language at least by that);
each synonym slot and filler also switches to a held-out item where one exists, with probability
``HELDOUT_SHARE``, fillers are more frequent, and a held-out casing (Title Case) or punctuation
("...") is sometimes used. It is chosen so that a subword (byte-level BPE) model trained on the
training part has a fair chance, while a model that only memorized whole training phrasings does
not:

- held-out structures are known words in new frames and orders: "i'd like to see ...", "... is
  what i want", "do you have ... to show me?", "show ... to me", "a photo with ...", the
  background first ("on a black background, a
  large red triangle in the center"), slash lists ("red / triangle / large / center / black
  background"); for entities also "the flag for X" and "flag / X";
- held-out fillers recombine known words: "hey there,", "i would like", "could i see", "i need
  to see", "can you please", "would you please", ", please, thank you";
- held-out synonyms are new combinations of known words ("to the left side", "in the top part",
  "left part", "top side", "over black", "against a black backdrop", "plus shape", "diamond
  shape", "national banner") or morphological variants of trained words: "-ish" colours, sizes
  and backgrounds ("reddish", "bluish", "purplish", "whitish", "smallish", "largish",
  "blackish", "greyish"; training has "greenish", "yellowish", "grayish", "brownish",
  "pinkish"), "centre"/"centred" next to "center"/"centered", "disk" next to "disc", "boxy
  shape" next to "box", "triangular shape" next to "triangle shape", "rosy" next to "rose",
  "chocolatey" next to "chocolate", "aquamarine" next to "aqua", "pic" next to "picture",
  "logotype" next to "logo";
- only ``NEW_WORDS`` ("doughnut", next to the trained "donut") shares no stem with the
  training vocabulary: the one word a model can hardly map, a small share on purpose.

Checkable: every held-out item has a marker (``HELDOUT_MARKERS``: a case-insensitive regex that
matches no training caption), and :func:`read_attributes` parses any caption of either part back
to its attributes.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np

from ..errors import TigerError
from . import world as W

PARTS = ("train", "heldout")
HELDOUT_SHARE = 0.4  # a held-out caption's chance, per synonym slot and filler, of a held-out item
NEW_WORDS = frozenset({"doughnut"})  # held-out words with no stem in the training vocabulary

# ---------------------------------------------------------------------------------------------
# Synonyms: canonical name -> (training words, held-out words). The canonical names of world.py
# are attribute labels; they are always among the training words.

COLOR_WORDS = {
    "red": (("red", "crimson", "scarlet"), ("reddish",)),
    "green": (("green", "emerald", "greenish"), ()),
    "blue": (("blue", "azure", "cobalt"), ("bluish",)),
    "yellow": (("yellow", "golden", "yellowish"), ()),
    "purple": (("purple", "violet"), ("purplish",)),
    "orange": (("orange", "tangerine", "amber"), ()),
    "white": (("white", "snowy", "ivory"), ("whitish",)),
    "cyan": (("cyan", "turquoise", "aqua"), ("aquamarine",)),
}
SHAPE_WORDS = {
    "circle": (("circle", "disc", "dot"), ("disk",)),
    "square": (("square", "box", "block"), ("boxy shape",)),
    "triangle": (("triangle", "triangle shape", "wedge"), ("triangular shape",)),
    "diamond": (("diamond", "rhombus", "lozenge"), ("diamond shape",)),
    "cross": (("cross", "plus sign", "plus"), ("plus shape",)),
    "ring": (("ring", "hoop", "donut"), ("doughnut",)),
}
SIZE_WORDS = {
    "small": (("small", "little", "tiny"), ("smallish",)),
    "large": (("large", "big", "huge"), ("largish",)),
}
POSITION_PHRASES = {  # after the shape: "a red circle {phrase}"; world.POSITION_WORDS come first
    "center": (W.POSITION_WORDS["center"] + ("at the center", "centered"), ("in the centre", "centred")),
    "left": (W.POSITION_WORDS["left"] + ("to the left", "on the left side"), ("to the left side",)),
    "right": (W.POSITION_WORDS["right"] + ("to the right", "on the right side"), ("to the right side",)),
    "top": (W.POSITION_WORDS["top"] + ("in the upper part",), ("in the top part",)),
    "bottom": (W.POSITION_WORDS["bottom"] + ("in the lower part",), ("in the bottom part",)),
}
POSITION_NAMES = {  # in lists: "red, circle, small, {name}, black background"
    "center": (("center", "middle"), ("centre",)),
    "left": (("left", "left side"), ("left part",)),
    "right": (("right", "right side"), ("right part",)),
    "top": (("top", "upper part"), ("top side",)),
    "bottom": (("bottom", "lower part"), ("bottom side",)),
}
BACKGROUND_WORDS = {
    "black": (("black", "dark"), ("blackish",)),
    "gray": (("gray", "grey", "grayish"), ("greyish",)),
    "brown": (("brown", "chocolate", "brownish"), ("chocolatey",)),
    "pink": (("pink", "rose", "pinkish"), ("rosy",)),
}
BACKGROUND_PHRASES = (  # {a}: the article of the background word {b}
    ("on {a}{b} background", "on {b}", "against {a}{b} background", "over {a}{b} background", "on {a}{b} backdrop", "with {a}{b} background"),
    ("over {b}", "against {a}{b} backdrop"),
)
HELDOUT_BACKGROUND_MARKERS = (r"\bover (?!an? )\w", r"\bagainst an? \w+ backdrop\b")  # of the held-out phrases
BACKGROUND_NOUNS = (("background", "backdrop", "image", "scene"), ())  # "a black backdrop with ..."
PICTURE_WORDS = (("picture", "photo", "image"), ("pic",))
KIND_WORDS = {
    "flag": (("flag", "national flag", "banner"), ("national banner",)),
    "logo": (("logo", "company logo", "brand logo", "emblem"), ("logotype",)),
}

# Fillers, by the mode of the structure they lead (a request takes "could you", a noun phrase "i'd like").
GREETINGS = (("hey, ", "hi, ", "ok, ", "okay, "), ("hey there, ", "hi there, "))
LEADS = {
    "np": (("i'd like ", "i want ", "can i see ", "give me ", "i need "), ("i would like ", "could i see ", "i need to see ")),
    "request": (("please ", "could you ", "can you ", "would you "), ("can you please ", "would you please ")),
    "question": ((), ()),
    "plain": ((), ()),
    "list": ((), ()),
}
TAILS = {
    "question": ((", please",), ()),
    **{m: ((", please", " please", ", thanks", " thank you"), (", please, thank you",)) for m in ("np", "request", "plain", "list")},
}
PUNCTUATION = {  # repeats weight the choice
    "question": (("?", "?", "?", ""), ()),
    **{m: (("", "", "", ".", ".", "!"), ("...",)) for m in ("np", "request", "plain", "list")},
}
LEAD_P, TAIL_P, ORDER_P = 0.35, 0.15, 0.35  # chance of a lead filler, of a tail, of the background before the position
HELDOUT_FILLERS = 1.5  # held-out captions use fillers this much more often
HELDOUT_PUNCTUATION = 0.15  # a held-out statement's chance of ending in "..."
CASES_TRAIN = (0.03, 0.30)  # P(ALL CAPS), P(ALL CAPS or Capitalized); the rest lower case
CASES_HELDOUT = (0.03, 0.13, 0.38)  # ALL CAPS, Title Case (held-out), Capitalized


# ---------------------------------------------------------------------------------------------
# Choice tables, vectorized: one row of word ids per canonical value.


def _article(word: str) -> str:
    return "an " if word[:1] in "aeiou" else "a "


class _Table:
    """Words of each canonical value (training and held-out), picked for many rows at once."""

    def __init__(self, options: dict[str, tuple[tuple[str, ...], tuple[str, ...]]], order=None):
        order = tuple(options) if order is None else order
        self.words_list, self.heldout_words = [], set()
        rows = []
        for v in order:
            train, held = options[v]
            t = [self._add(w) for w in train]
            h = [self._add(w, True) for w in held]
            rows.append((t, h))
        self.words = np.array(self.words_list + [""], dtype=object)  # the last id: an empty pick
        self.articles = np.array([_article(w) for w in self.words_list] + [""], dtype=object)
        self.a_words = self.articles + self.words  # "a red", "an orange"
        width_t, width_h = max(1, max(len(t) for t, _ in rows)), max(1, max(len(h) for _, h in rows))
        empty = len(self.words_list)
        self.train = np.full((len(order), width_t), empty)
        self.held = np.full((len(order), width_h), empty)
        self.n_train = np.array([len(t) for t, _ in rows])
        self.n_held = np.array([len(h) for _, h in rows])
        for i, (t, h) in enumerate(rows):
            self.train[i, : len(t)] = t
            self.held[i, : len(h)] = h

    def _add(self, word: str, held: bool = False) -> int:
        self.words_list.append(word)
        if held:
            self.heldout_words.add(word)
        return len(self.words_list) - 1

    def pick(self, values, u: np.ndarray, u_held: np.ndarray, share: float) -> np.ndarray:
        """Word ids: a uniform training word of each value, or (with probability ``share``, where
        the value has one) a uniform held-out word."""
        v = np.zeros(len(u), np.int64) if values is None else np.asarray(values, np.int64)
        t = self.train[v, (u * self.n_train[v]).astype(np.int64)]
        if share <= 0:
            return t
        use = (u_held < share) & (self.n_held[v] > 0)
        return np.where(use, self.held[v, (u * self.n_held[v]).astype(np.int64)], t)


def _single(pair) -> _Table:
    return _Table({"": pair})


def _mode_tables(d: dict) -> dict[str, _Table]:
    return {m: _single(pair) for m, pair in d.items()}


_COLOR = _Table(COLOR_WORDS, W.COLOR_NAMES)
_SHAPE = _Table(SHAPE_WORDS, W.SHAPES)
_SIZE = _Table(SIZE_WORDS, W.SIZES)
_POS = _Table(POSITION_PHRASES, W.POSITIONS)
_POSN = _Table(POSITION_NAMES, W.POSITIONS)
_BGW = _Table(BACKGROUND_WORDS, W.BACKGROUND_NAMES)
_BGP = _single(BACKGROUND_PHRASES)
_BGN = _single(BACKGROUND_NOUNS)
_PIC = _single(PICTURE_WORDS)
_KIND = _Table(KIND_WORDS, W.ENTITY_KINDS)
_LEAD = {m: _Table({"": (GREETINGS[0] + t, GREETINGS[1] + h)}) for m, (t, h) in LEADS.items()}
_TAIL = _mode_tables(TAILS)
_PUNCT = _mode_tables(PUNCTUATION)

# Columns of the uniform draws of each caption (one matrix per call keeps it vectorized).
_COLS = ("color", "color_h", "shape", "shape_h", "size", "size_h", "pos", "pos_h", "posn", "posn_h", "bgw", "bgw_h", "bgp", "bgp_h",
         "bgn", "pic", "pic_h", "kind", "kind_h", "order", "lead", "lead_w", "lead_h", "tail", "tail_w", "tail_h", "punct", "punct_h",
         "case", "form", "frame", "p0", "p1", "p2", "p3", "p4")
_C = {c: i for i, c in enumerate(_COLS)}


# ---------------------------------------------------------------------------------------------
# Structures. A structure builds the core of a caption from the slots of its rows.


@dataclass(frozen=True)
class Structure:
    name: str
    mode: str  # np / request / question / plain / list: which fillers and punctuation it takes
    build: Callable[[dict, np.ndarray], np.ndarray]
    heldout: bool = False
    marker: str | None = None  # held-out structures: a regex no training caption matches


def _shuffled(items: list[np.ndarray], u: np.ndarray, sep: str = ", ") -> np.ndarray:
    """Join the items of each row in a random order (``u``: [n, len(items)] uniforms)."""
    order = np.argsort(u[:, : len(items)], axis=1)
    table = np.stack(items, axis=1)
    rows = table[np.arange(len(u))[:, None], order]
    return np.array([sep.join(r) for r in rows.tolist()], dtype=object)


# "on a black background, a red circle ...": the background, a comma, an article (no training caption)
_BG_THEN_SHAPE = r"\b(?:background|backdrop|" + "|".join(w for ws, hs in BACKGROUND_WORDS.values() for w in ws + hs) + r"), an? "


# "a photo with a red circle ...": never "image" (training writes "a black image with ...")
_PICTURE_WITH = r"\b(?:picture|photo|pic) with\b"


def _a_picture(s: dict, r: np.ndarray) -> np.ndarray:
    return np.where(s["a_pic"][r] == "an image", "a picture", s["a_pic"][r])


def _scene(build, name, mode, heldout=False, marker=None) -> Structure:
    return Structure(name, mode, build, heldout, marker)


SCENE_STRUCTURES = (
    _scene(lambda s, r: s["S"][r], "statement", "np"),
    _scene(lambda s, r: "there is " + s["S"][r], "there_is", "plain"),
    _scene(lambda s, r: s["a_pic"][r] + " of " + s["S"][r], "picture_of", "np"),
    _scene(lambda s, r: "show me " + s["S"][r], "show_me", "request"),
    _scene(lambda s, r: "draw " + s["S"][r], "draw", "request"),
    _scene(lambda s, r: "is there " + s["a_pic"][r] + " of " + s["S"][r], "is_there", "question"),
    _scene(lambda s, r: "do you have " + s["S"][r], "do_you_have", "question"),
    _scene(lambda s, r: _shuffled([s["color"][r], s["shape"][r], s["size"][r], s["posn"][r], s["bgw"][r] + " background"], s["u"][r]), "attribute_list", "list"),
    _scene(lambda s, r: s["np_cs"][r] + ", " + _shuffled([s["size"][r], s["pos"][r], s["bg"][r]], s["u"][r]), "postposed", "np"),
    _scene(lambda s, r: s["a_bgw"][r] + " " + s["bgn"][r] + " with " + s["np"][r] + " " + s["pos"][r], "background_first", "np"),
    _scene(lambda s, r: s["size"][r] + " " + s["color"][r] + " " + s["shape"][r] + " " + s["pos"][r] + ", " + s["bgw"][r] + " background", "fragment", "list"),
    _scene(lambda s, r: "looking for " + s["S"][r], "looking_for", "plain"),
    _scene(lambda s, r: s["pos"][r] + ", " + s["np"][r] + " " + s["bg"][r], "position_first", "plain"),
    _scene(lambda s, r: s["a_pic"][r] + " showing " + s["S"][r], "picture_showing", "np"),
    # the held-out part: known words in new frames and orders
    _scene(lambda s, r: "i'd like to see " + s["S"][r], "like_to_see", "plain", True, r"\blike to see\b"),
    _scene(lambda s, r: s["S"][r] + " is what i want", "what_i_want", "plain", True, r"\bwhat i want\b"),
    _scene(lambda s, r: "do you have " + s["S"][r] + " to show me", "to_show_me", "question", True, r"\bto show me\b"),
    _scene(lambda s, r: s["bg"][r] + ", " + s["np"][r] + " " + s["pos"][r], "background_then_shape", "plain", True, _BG_THEN_SHAPE),
    _scene(lambda s, r: _shuffled([s["color"][r], s["shape"][r], s["size"][r], s["posn"][r], s["bgw"][r] + " background"], s["u"][r], " / "),
           "slash_list", "list", True, r" / "),
    _scene(lambda s, r: "show " + s["S"][r] + " to me", "show_to_me", "request", True, r"\bto me\b"),
    _scene(lambda s, r: _a_picture(s, r) + " with " + s["S"][r], "picture_with", "np", True, _PICTURE_WITH),
)
ENTITY_FRAMES = (  # {E}: an entity phrase (ENTITY_FORMS)
    _scene(lambda s, r: s["E"][r], "statement", "np"),
    _scene(lambda s, r: s["a_pic"][r] + " of " + s["E"][r], "picture_of", "np"),
    _scene(lambda s, r: "show me " + s["E"][r], "show_me", "request"),
    _scene(lambda s, r: "draw " + s["E"][r], "draw", "request"),
    _scene(lambda s, r: "is there " + s["a_pic"][r] + " of " + s["E"][r], "is_there", "question"),
    _scene(lambda s, r: "do you have " + s["E"][r], "do_you_have", "question"),
    _scene(lambda s, r: "what does " + s["E"][r] + " look like", "look_like", "question"),
    _scene(lambda s, r: "looking for " + s["E"][r], "looking_for", "plain"),
    _scene(lambda s, r: s["a_pic"][r] + " showing " + s["E"][r], "picture_showing", "np"),
    # the held-out part
    _scene(lambda s, r: "i'd like to see " + s["E"][r], "like_to_see", "plain", True, r"\blike to see\b"),
    _scene(lambda s, r: s["E"][r] + " is what i want", "what_i_want", "plain", True, r"\bwhat i want\b"),
    _scene(lambda s, r: "do you have " + s["E"][r] + " to show me", "to_show_me", "question", True, r"\bto show me\b"),
    _scene(lambda s, r: s["kind"][r] + " / " + s["name"][r], "slash", "list", True, r" / "),
    _scene(lambda s, r: "show " + s["E"][r] + " to me", "show_to_me", "request", True, r"\bto me\b"),
    _scene(lambda s, r: _a_picture(s, r) + " with " + s["E"][r], "picture_with", "np", True, _PICTURE_WITH),
)
ENTITY_FORMS = (  # (name, held out, marker)
    ("the {kind} of {name}", False, None),
    ("{name}'s {kind}", False, None),
    ("the {name} {kind}", False, None),
    ("{name} {kind}", False, None),
    ("the {kind} for {name}", True, r"\b(?:flag|banner|logo|emblem|logotype) for\b"),
)


def _part_structures(structures, part: str) -> tuple[Structure, ...]:
    _check_part(part)
    return tuple(s for s in structures if s.heldout == (part == "heldout"))


def _check_part(part: str) -> None:
    if part not in PARTS:
        raise TigerError(f"unknown language part {part!r}: use one of {PARTS}")


def scene_structures(part: str = "train") -> tuple[str, ...]:
    return tuple(s.name for s in _part_structures(SCENE_STRUCTURES, part))


N_TRAIN_STRUCTURES = len(scene_structures("train"))  # distinct training captions a scene can have
N_HELDOUT_STRUCTURES = len(scene_structures("heldout"))
_ENTITY_TRAIN = [(f, e) for f in range(len(ENTITY_FRAMES)) if not ENTITY_FRAMES[f].heldout for e in range(len(ENTITY_FORMS)) if not ENTITY_FORMS[e][1]]
# held-out entity structures: each held-out frame with any form, or any training frame with a held-out form
_ENTITY_HELDOUT = [((f,), tuple(range(len(ENTITY_FORMS)))) for f in range(len(ENTITY_FRAMES)) if ENTITY_FRAMES[f].heldout] + [
    (tuple(f for f in range(len(ENTITY_FRAMES)) if not ENTITY_FRAMES[f].heldout), tuple(e for e, form in enumerate(ENTITY_FORMS) if form[1]))
]


def _markers() -> dict[str, str]:
    out = {}
    for kind, structures in (("scene structure", SCENE_STRUCTURES), ("entity structure", ENTITY_FRAMES)):
        out.update({f"{kind} {s.name}": s.marker for s in structures if s.heldout})
    out.update({f"entity form {f}": m for f, held, m in ENTITY_FORMS if held})
    tables = [_COLOR, _SHAPE, _SIZE, _POS, _POSN, _BGW, _BGN, _PIC, _KIND, *_LEAD.values(), *_TAIL.values()]
    for t in tables:
        for w in [w for w in t.words_list if w in t.heldout_words]:  # in table order: the same order in every process
            out[f"word {w.strip(', ')}"] = r"(?<![\w-])" + re.escape(w.strip(", ")) + r"(?![\w-])"
    for phrase, marker in zip(BACKGROUND_PHRASES[1], HELDOUT_BACKGROUND_MARKERS):
        out[f"background {phrase}"] = marker
    out["punctuation ..."] = r"\.\.\."
    return out


HELDOUT_MARKERS = {k: re.compile(v, re.IGNORECASE) for k, v in _markers().items()}


@lru_cache(maxsize=None)
def vocabulary(part: str = "train") -> frozenset[str]:
    """Every lower-case word the language part writes (entity names aside; "X's" gives "s")."""
    _check_part(part)
    held = part == "heldout"
    tables = [_COLOR, _SHAPE, _SIZE, _POS, _POSN, _BGW, _BGP, _BGN, _PIC, _KIND, *_LEAD.values(), *_TAIL.values()]
    texts = [w + " " + a for t in tables for w, a in zip(t.words_list, t.articles.tolist()) if (w in t.heldout_words) == held]
    probe = defaultdict(lambda: np.array([""], dtype=object), u=np.zeros((1, 5)))  # every slot empty: the frame's own words
    texts += [s.build(probe, np.arange(1))[0] for s in SCENE_STRUCTURES + ENTITY_FRAMES if s.heldout == held]
    texts += [f for f, h, _ in ENTITY_FORMS if h == held]
    return frozenset(w for t in texts for w in re.findall(r"[a-z]+(?:'[a-z]+)?", re.sub(r"\{\w+\}", "", t)))


def heldout_items(text: str) -> list[str]:
    """The held-out items a caption uses (by their markers; Title Case has none)."""
    return [k for k, rx in HELDOUT_MARKERS.items() if rx.search(text)]


# ---------------------------------------------------------------------------------------------
# Writing captions.


def _finish(core: np.ndarray, modes: np.ndarray, u: np.ndarray, part: str) -> list[str]:
    """Fillers, punctuation and case around each core."""
    share = HELDOUT_SHARE if part == "heldout" else 0.0
    m = len(core)
    lead = np.full(m, "", dtype=object)
    tail = np.full(m, "", dtype=object)
    punct = np.full(m, "", dtype=object)
    for mode in np.unique(modes).tolist():
        r = np.flatnonzero(modes == mode)
        more = HELDOUT_FILLERS if share else 1.0
        ids = _LEAD[mode].pick(None, u[r, _C["lead_w"]], u[r, _C["lead_h"]], share)
        lead[r] = np.where(u[r, _C["lead"]] < LEAD_P * more, _LEAD[mode].words[ids], "")
        ids = _TAIL[mode].pick(None, u[r, _C["tail_w"]], u[r, _C["tail_h"]], share)
        tail[r] = np.where(u[r, _C["tail"]] < TAIL_P * more, _TAIL[mode].words[ids], "")
        punct[r] = _PUNCT[mode].words[_PUNCT[mode].pick(None, u[r, _C["punct"]], u[r, _C["punct_h"]], HELDOUT_PUNCTUATION if share else 0.0)]
    text = (lead + core + tail + punct).tolist()
    c = u[:, _C["case"]]
    if part == "heldout":
        upper, title, cap = (np.flatnonzero(c < CASES_HELDOUT[0]), np.flatnonzero((c >= CASES_HELDOUT[0]) & (c < CASES_HELDOUT[1])),
                             np.flatnonzero((c >= CASES_HELDOUT[1]) & (c < CASES_HELDOUT[2])))
    else:
        upper, title, cap = np.flatnonzero(c < CASES_TRAIN[0]), np.array([], np.int64), np.flatnonzero((c >= CASES_TRAIN[0]) & (c < CASES_TRAIN[1]))
    for i in upper.tolist():
        text[i] = text[i].upper()
    for i in title.tolist():
        text[i] = " ".join(w[:1].upper() + w[1:] for w in text[i].split(" "))
    for i in cap.tolist():
        text[i] = text[i][:1].upper() + text[i][1:]
    return text


def _rows(texts: list[str], n: int, k: int) -> list[list[str]]:
    if not n * k:
        return [[] for _ in range(n)]
    flat = np.empty(n * k, dtype=object)
    flat[:] = texts
    return flat.reshape(n, k).tolist()


def _choose_structures(rng: np.random.Generator, n: int, k: int, n_structures: int, what: str) -> np.ndarray:
    if not 0 <= k <= n_structures:
        raise TigerError(f"cannot write {k} distinct captions per {what}: the language part has {n_structures} structures")
    return np.argsort(rng.random((n, n_structures)), axis=1)[:, :k].reshape(-1)


def _scene_slots(a: dict[str, np.ndarray], u: np.ndarray, share: float) -> dict[str, np.ndarray]:
    def pick(table, values, col):
        return table.pick(values, u[:, _C[col]], u[:, _C[col + "_h"]], share)

    size, color, shape = pick(_SIZE, a["size"], "size"), pick(_COLOR, a["color"], "color"), pick(_SHAPE, a["shape"], "shape")
    bgw, pos = pick(_BGW, a["bg"], "bgw"), _POS.words[pick(_POS, a["pos"], "pos")]
    bg = _BG_PHRASES[pick(_BGP, None, "bgp"), bgw]
    s = {
        "size": _SIZE.words[size], "color": _COLOR.words[color], "shape": _SHAPE.words[shape], "pos": pos,
        "posn": _POSN.words[pick(_POSN, a["pos"], "posn")], "bgw": _BGW.words[bgw], "bg": bg, "a_bgw": _BGW.a_words[bgw],
        "bgn": _BGN.words[_BGN.pick(None, u[:, _C["bgn"]], u[:, _C["bgn"]], 0.0)], "a_pic": _PIC.a_words[pick(_PIC, None, "pic")],
        "u": u[:, _C["p0"] :], "np": _NOUN_PHRASES[size, color, shape], "np_cs": _COLOR_SHAPES[color, shape],
    }
    flip = u[:, _C["order"]] < ORDER_P
    s["S"] = s["np"] + " " + np.where(flip, bg, pos) + " " + np.where(flip, pos, bg)
    return s


def _table_product(fn, *tables) -> np.ndarray:
    """``fn`` of every combination of word ids of ``tables`` (ids index the result)."""
    shape = tuple(len(t.words) for t in tables)
    out = np.empty(shape, dtype=object)
    for ids in np.ndindex(*shape):
        out[ids] = fn(*ids)
    return out


# Noun phrases and background phrases of every word combination, looked up per caption.
_NOUN_PHRASES = _table_product(lambda z, c, s: f"{_SIZE.a_words[z]} {_COLOR.words[c]} {_SHAPE.words[s]}", _SIZE, _COLOR, _SHAPE)
_COLOR_SHAPES = _table_product(lambda c, s: f"{_COLOR.a_words[c]} {_SHAPE.words[s]}", _COLOR, _SHAPE)
_BG_PHRASES = _table_product(lambda p, b: _BGP.words[p].format(a=_BGW.articles[b], b=_BGW.words[b]), _BGP, _BGW)


def _write(structures, chosen: np.ndarray, slots: dict, u: np.ndarray, part: str) -> list[str]:
    core = np.empty(len(chosen), dtype=object)
    modes = np.empty(len(chosen), dtype=object)
    for i, st in enumerate(structures):
        r = np.flatnonzero(chosen == i)
        if len(r):
            core[r] = st.build(slots, r)
            modes[r] = st.mode
    return _finish(core, modes.astype(str), u, part)


def scene_captions(attrs: dict[str, np.ndarray], rng: np.random.Generator, k: int, part: str = "train",
                   with_structures: bool = False):
    """``k`` captions per scene, in ``k`` distinct structures of the language ``part``: a list per
    scene. ``with_structures``: also the structure name of each caption ([n, k] array)."""
    structures = _part_structures(SCENE_STRUCTURES, part)
    n = len(attrs["shape"])
    chosen = _choose_structures(rng, n, k, len(structures), "scene")
    m = n * k
    u = rng.random((m, len(_COLS)))
    rows = np.repeat(np.arange(n), k)
    a = {key: np.asarray(attrs[key], np.int64)[rows] for key in W.ATTRIBUTES}
    texts = _write(structures, chosen, _scene_slots(a, u, HELDOUT_SHARE if part == "heldout" else 0.0), u, part) if m else []
    out = _rows(texts, n, k)
    if with_structures:
        return out, np.array([s.name for s in structures], dtype=object)[chosen].reshape(n, k) if m else np.empty((n, k), object)
    return out


def entity_captions(names, kinds, rng: np.random.Generator, k: int, part: str = "train", with_structures: bool = False):
    """``k`` distinct captions for each entity (``names[i]`` of kind index ``kinds[i]`` into
    ``world.ENTITY_KINDS``): a list per entity. Training structures are (frame, form) pairs;
    held-out ones are a held-out frame, or a training frame with a held-out form."""
    _check_part(part)
    names = np.asarray(list(names), dtype=object)
    kinds = np.asarray(kinds, np.int64)
    n = len(names)
    held = part == "heldout"
    structures = _ENTITY_HELDOUT if held else [((f,), (e,)) for f, e in _ENTITY_TRAIN]
    chosen = _choose_structures(rng, n, k, len(structures), "entity")
    m = n * k
    u = rng.random((m, len(_COLS)))
    if not m:
        return ([[] for _ in range(n)], np.empty((n, k), object)) if with_structures else [[] for _ in range(n)]
    frame_sets = [np.array(f) for f, _ in structures]
    form_sets = [np.array(e) for _, e in structures]
    frame = np.empty(m, np.int64)
    form = np.empty(m, np.int64)
    for i in range(len(structures)):
        r = np.flatnonzero(chosen == i)
        frame[r] = frame_sets[i][(u[r, _C["frame"]] * len(frame_sets[i])).astype(np.int64)]
        form[r] = form_sets[i][(u[r, _C["form"]] * len(form_sets[i])).astype(np.int64)]
    share = HELDOUT_SHARE if held else 0.0
    rows = np.repeat(np.arange(n), k)
    kind = _KIND.words[_KIND.pick(kinds[rows], u[:, _C["kind"]], u[:, _C["kind_h"]], share)]
    pic = _PIC.pick(None, u[:, _C["pic"]], u[:, _C["pic_h"]], share)
    name = names[rows]
    forms = [f for f, _, _ in ENTITY_FORMS]
    e = np.array([forms[f].format(kind=kw, name=nm) for f, kw, nm in zip(form.tolist(), kind.tolist(), name.tolist())], dtype=object)
    slots = {"E": e, "kind": kind, "name": name, "a_pic": _PIC.a_words[pic]}
    out = _rows(_write(ENTITY_FRAMES, frame, slots, u, part), n, k)
    if with_structures:
        labels = np.array([f"{ENTITY_FRAMES[f].name}/{e}" for f, e in zip(frame.tolist(), form.tolist())], dtype=object)
        return out, labels.reshape(n, k)
    return out


def describe(attrs: dict[str, np.ndarray], i: int) -> str:
    """The canonical caption of scene ``i``: "a large red triangle in the center on a black background"."""
    size, pos = W.SIZES[attrs["size"][i]], W.POSITIONS[attrs["pos"][i]]
    return f"{_article(size)}{size} {W.COLOR_NAMES[attrs['color'][i]]} {W.SHAPES[attrs['shape'][i]]} {W.POSITION_WORDS[pos][0]} on a {W.BACKGROUND_NAMES[attrs['bg'][i]]} background"


# ---------------------------------------------------------------------------------------------
# Reading captions back (a parser of the language, for tests and for learners).


def _reader(options: dict, order) -> list[re.Pattern]:
    out = []
    for v in order:
        train, held = options[v]
        alts = sorted({w for w in train + held}, key=len, reverse=True)
        out.append(re.compile(r"(?<![\w-])(?:" + "|".join(re.escape(w) for w in alts) + r")(?![\w-])", re.IGNORECASE))
    return out


_READERS = {
    "color": _reader(COLOR_WORDS, W.COLOR_NAMES),
    "shape": _reader(SHAPE_WORDS, W.SHAPES),
    "size": _reader(SIZE_WORDS, W.SIZES),
    "pos": _reader({p: (POSITION_PHRASES[p][0] + POSITION_NAMES[p][0], POSITION_PHRASES[p][1] + POSITION_NAMES[p][1]) for p in W.POSITIONS}, W.POSITIONS),
    "bg": _reader(BACKGROUND_WORDS, W.BACKGROUND_NAMES),
}


def read_attributes(text: str) -> dict[str, int | None]:
    """The scene attributes a caption states (indices into world.SHAPES etc.): None for an
    attribute it states no value of, or more than one."""
    out = {}
    for key, readers in _READERS.items():
        found = [v for v, rx in enumerate(readers) if rx.search(text)]
        out[key] = found[0] if len(found) == 1 else None
    return out
