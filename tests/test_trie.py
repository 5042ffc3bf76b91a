"""TensorTrie: same answers as the published dict trie, edge cases, persistence, memory."""
import numpy as np
import pytest
import torch

from tigerlib.decoding import DictTrie, TensorTrie, reference_allowed_mask
from tigerlib.errors import TigerError


pytestmark = pytest.mark.usefixtures("one_thread")


def all_prefixes(seqs: list[list[int]]) -> list[list[int]]:
    return sorted({tuple(s[:d]) for s in seqs for d in range(len(s) + 1)})


def assert_matches_reference(trie: TensorTrie, ref: DictTrie, prefixes: list[list[int]]):
    """Every prefix: same allowed set from allowed_mask, allowed_tokens and the reference."""
    width = max(len(p) for p in prefixes)
    padded = torch.full((len(prefixes), width), -1, dtype=torch.long)
    for i, p in enumerate(prefixes):
        padded[i, : len(p)] = torch.tensor(p, dtype=torch.long)
    nodes = torch.zeros(len(prefixes), dtype=torch.long)
    for col in range(width):  # rows that are shorter keep their node
        stepped = trie.step(nodes, padded[:, col])
        nodes = torch.where(padded[:, col] >= 0, stepped, nodes)
    mask = trie.allowed_mask(nodes)
    flat, offsets = trie.allowed_tokens(nodes)
    for i, p in enumerate(prefixes):
        expected = sorted(ref.get(list(p)))
        assert torch.nonzero(mask[i]).squeeze(1).tolist() == expected, p
        assert flat[offsets[i]: offsets[i + 1]].tolist() == expected, p
        assert trie.walk(list(p)) == int(nodes[i])
    return nodes


def test_fixed_length_with_duplicates_matches_reference():
    rng = np.random.default_rng(0)
    seqs = rng.integers(0, 12, size=(300, 5))
    seqs = np.concatenate([seqs, seqs[:25]])  # 25 duplicates
    trie, ref = TensorTrie.build(seqs, 12), DictTrie.build(seqs)
    assert trie.num_nodes == ref.num_nodes and trie.num_collisions == 25 and trie.num_items == 325
    prefixes = all_prefixes(seqs.tolist())
    nodes = assert_matches_reference(trie, ref, prefixes)
    assert len(set(nodes.tolist())) == len(prefixes) == trie.num_nodes  # one node per distinct prefix
    # prefixes that leave the trie: random ones the reference rejects
    junk = [p for p in map(list, rng.integers(0, 12, size=(200, 3))) if not ref.get(p) and tuple(p) not in set(prefixes)]
    assert junk and all(trie.walk(p) == -1 for p in junk)
    # the HF-style reference mask agrees on a batch of beams, including the root
    ids = torch.from_numpy(seqs[:40, :3])
    for d in range(4):
        want = reference_allowed_mask(ref.prefix_allowed_tokens_fn(0), ids[:, :d], 12)
        got = trie.allowed_mask(trie.walk(ids[:, :d]) if d else torch.zeros(40, dtype=torch.long))
        assert torch.equal(got, want)


def test_variable_length_with_end_token_matches_reference():
    rng = np.random.default_rng(1)
    end = 9
    seqs = [rng.integers(0, end, size=rng.integers(1, 6)).tolist() for _ in range(200)]
    seqs += [s[:-1] for s in seqs[:30] if len(s) > 1] + seqs[:10]  # prefixes of others + duplicates
    trie, ref = TensorTrie.build(seqs, 10, end_token=end), DictTrie.build(seqs, end_token=end)
    assert trie.num_nodes == ref.num_nodes and trie.depth == 6 and trie.end_token == end
    assert_matches_reference(trie, ref, all_prefixes([s + [end] for s in seqs]))
    for s in seqs[:20]:  # the end token closes an identifier; the leaf is after it
        assert trie.is_leaf(torch.tensor([trie.walk(s + [end])])).item()
        assert not trie.is_leaf(torch.tensor([trie.walk(s)])).item()


def test_unequal_lengths_without_prefixes_need_no_end_token():
    seqs = [[1, 2], [1, 3, 4], [2], [1, 3, 5, 6]]
    trie, ref = TensorTrie.build(seqs, 7), DictTrie.build(seqs)
    assert trie.depth == 4 and trie.num_leaves == 4
    assert_matches_reference(trie, ref, all_prefixes(seqs))
    sequences, items = trie.complete(0)
    got = {tuple(x for x in row if x >= 0): int(i[0]) for row, i in zip(sequences.tolist(), items)}
    assert got == {tuple(s): i for i, s in enumerate(seqs)}


@pytest.mark.parametrize("seqs", [[], np.zeros((0, 4), dtype=np.int64), torch.zeros(0, 3, dtype=torch.long)])
def test_empty_gallery(seqs):
    with pytest.raises(TigerError, match="empty gallery"):
        TensorTrie.build(seqs, 10)


