import numpy as np
import pytest
import torch

from tigerlib.data.dataset import CaptionedImages
from tigerlib.decoding import DictTrie
from tigerlib.errors import TigerError
from tigerlib.identifiers import KINDS, Identifiers, build_identifiers, hierarchical_kmeans


@pytest.fixture(scope="module")
def inputs(tiny_world):
    g = tiny_world.gallery
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(len(g), 8)).astype(np.float32)
    codes = rng.integers(0, 16, size=(len(g), 6))
    codes[1] = codes[0]  # a collision the identifiers must keep
    return g, emb, codes


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_roundtrips_through_its_trie(kind, inputs, tmp_path):
    g, emb, codes = inputs
    ids = build_identifiers(kind, g, embeddings=emb, codes=codes, k=4, leaf_size=5)
    assert set(ids.images.tolist()) == set(range(len(g)))
    trie = ids.trie()
    seqs = ids.token_sequences()
    # every identifier leads to a leaf holding its image
    for s, img in zip(seqs, ids.images.tolist()):
        node = trie.walk(s + ([trie.end_token] if trie.end_token is not None else []))
        assert img in trie.items_under(int(node)).tolist()
    # same allowed tokens as the reference dict trie for every prefix
    full = [s + [trie.end_token] if trie.end_token is not None else s for s in seqs]
    ref = DictTrie.build(full)
    for s in full[:20]:
        for t in range(len(s)):
            node = torch.tensor([trie.walk(s[:t]) if t else 0])
            assert sorted(trie.allowed_tokens(node)[0].tolist()) == sorted(ref.get(s[:t]))
    ids.save(tmp_path / "ids.json")
    again = Identifiers.load(tmp_path / "ids.json")
    assert again.sequences == ids.sequences and np.array_equal(again.images, ids.images)


def test_collisions_are_kept_and_reported(inputs):
    g, emb, codes = inputs
    ids = build_identifiers("visual", g, codes=codes)
    assert ids.stats()["images_in_collisions"] >= 2
    assert {0, 1} <= set(ids.images_of(ids.sequences[0]).tolist())
    trie = ids.trie()
    node = trie.walk(ids.token_sequences()[0])
    assert {0, 1} <= set(trie.items_under(int(node)).tolist())


def test_semantic_hit_is_any_caption(inputs):
    g, _, _ = inputs
    ids = build_identifiers("semantic", g)
    for caption in g.captions[3]:
        assert 3 in ids.images_of(caption)


def test_numeric_and_structured_shapes(inputs):
    g, emb, _ = inputs
    num = build_identifiers("numeric", g)
    assert all(len(s) == len(str(len(g) - 1)) for s in num.sequences)
    assert 17 in num.images_of(" ".join(str(17).zfill(len(str(len(g) - 1)))))
    paths = hierarchical_kmeans(emb, k=3, leaf_size=4)
    assert len({tuple(p) for p in paths}) == len(emb), "structured ids are unique"
    # no identifier is a prefix of another
    as_tuples = [tuple(p) for p in paths]
    for a in as_tuples:
        assert not any(b != a and b[: len(a)] == a for b in as_tuples)


def test_bad_inputs(inputs):
    g, emb, _ = inputs
    with pytest.raises(TigerError, match="unknown identifier kind"):
        build_identifiers("morse", g)
    with pytest.raises(TigerError, match="embeddings"):
        build_identifiers("structured", g)
    with pytest.raises(TigerError, match="codes"):
        build_identifiers("visual", g)
    empty = CaptionedImages("empty", np.zeros((0, 32, 32, 3), np.uint8), [])
    with pytest.raises(TigerError, match="empty"):
        build_identifiers("atomic", empty)
    single = build_identifiers("atomic", g.subset([0]))
    assert single.trie().num_items == 1
    with pytest.raises(TigerError, match="vocabulary"):
        build_identifiers("atomic", g).token_sequences({"<id_0>": 0})


def _word_tokenizer(words):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", "</s>"] + sorted(words))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="</s>")


def test_token_sequences_in_an_lm_vocabulary(inputs):
    g, emb, codes = inputs
    sem = build_identifiers("semantic", g)
    tokenizer = _word_tokenizer({w for s in sem.sequences for w in s})
    seqs = sem.token_sequences(tokenizer)
    assert tokenizer.decode(seqs[0]).split() == list(sem.sequences[0])
    trie = sem.trie(tokenizer)
    assert trie.end_token == tokenizer.eos_token_id and trie.num_items == len(sem.sequences)
    atomic = build_identifiers("atomic", g)
    with pytest.raises(TigerError, match="add_tokens"):
        atomic.token_sequences(tokenizer)
    tokenizer.add_tokens(atomic.vocabulary())
    ids = atomic.token_sequences(tokenizer)
    assert len({tuple(s) for s in ids}) == len(g) and all(len(s) == 1 for s in ids)
    assert atomic.trie(tokenizer).num_items == len(g)
