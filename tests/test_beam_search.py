"""Trie-constrained beam search: HF generate with the tensor trie == with the published callback,
and the library's own search against exhaustive scoring of every gallery identifier."""
import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessorList

from tigerlib.decoding import (
    CausalLMScorer,
    CombinedScorer,
    DictTrie,
    Scorer,
    TensorTrie,
    TrieLogitsProcessor,
    constrained_beam_search,
    pmi_scorer,
)

V = 48  # model vocabulary; identifier tokens use [0, 40)
ID_VOCAB = 40


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)
    m = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # sharper next-token distributions than the default 0.02 init
        m.lm_head.weight.mul_(25)
    return m


@pytest.fixture(scope="module")
def gallery():
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, ID_VOCAB, (30, 4), generator=g)


PROMPT = torch.tensor([[41, 7, 19, 3, 44]])


def exhaustive_scores(model, prompt: torch.Tensor, seqs: list[list[int]]) -> torch.Tensor:
    """Teacher-forced log p(identifier | prompt) for every identifier, no cache."""
    out = []
    with torch.no_grad():
        for s in seqs:
            ids = torch.cat([prompt.reshape(-1), torch.tensor(s)])[None]
            logp = torch.log_softmax(model(ids).logits[0].float(), -1)
            p = prompt.numel()
            out.append(logp[p - 1: p - 1 + len(s)].gather(1, torch.tensor(s)[:, None]).sum())
    return torch.stack(out)


def hf_generate(model, prompt, **kw):
    return model.generate(prompt, max_new_tokens=4, do_sample=False, output_scores=True,
                          return_dict_in_generate=True, pad_token_id=0, **kw)


def test_hf_generate_processor_equals_reference_callback(model, gallery):
    trie, ref = TensorTrie.build(gallery, ID_VOCAB), DictTrie.build(gallery)
    prompts = torch.cat([PROMPT, torch.tensor([[2, 30, 30, 11, 5]])])  # a batch of two queries
    kw = dict(num_beams=6, num_return_sequences=6, eos_token_id=None)
    ours = hf_generate(model, prompts, logits_processor=LogitsProcessorList([TrieLogitsProcessor(trie, 5)]), **kw)
    theirs = hf_generate(model, prompts, prefix_allowed_tokens_fn=ref.prefix_allowed_tokens_fn(5), **kw)
    assert torch.equal(ours.sequences, theirs.sequences)
    assert torch.allclose(ours.sequences_scores, theirs.sequences_scores, atol=0, rtol=0)
    generated = ours.sequences[:, 5:]
    gallery_rows = {tuple(s) for s in gallery.tolist()}
    assert all(tuple(s) in gallery_rows for s in generated.tolist())  # every beam is a gallery item
    assert len({tuple(s) for s in generated[:6].tolist()}) == 6
    # unconstrained beams are not gallery items: the processor is doing the work
    free = hf_generate(model, prompts, **kw).sequences[:, 5:]
    assert any(tuple(s) not in gallery_rows for s in free.tolist())
    # HF's score is the length-normalized sum of the constrained log-probs = exhaustive scoring
    best = exhaustive_scores(model, PROMPT, generated[:1].tolist())
    assert torch.allclose(ours.sequences_scores[0] * 4, best[0], atol=1e-4)


def test_hf_generate_variable_length_with_eos(model):
    eos = 45
    seqs = [[3, 4], [3, 4, 5, 6], [7], [8, 1, 2], [3, 9, 9], [7, 7, 2, 1], [10, 11]]
    trie, ref = TensorTrie.build(seqs, V, end_token=eos), DictTrie.build(seqs, end_token=eos)
    kw = dict(num_beams=3, num_return_sequences=3, eos_token_id=eos, max_new_tokens=5)
    ours = model.generate(PROMPT, logits_processor=LogitsProcessorList([TrieLogitsProcessor(trie, 5, eos)]),
                          do_sample=False, output_scores=True, return_dict_in_generate=True, pad_token_id=0, **kw)
    theirs = model.generate(PROMPT, prefix_allowed_tokens_fn=ref.prefix_allowed_tokens_fn(5, eos), do_sample=False,
                            output_scores=True, return_dict_in_generate=True, pad_token_id=0, **kw)
    assert torch.equal(ours.sequences, theirs.sequences)
    assert torch.equal(ours.sequences_scores, theirs.sequences_scores)
    for row in ours.sequences[:, 5:].tolist():
        ident = row[: row.index(eos)]
        assert ident in seqs


