"""Held-out phrasings: the world's queries written the way no training caption is.

The world writes its training captions in five sentence templates with a few synonyms
(``world.py``). A person does not. This module phrases every query once more
(``Queries.heldout_texts``) with what no training caption uses: other sentence structures
(questions, requests, fragments, lists), other orders of the attribute words, fillers and
politeness ("kindly", "hey there,"), punctuation and case, and, a quarter of the time, one
synonym the world never uses ("scarlet", "hoop", "banner": a word no model trained here can know,
the honest hard case). Entity names stay names. So "a phrasing the models never saw" is
measured (``tiger eval tiger``: ``heldout_language``), not hoped.

Everything is drawn from a numpy Generator, so the world stays a pure function of its seed.
"""
from __future__ import annotations

import re

import numpy as np

from ..errors import TigerError

# value -> synonyms no world caption uses
UNSEEN_WORDS = {
    "shape": {"circle": ("disk",), "square": ("block",), "triangle": ("wedge",), "diamond": ("lozenge",), "cross": ("plus",), "ring": ("hoop",)},
    "color": {"red": ("scarlet",), "green": ("lime",), "blue": ("cobalt",), "yellow": ("lemon",), "purple": ("lilac",), "orange": ("tangerine",),
              "white": ("ivory",), "cyan": ("aqua",)},
    "size": {"small": ("mini",), "large": ("huge",)},
    "pos": {"center": ("in the centre",), "left": ("on the left-hand side",), "right": ("on the right-hand side",), "top": ("in the upper part",),
            "bottom": ("in the lower part",)},
    "bg": {"black": ("jet-black",), "gray": ("grey",), "brown": ("coffee",), "pink": ("salmon",)},
}
ENTITY_KIND_WORDS = {"flag": ("banner",), "logo": ("emblem",)}

# {size} {color} {shape}: words; {pos}: a position phrase; {bg}: a background word
OBJECT_ORDERS = ("{size} {color} {shape}", "{color} {shape}, {size}", "{shape} that is {size} and {color}", "{size}-sized {color} {shape}")
BACKGROUND_PHRASES = ("with a {bg} backdrop", "in front of a {bg} wall", "{bg} backdrop")
SCENE_STRUCTURES = (
    "is there a {obj} {pos} {bgp}?",
    "i'm looking for a {obj} that sits {pos} {bgp}",
    "{bgp}; {obj} {pos}",
    "could you generate a {obj} placed {pos} {bgp}",
    "photo where a {obj} is {pos}, {bgp}",
    "{list}",
)
ENTITY_STRUCTURES = ("what does the {kind} of {name} look like?", "i need {name}'s {kind}", "could you find the {kind} that {name} uses?", "looking for {name}'s {kind}")
FILLERS = (("kindly ", ""), ("hey there, ", ""), ("", " if you can"), ("", ", cheers"))
ENDINGS = ("", "", ".", "!")
DRAWS = 20  # uniform numbers per phrasing


def pick(options, r: float) -> str:
    """The option a uniform number ``r`` in [0, 1) falls on (world.py draws its own words with it too)."""
    return options[min(int(r * len(options)), len(options) - 1)]


def _finish(text: str, r: np.ndarray) -> str:
    """Politeness (``r[0]``), ending punctuation (``r[1]``) and case (``r[2]``)."""
    question = text.endswith("?")
    text = text.rstrip("?")
    if r[0] < 0.4:
        pre, post = pick(FILLERS, r[0] / 0.4)
        text = pre + text + post
    text += "?" if question else pick(ENDINGS, r[1])  # a question keeps its mark at the very end
    if r[2] < 0.3:
        text = text[:1].upper() + text[1:]
    elif r[2] > 0.95:
        text = text.upper()
    return text


def _articles(text: str) -> str:
    """ "a" before a vowel becomes "an" (an orange cross, an ivory ring)."""
    words = text.split(" ")
    return " ".join("an" if w == "a" and i + 1 < len(words) and words[i + 1][:1] in tuple("aeiou") else w for i, w in enumerate(words))


def scene_phrasing(words: dict[str, str], unseen: dict[str, str], r: np.ndarray) -> str:
    """One held-out phrasing of a scene. ``words``: each attribute in the world's own words
    (``{"shape": "ring", "pos": "on the left", ...}``); ``unseen``: each attribute's unseen synonym;
    ``r``: ``DRAWS`` uniform numbers."""
    chosen = dict(words)
    if r[0] < 0.25:  # a quarter of the phrasings: one attribute in a word no caption uses
        attr = pick(tuple(unseen), r[1])
        chosen[attr] = unseen[attr]
    obj = pick(OBJECT_ORDERS, r[2]).format(**chosen)
    bgp = pick(BACKGROUND_PHRASES, r[3]).format(bg=chosen["bg"])
    structure = pick(SCENE_STRUCTURES, r[4])
    if structure == "{list}":
        items = [chosen["size"], chosen["color"], chosen["shape"], chosen["pos"], f"{chosen['bg']} backdrop"]
        text = ", ".join(items[i] for i in np.argsort(r[5:10]))
    else:
        text = structure.format(obj=obj, pos=chosen["pos"], bgp=bgp)
    return _finish(_articles(text), r[10:13])


def entity_phrasing(name: str, kind: str, r: np.ndarray) -> str:
    """One held-out phrasing of a prompt for an entity (``kind``: flag or logo): its name stays its name."""
    if kind not in ENTITY_KIND_WORDS:
        raise TigerError(f"unknown entity kind {kind!r}: use one of {tuple(ENTITY_KIND_WORDS)}")
    kind_word = ENTITY_KIND_WORDS[kind][0] if r[0] < 0.25 else kind
    return _finish(pick(ENTITY_STRUCTURES, r[1]).format(kind=kind_word, name=name), r[2:5])


def vocabulary() -> set[str]:
    """Every lower-cased word the held-out phrasings can add to the world's own words and entity names."""
    texts = [w for table in UNSEEN_WORDS.values() for ws in table.values() for w in ws] + [w for ws in ENTITY_KIND_WORDS.values() for w in ws]
    texts += [*OBJECT_ORDERS, *BACKGROUND_PHRASES, *SCENE_STRUCTURES, *ENTITY_STRUCTURES, *(a + b for a, b in FILLERS)]
    return {w for t in texts for w in re.findall(r"[^\W_]+(?:'[^\W_]+)*", re.sub(r"\{\w+\}", " ", t).lower())}