def test_single_sequence():
    trie = TensorTrie.build([[3, 1, 2]], 5, item_ids=[42])
    assert (trie.num_nodes, trie.num_leaves, trie.depth, trie.max_degree) == (4, 1, 3, 1)
    assert trie.walk([3, 1, 2]) == 3 and trie.walk([3, 2]) == -1
    assert trie.allowed_mask(torch.tensor([0]))[0].nonzero().squeeze(1).tolist() == [3]
    sequences, items = trie.complete(trie.walk([3]))
    assert sequences.tolist() == [[3, 1, 2]] and items[0].tolist() == [42]
    assert trie.items_under(0).tolist() == [42]


def test_prefix_of_another_needs_end_token():
    with pytest.raises(TigerError, match="end_token"):
        TensorTrie.build([[1, 2, 3], [1, 2]], 5)
    trie = TensorTrie.build([[1, 2, 3], [1, 2]], 5, end_token=4)
    assert trie.num_leaves == 2 and trie.depth == 4


def test_end_token_inside_an_identifier():
    with pytest.raises(TigerError, match="end_token"):
        TensorTrie.build([[1], [1, 4, 2]], 5, end_token=4)  # [1, end] would be a prefix of [1, 4, 2, end]
    with pytest.raises(TigerError, match="end_token"):
        TensorTrie.build([[1, 4, 4], [1, 2]], 5, end_token=4)  # HF would stop generating at the inner 4


@pytest.mark.parametrize("bad", [[[1, 2], [0, 5]], [[1, -1]], np.array([[0, 1], [7, 2]])])
def test_tokens_outside_vocab(bad):
    with pytest.raises(TigerError, match="outside the vocabulary"):
        TensorTrie.build(bad, 5)


def test_bad_arguments():
    with pytest.raises(TigerError, match="end_token"):
        TensorTrie.build([[1, 2]], 5, end_token=5)
    with pytest.raises(TigerError, match="2-D"):
        TensorTrie.build(torch.tensor([1, 2, 3]), 5)
    with pytest.raises(TigerError, match="flat list"):
        TensorTrie.build([1, 2, 3], 5)
    with pytest.raises(TigerError, match="item_ids"):
        TensorTrie.build([[1, 2], [2, 1]], 5, item_ids=[7])
    with pytest.raises(TigerError, match="empty"):
        TensorTrie.build([[1, 2], []], 5)


def test_duplicates_share_a_leaf():
    seqs = torch.tensor([[1, 2], [3, 4], [1, 2], [1, 2], [3, 0]])
    trie = TensorTrie.build(seqs, 5, item_ids=torch.tensor([10, 11, 12, 13, 14]))
    assert trie.num_collisions == 2 and trie.num_leaves == 3
    leaf = trie.walk([1, 2])
    assert sorted(trie.items_at(torch.tensor([leaf]))[0].tolist()) == [10, 12, 13]
    sequences, items = trie.complete(0)
    assert {tuple(s): sorted(i.tolist()) for s, i in zip(sequences.tolist(), items)} == {
        (1, 2): [10, 12, 13], (3, 0): [14], (3, 4): [11]}
    assert trie.num_items_below(torch.tensor([0, trie.walk([1]), trie.walk([3])])).tolist() == [5, 3, 2]
    assert trie.num_leaves_below(torch.tensor([0, trie.walk([1]), trie.walk([3]), -1])).tolist() == [3, 1, 2, 0]
    with pytest.raises(TigerError, match="not a leaf"):
        trie.items_at(torch.tensor([trie.walk([1])]))


def test_complete_and_items_under_match_brute_force():
    rng = np.random.default_rng(2)
    seqs = rng.integers(0, 6, size=(150, 4))
    items = rng.permutation(1000)[:150]
    trie = TensorTrie.build(seqs, 6, item_ids=items)
    for prefix in all_prefixes(seqs[:, :3].tolist())[:80]:
        node = trie.walk(list(prefix))
        under = (seqs[:, : len(prefix)] == np.array(prefix, dtype=np.int64)).all(axis=1)
        assert sorted(trie.items_under(node).tolist()) == sorted(items[under].tolist())
        sequences, per_seq = trie.complete(node)
        assert {tuple(s) for s in sequences.tolist()} == {tuple(s) for s in seqs[under].tolist()}
        for s, ids in zip(sequences.tolist(), per_seq):
            assert sorted(ids.tolist()) == sorted(items[(seqs == np.array(s)).all(axis=1)].tolist())
        assert int(trie.num_leaves_below(torch.tensor([node]))) == len(sequences)
        assert int(trie.node_depth(torch.tensor([node]))) == len(prefix)
        assert trie.paths(torch.tensor([node]))[0, : len(prefix)].tolist() == list(prefix)
    assert trie.items_under(-1).numel() == 0 and trie.complete(-1)[0].shape == (0, 4)