def test_processor_masks_wider_logits_and_stuck_rows(gallery):
    trie = TensorTrie.build(gallery, ID_VOCAB)
    proc = TrieLogitsProcessor(trie, prompt_length=2, eos_token_id=46)
    ids = torch.tensor([[9, 9] + gallery[0, :2].tolist(), [9, 9] + gallery[1].tolist()[:2], [9, 9, 39, 39]])
    scores = torch.randn(3, V)
    out = proc(ids, scores)
    allowed = torch.isfinite(out)
    assert torch.equal(allowed[:2, :ID_VOCAB], trie.allowed_mask(trie.walk(ids[:2, 2:])))
    assert not allowed[:2, ID_VOCAB:].any()
    assert trie.walk([39, 39]) == -1  # off the trie: only EOS, with the model's score
    assert allowed[2].nonzero().squeeze(1).tolist() == [46] and out[2, 46] == scores[2, 46]


def test_own_search_is_exhaustive_with_enough_beams(model, gallery):
    trie = TensorTrie.build(gallery, ID_VOCAB)
    truth = exhaustive_scores(model, PROMPT, gallery.tolist())
    for early in (True, False):
        res = constrained_beam_search(CausalLMScorer(model, PROMPT), trie, num_beams=30, early_stop_unique=early)
        assert res.num_beams == 30 and len(res.item_ids) == 30 and bool(res.complete.all())
        order = torch.argsort(truth, descending=True)
        assert [int(i[0]) for i in res.item_ids] == order.tolist()  # exact ranking of every item
        assert torch.allclose(res.scores, truth[order], atol=1e-4)  # full-sequence scores
        assert torch.equal(res.sequences, gallery[order])
        assert (res.stopped_early_at is not None) == early
        if early:
            assert res.stopped_early_at < trie.depth and len(res.beams_per_step) == res.stopped_early_at
        else:
            assert len(res.beams_per_step) == trie.depth and res.beams_per_step[-1] == 0
        assert all(b <= 30 for b in res.beams_per_step)


def test_more_beams_than_items_is_capped(model, gallery):
    trie = TensorTrie.build(gallery[:7], ID_VOCAB)
    res = constrained_beam_search(CausalLMScorer(model, PROMPT), trie, num_beams=1000)
    assert res.num_beams == 7 and sorted(int(i[0]) for i in res.item_ids) == list(range(7))


def test_small_beam_early_stop_scores_are_full_sequence(model, gallery):
    trie = TensorTrie.build(gallery, ID_VOCAB)
    res = constrained_beam_search(CausalLMScorer(model, PROMPT), trie, num_beams=4)
    assert res.stopped_early_at is not None and len(res.item_ids) == 4
    truth = exhaustive_scores(model, PROMPT, res.sequences.tolist())
    assert torch.allclose(res.scores, truth, atol=1e-4)
    assert torch.all(res.scores[:-1] >= res.scores[1:])
    for seq, items in zip(res.sequences.tolist(), res.item_ids):
        assert gallery[int(items[0])].tolist() == seq
    # the one-pass teacher-forced completion equals completing token by token
    class Stepwise(CausalLMScorer):
        score_continuation = Scorer.score_continuation

    slow = constrained_beam_search(Stepwise(model, PROMPT), trie, num_beams=4)
    assert torch.equal(slow.sequences, res.sequences) and torch.allclose(slow.scores, res.scores, atol=1e-5)
    chunked = constrained_beam_search(CausalLMScorer(model, PROMPT, max_logits_bytes=1), trie, num_beams=4)
    assert torch.equal(chunked.sequences, res.sequences) and torch.allclose(chunked.scores, res.scores, atol=1e-5)


def test_duplicates_are_returned_together(model, gallery):
    seqs = torch.cat([gallery[:10], gallery[3:4], gallery[3:4]])
    trie = TensorTrie.build(seqs, ID_VOCAB, item_ids=torch.arange(100, 112))
    res = constrained_beam_search(CausalLMScorer(model, PROMPT), trie, num_beams=10)
    assert len(res.item_ids) == 10
    dup = [sorted(i.tolist()) for i in res.item_ids if len(i) > 1]
    assert dup == [[103, 110, 111]]
    assert sorted(res.ranked_items().tolist()) == list(range(100, 112))


