"""The caption language: deterministic, complete, parseable, and its held-out part stays held out."""
import re

import numpy as np
import pytest

from tigerlib.data import language as L
from tigerlib.data import world as W
from tigerlib.errors import TigerError

NAMES = W.entity_names(0, 40)
KINDS = np.arange(40) % len(W.ENTITY_KINDS)
HELDOUT_ONLY = L.vocabulary("heldout") - L.vocabulary("train")


def scenes(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    return W.sample_attributes(np.random.default_rng(seed), n, W.creative_pairs(0, 1), creative="include")


NAME_RX = re.compile("|".join(NAMES), re.IGNORECASE)
NAME_WORDS = {n.lower() for n in NAMES} | {n.lower() + "'s" for n in NAMES}
WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def words(text: str) -> set[str]:
    """The lower-case words of a caption, entity names left out ("X's" counts as "s")."""
    out = set(WORD.findall(text.lower()))
    return out - NAME_WORDS | ({"s"} if out & NAME_WORDS - {n.lower() for n in NAMES} else set())


@pytest.fixture(scope="module")
def train_captions():
    """Every training structure of 1,000 scenes, and 20 training captions of each of 40 entities."""
    caps, structures = L.scene_captions(scenes(1000), np.random.default_rng(1), L.N_TRAIN_STRUCTURES, with_structures=True)
    ent, ent_structures = L.entity_captions(np.repeat(NAMES, 5), np.repeat(KINDS, 5), np.random.default_rng(2), 20, with_structures=True)
    return caps, structures, ent, ent_structures


@pytest.fixture(scope="module")
def heldout_captions():
    caps, structures = L.scene_captions(scenes(3000, seed=5), np.random.default_rng(3), 1, part="heldout", with_structures=True)
    ent, ent_structures = L.entity_captions(np.repeat(NAMES, 25), np.repeat(KINDS, 25), np.random.default_rng(4), 1, part="heldout", with_structures=True)
    return caps, structures, ent, ent_structures


def test_canonical_names_are_training_words():
    for table, names in ((L.COLOR_WORDS, W.COLOR_NAMES), (L.SHAPE_WORDS, W.SHAPES), (L.SIZE_WORDS, W.SIZES), (L.BACKGROUND_WORDS, W.BACKGROUND_NAMES),
                         (L.POSITION_NAMES, W.POSITIONS), (L.KIND_WORDS, W.ENTITY_KINDS)):
        assert tuple(table) == names and all(table[v][0][0] == v for v in names)
    assert L.N_TRAIN_STRUCTURES >= 12 and L.N_HELDOUT_STRUCTURES >= 4 and L.PARTS == ("train", "heldout")
    a = {k: np.array([0]) for k in W.ATTRIBUTES}
    assert L.describe(a, 0) == "a small red circle in the center on a black background"


def test_language_is_a_pure_function_of_the_rng():
    a = scenes(200)
    for part in L.PARTS:
        k = 3
        one = L.scene_captions(a, np.random.default_rng(7), k, part)
        assert one == L.scene_captions(a, np.random.default_rng(7), k, part)
        assert one != L.scene_captions(a, np.random.default_rng(8), k, part)
        e = L.entity_captions(NAMES, KINDS, np.random.default_rng(7), k, part)
        assert e == L.entity_captions(NAMES, KINDS, np.random.default_rng(7), k, part)
        assert e != L.entity_captions(NAMES, KINDS, np.random.default_rng(8), k, part)


def test_counts_and_limits():
    a = scenes(30)
    assert L.scene_captions(a, np.random.default_rng(0), 0) == [[] for _ in range(30)]
    assert L.scene_captions({k: v[:0] for k, v in a.items()}, np.random.default_rng(0), 3) == []
    assert L.entity_captions([], [], np.random.default_rng(0), 3) == []
    for part, n in (("train", L.N_TRAIN_STRUCTURES), ("heldout", L.N_HELDOUT_STRUCTURES)):
        caps = L.scene_captions(a, np.random.default_rng(0), n, part)
        assert all(len(c) == n == len(set(c)) for c in caps)
        with pytest.raises(TigerError, match="distinct"):
            L.scene_captions(a, np.random.default_rng(0), n + 1, part)
    with pytest.raises(TigerError, match="part"):
        L.scene_captions(a, np.random.default_rng(0), 1, "test")


def test_every_training_caption_states_its_attributes(train_captions):
    caps, structures, ent, _ = train_captions
    a = scenes(1000)
    for i, row in enumerate(caps):
        assert len(set(row)) == len(row) == L.N_TRAIN_STRUCTURES  # distinct captions per scene
        truth = {k: int(a[k][i]) for k in W.ATTRIBUTES}
        for c in row:
            assert L.read_attributes(c) == truth, c
    for i, row in enumerate(ent):
        name = NAMES[i // 5]
        assert len(set(row)) == len(row)
        for c in row:
            assert name in c or c.isupper() and name.upper() in c, c


def test_every_heldout_caption_states_its_attributes(heldout_captions):
    caps, _, ent, _ = heldout_captions
    a = scenes(3000, seed=5)
    for i, (c,) in enumerate(caps):
        assert L.read_attributes(c) == {k: int(a[k][i]) for k in W.ATTRIBUTES}, c
    for i, (c,) in enumerate(ent):
        assert NAMES[i // 25].lower() in c.lower(), c


def test_training_never_uses_the_heldout_part(train_captions):
    caps, _, ent, _ = train_captions
    texts = [c for row in caps + ent for c in row]
    joined = "\n".join(texts).lower()  # one search per marker (lower case: faster than IGNORECASE)
    for item, rx in L.HELDOUT_MARKERS.items():
        hit = re.search(rx.pattern, joined)
        assert hit is None, (item, joined[joined.rfind("\n", 0, hit.start()) + 1 : joined.find("\n", hit.end())])
    assert not set().union(*(words(c) for c in texts)) & HELDOUT_ONLY
    for c in texts:  # lower case, Capitalized or ALL CAPS: Title Case is held out
        rest = c[1:] if c[1:].islower() or c.isupper() else NAME_RX.sub("", c[1:])
        assert c.isupper() or rest == rest.lower(), c
    assert any(c.isupper() for c in texts) and any(c[0].isupper() and not c.isupper() for c in texts)


def test_every_heldout_caption_differs_from_training_by_its_structure(heldout_captions):
    caps, _, ent, _ = heldout_captions
    structure_markers = [k for k in L.HELDOUT_MARKERS if "structure" in k or "form" in k]
    for (c,) in caps + ent:
        assert set(L.heldout_items(c)) & set(structure_markers), c


def test_every_structure_and_word_is_reachable(train_captions, heldout_captions):
    caps, structures, ent, ent_structures = train_captions
    assert set(structures.ravel()) == set(L.scene_structures("train"))
    frames = {s.name for s in L.ENTITY_FRAMES if not s.heldout}
    forms = [i for i, f in enumerate(L.ENTITY_FORMS) if not f[1]]
    assert set(ent_structures.ravel()) == {f"{f}/{e}" for f in frames for e in forms}
    h_caps, h_structures, h_ent, h_ent_structures = heldout_captions
    assert set(h_structures.ravel()) == set(L.scene_structures("heldout"))
    assert {s.split("/")[0] for s in h_ent_structures.ravel()} == {s.name for s in L.ENTITY_FRAMES}
    # every word of each part is written, and every held-out item is used
    assert set().union(*(words(c) for row in caps + ent for c in row)) == L.vocabulary("train")
    heldout_texts = [c for (c,) in h_caps + h_ent]
    assert set().union(*(words(c) for c in heldout_texts)) >= L.vocabulary("heldout")
    used = {k for c in heldout_texts for k in L.heldout_items(c)}
    assert used == set(L.HELDOUT_MARKERS)
    assert any(c.isupper() for c in heldout_texts) and any(c.istitle() for c in heldout_texts)


def test_heldout_words_are_learnable_from_training_material():
    """Every word only the held-out part writes shares a stem with a training word ("reddish",
    "centre", "pic"): a subword model has a chance. Only the documented NEW_WORDS do not."""
    train = L.vocabulary("train")
    new = {w for w in HELDOUT_ONLY if not any(w[:3] == t[:3] for t in train if len(t) >= 3)}
    assert new == L.NEW_WORDS and len(new) <= 2, sorted(new)
    assert len(HELDOUT_ONLY) >= 15 and {"reddish", "centre", "disk", "pic"} <= HELDOUT_ONLY


def test_the_language_is_fast_enough():
    """20,000 scenes x 5 captions in well under 2 s (loose bound: the test machine may be busy)."""
    import time

    a = scenes(20_000)
    t0 = time.perf_counter()
    L.scene_captions(a, np.random.default_rng(0), 5)
    assert time.perf_counter() - t0 < 4.0