def test_step_edge_cases():
    trie = TensorTrie.build([[1, 2], [1, 3], [4, 0]], 5)
    n1 = trie.walk([1])
    got = trie.step(torch.tensor([0, 0, 0, n1, n1, -1, 0, 0]), torch.tensor([1, 4, 2, 3, 0, 1, -1, 7]))
    assert got.tolist() == [n1, trie.walk([4]), -1, trie.walk([1, 3]), -1, -1, -1, -1]
    leaf = trie.walk([1, 2])
    assert trie.step(torch.tensor([leaf]), torch.tensor([0])).tolist() == [-1]  # nothing below a leaf
    assert not trie.allowed_mask(torch.tensor([leaf, -1])).any()
    assert trie.is_leaf(torch.tensor([0, n1, leaf, -1])).tolist() == [False, False, True, False]
    tokens, leaves = trie.follow_first(torch.tensor([trie.walk([4]), n1]))
    assert tokens.tolist() == [[0], [2]] and leaves.tolist() == [trie.walk([4, 0]), leaf]


def test_mask_logits():
    trie = TensorTrie.build([[1, 2], [3, 0]], 4)
    logits = torch.randn(3, 6)
    nodes = torch.tensor([0, trie.walk([1]), -1])
    out = trie.mask_logits(logits, nodes)
    assert torch.isinf(out).sum() == 6 * 3 - 3  # root: 1 and 3; [1]: 2; -1: nothing; cols 4-5 never
    assert out[0, 1] == logits[0, 1] and out[0, 3] == logits[0, 3] and out[1, 2] == logits[1, 2]
    assert not torch.isinf(logits).any()  # not in place by default
    same = trie.mask_logits(logits, nodes, inplace=True)
    assert same.data_ptr() == logits.data_ptr() and torch.equal(same, out)
    with pytest.raises(TigerError, match="vocabulary"):
        trie.mask_logits(torch.randn(1, 3), torch.tensor([0]))


def test_save_load_roundtrip(tmp_path):
    seqs = [[1, 2, 3], [1, 2], [4], [1, 2]]
    trie = TensorTrie.build(seqs, 6, item_ids=[5, 6, 7, 8], end_token=0)
    path = trie.save(tmp_path / "sub" / "gallery.trie.safetensors")
    assert [p.name for p in path.parent.iterdir()] == ["gallery.trie.safetensors"]  # no temp file left
    back = TensorTrie.load(path)
    for name in ("row_ptr", "tokens", "root_mask", "depth_start", "leaf_nodes", "leaf_ptr", "leaf_items"):
        a, b = getattr(trie, name), getattr(back, name)
        assert a.dtype == b.dtype and torch.equal(a, b), name
    assert (back.vocab_size, back.end_token, back.num_collisions, back.max_degree) == (6, 0, 1, trie.max_degree)
    assert sorted(back.items_under(back.walk([1, 2])).tolist()) == [5, 6, 8]
    trie.save(path)  # overwriting works too
    with pytest.raises(TigerError, match="no trie file"):
        TensorTrie.load(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(TigerError, match="not a TensorTrie"):
        TensorTrie.load(tmp_path / "other.safetensors")


def test_load_rejects_altered_or_damaged_file(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    trie = TensorTrie.build([[1, 2, 3], [1, 2, 4], [5, 0, 0]], 6)
    path = trie.save(tmp_path / "t.safetensors")
    good = path.read_bytes()

    path.write_bytes(good[:-1] + bytes([good[-1] ^ 0xFF]))  # one flipped byte in the array data
    with pytest.raises(TigerError, match=r"sha256.*rebuild it with TensorTrie.build"):
        TensorTrie.load(path)

    path.write_bytes(good)
    with safe_open(str(path), framework="pt") as f:  # one array changed, metadata kept
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors["tokens"] = tensors["tokens"].flip(0).contiguous()
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(TigerError, match="sha256"):
        TensorTrie.load(path)

    path.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(TigerError, match="damaged.*rebuild"):
        TensorTrie.load(path)

    del meta["sha256"]  # saved before checksums existed: still loads
    tensors["tokens"] = trie.tokens
    save_file(tensors, str(path), metadata=meta)
    assert torch.equal(TensorTrie.load(path).tokens, trie.tokens)


def test_memory_layout_and_bytes_per_node():
    rng = np.random.default_rng(3)
    trie = TensorTrie.build(rng.integers(0, 8192, size=(20_000, 32)), 8192)
    assert trie.row_ptr.dtype == torch.int32 and trie.tokens.dtype == torch.int16
    assert trie.nbytes == sum(getattr(trie, n).numel() * getattr(trie, n).element_size()
                              for n in ("row_ptr", "tokens", "root_mask", "depth_start", "leaf_nodes", "leaf_ptr", "leaf_items"))
    assert trie.bytes_per_node == trie.nbytes / trie.num_nodes <= 16
    assert trie.num_nodes == len(trie.tokens) + 1  # child ids are implicit: one token per non-root node
    big = TensorTrie.build([[40_000, 1], [5, 2]], 50_000)
    assert big.tokens.dtype == torch.int32 and big.walk([40_000, 1]) > 0


def test_to_device_keeps_behaviour():
    trie = TensorTrie.build([[1, 2], [1, 3]], 4)
    moved = trie.to("cpu")
    assert moved is not trie and moved.device.type == "cpu"
    assert torch.equal(moved.allowed_mask(torch.tensor([0, 1])), trie.allowed_mask(torch.tensor([0, 1])))