def test_variable_length_search_with_end_token(model):
    end = 39
    seqs = [[3, 4], [3, 4, 5, 6], [7], [8, 1, 2], [3, 9, 9], [7, 7, 2, 1], [10, 11], [3, 4, 5]]
    trie = TensorTrie.build(seqs, ID_VOCAB, end_token=end)
    truth = exhaustive_scores(model, PROMPT, [s + [end] for s in seqs])
    for early in (True, False):
        res = constrained_beam_search(CausalLMScorer(model, PROMPT), trie, num_beams=8, early_stop_unique=early)
        order = torch.argsort(truth, descending=True)
        assert [int(i[0]) for i in res.item_ids] == order.tolist()
        assert torch.allclose(res.scores, truth[order], atol=1e-4)
        got = [[t for t in row if t >= 0] for row in res.sequences.tolist()]
        assert got == [seqs[i] + [end] for i in order.tolist()]


def test_max_steps_and_partial_results(model, gallery):
    trie = TensorTrie.build(gallery, ID_VOCAB)
    truth = exhaustive_scores(model, PROMPT, gallery.tolist())
    # stop after one step with 3 beams: each beam's subtree is completed and rescored
    res = constrained_beam_search(CausalLMScorer(model, PROMPT), trie, num_beams=3, max_steps=1)
    firsts = {row[0] for row in res.sequences.tolist()}
    assert len(firsts) <= 3 and bool(res.complete.all())
    expected = [i for i, s in enumerate(gallery.tolist()) if s[0] in firsts]
    assert sorted(int(i[0]) for i in res.item_ids) == expected
    assert torch.allclose(res.scores, truth[[int(i[0]) for i in res.item_ids]], atol=1e-4)
    # without completion the prefixes come back with all items below them
    part = constrained_beam_search(CausalLMScorer(model, PROMPT), trie, num_beams=3, max_steps=1, complete_partial=False)
    assert not part.complete.any() and (part.sequences[:, 1:] == -1).all()
    assert sorted(part.ranked_items().tolist()) == expected


class TableScorer(Scorer):
    """Log-probs that depend only on the position: a constructed case with known answers."""

    def __init__(self, probs: list[list[float]]):
        self.table = torch.log(torch.tensor(probs))

    def start(self, num_beams):
        self.pos = 0
        return self.table[:1]

    def step(self, last_tokens, beam_origin):
        self.pos += 1
        return self.table[self.pos].expand(len(last_tokens), -1)


def test_pmi_changes_ranking_on_constructed_case():
    # item 0 = [0, 0] is likely under the query, but far more likely with no query at all ("popular")
    cond = [[0.5, 0.3, 0.2], [0.5, 0.3, 0.2]]
    null = [[0.9, 0.05, 0.05], [0.9, 0.05, 0.05]]
    trie = TensorTrie.build([[0, 0], [1, 1], [2, 2]], 3)
    plain = constrained_beam_search(TableScorer(cond), trie, num_beams=3)
    assert [int(i[0]) for i in plain.item_ids] == [0, 1, 2]
    pmi = constrained_beam_search(CombinedScorer([TableScorer(cond), TableScorer(null)], [1.0, -1.0]), trie, num_beams=3)
    assert [int(i[0]) for i in pmi.item_ids] == [1, 2, 0]
    want = torch.tensor([2 * np.log(0.3 / 0.05), 2 * np.log(0.2 / 0.05), 2 * np.log(0.5 / 0.9)], dtype=torch.float32)
    assert torch.allclose(pmi.scores, want, atol=1e-5)


def test_pmi_scorer_matches_exhaustive(model, gallery):
    trie = TensorTrie.build(gallery, ID_VOCAB)
    null = torch.tensor([[41]])
    eta = 0.7
    truth = exhaustive_scores(model, PROMPT, gallery.tolist()) - eta * exhaustive_scores(model, null, gallery.tolist())
    res = constrained_beam_search(pmi_scorer(model, PROMPT, null, eta), trie, num_beams=30)
    order = torch.argsort(truth, descending=True)
    assert [int(i[0]) for i in res.item_ids] == order.tolist()
    assert torch.allclose(res.scores, truth[order], atol=1e-4)
