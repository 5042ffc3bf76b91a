import pytest
import torch

from tigerlib.config import get_settings
from tigerlib.decoding import CausalLMScorer, TensorTrie, constrained_beam_search
from tigerlib.errors import TigerError
from tigerlib.models.dual_encoder import TINY_DUAL_ENCODER, DualEncoder
from tigerlib.models.lmm import BOI, BOS, EOS, UNK, TINY_LMM, UnifiedLMM, train_lmm
from tigerlib.models.visual_tokenizer import TINY_VQ
from tigerlib.models.judge import TINY_JUDGE
from tigerlib.zoo import build_zoo, load_zoo_model, model_dir

TINY = {"dual_encoder": TINY_DUAL_ENCODER, "visual_tokenizer": TINY_VQ, "judge": TINY_JUDGE, "lmm": TINY_LMM}
TEXTS = ["a small red circle on the left, gray background", "", "qwzx blorp flurb", "the flag of nowhere at all in the middle of the sea"]


@pytest.fixture(scope="module")
def codes(tiny_world, vq):
    return vq.encode(tiny_world.val.images[: len(TEXTS)])


def test_batched_likelihoods_equal_unbatched(lmm, codes):
    fwd = lmm.logp_image_given_text(TEXTS, codes)
    rev = lmm.logp_text_given_image(codes, TEXTS)
    null = lmm.logp_image_null(codes)
    assert fwd.shape == rev.shape == null.shape == (len(TEXTS),)
    assert (fwd < 0).all() and (rev < 0).all() and (null < 0).all()
    for i, text in enumerate(TEXTS):
        assert torch.allclose(fwd[i : i + 1], lmm.logp_image_given_text([text], codes[i : i + 1]), atol=1e-4)
        assert torch.allclose(rev[i : i + 1], lmm.logp_text_given_image(codes[i : i + 1], [text]), atol=1e-4)
        assert torch.allclose(null[i : i + 1], lmm.logp_image_null(codes[i]), atol=1e-4)
    # the null score is the forward score under the null prompt, not some prompt's
    assert not torch.allclose(null, fwd, atol=1e-2)
    # the all-pairs matrix (shared image prefix cache) agrees with the pairwise scores
    matrix = lmm.logp_text_given_image_matrix(codes, TEXTS, max_rows=3)
    assert matrix.shape == (len(TEXTS), len(TEXTS))
    assert torch.allclose(matrix.diagonal(), rev, atol=1e-4)
    i, j = 0, 2
    assert torch.allclose(matrix[i, j : j + 1], lmm.logp_text_given_image(codes[i : i + 1], [TEXTS[j]]), atol=1e-4)


def test_sampling_is_reproducible(lmm):
    a = lmm.sample_images(TEXTS, top_p=0.5, seed=3)
    b = lmm.sample_images(TEXTS, top_p=0.5, seed=3)
    c = lmm.sample_images(TEXTS, top_p=1.0, seed=4)
    assert a.shape == (len(TEXTS), 64) and a.dtype == torch.long
    assert 0 <= int(a.min()) and int(a.max()) < TINY_LMM.codebook_size
    assert torch.equal(a, b) and not torch.equal(a, c)
    # batching does not change a prompt's distribution: greedy-like sampling agrees one by one
    greedy = lmm.sample_images(TEXTS, top_p=1e-6, seed=0)
    assert torch.equal(greedy[1:2], lmm.sample_images(TEXTS[1:2], top_p=1e-6, seed=9))
    with pytest.raises(TigerError, match="top_p"):
        lmm.sample_images(TEXTS, top_p=0.0)


def test_captions_are_text(lmm, codes):
    caps = lmm.caption(codes, max_new_tokens=6)
    assert len(caps) == len(codes) and all(isinstance(c, str) for c in caps)
    assert all("<img" not in c and "<boi>" not in c for c in caps)
    assert all(len(c.split()) <= 6 for c in caps)


def test_prompts_and_bad_input(lmm, capsys):
    empty = lmm.prompt_ids("").tolist()
    assert empty[0] == BOS and empty[-1] == BOI and empty == [BOS] + lmm._head + [BOI]
    null = lmm.null_prompt_ids().tolist()
    assert null[0] == BOS and null[-1] == BOI and null != empty
    assert UNK in lmm.prompt_ids("a zzqx circle").tolist()
    capsys.readouterr()
    long_text = " ".join(["red circle"] * 200)
    ids = lmm.prompt_ids(long_text)
    assert "truncated" in capsys.readouterr().err
    assert len(ids) + TINY_LMM.tokens_per_image + 1 <= TINY_LMM.max_length
    codes = torch.zeros(1, 64, dtype=torch.long)
    assert torch.isfinite(lmm.logp_image_given_text([long_text], codes)).all()
    assert torch.isfinite(lmm.logp_text_given_image(codes, [long_text])).all()
    with pytest.raises(TigerError, match="shape"):
        lmm.logp_image_null(torch.zeros(2, 10, dtype=torch.long))
    with pytest.raises(TigerError, match="out of range"):
        lmm.logp_text_given_image(torch.full((1, 64), TINY_LMM.codebook_size), ["a red circle"])
    with pytest.raises(TigerError, match="out of range"):
        lmm.caption(torch.full((1, 64), -1))
    with pytest.raises(TigerError, match="integers"):
        lmm.image_token_ids(torch.zeros(1, 64))
    with pytest.raises(TigerError, match="one text per image"):
        lmm.logp_image_given_text(["a", "b"], codes)
    ids = lmm.image_token_ids(torch.arange(64)[None] % TINY_LMM.codebook_size)
    assert torch.equal(lmm.codes_from_token_ids(ids), torch.arange(64)[None] % TINY_LMM.codebook_size)
    with pytest.raises(TigerError, match="not image tokens"):
        lmm.codes_from_token_ids(torch.full((1, 64), EOS))


def test_trie_search_with_causal_lm_scorer(lmm, codes):
    """Exhaustive constrained search over image-token ids gives every image its exact score."""
    gallery = lmm.image_token_ids(codes)
    trie = TensorTrie.build(gallery, lmm.vocab_size)
    text = TEXTS[0]
    res = constrained_beam_search(CausalLMScorer(lmm.model, lmm.prompt_ids(text)), trie, num_beams=len(gallery))
    items = res.ranked_items()
    assert sorted(items.tolist()) == list(range(len(gallery)))
    expected = lmm.logp_image_given_text([text] * len(gallery), codes)
    assert torch.allclose(res.scores, expected[items], atol=1e-3)


def test_training_is_deterministic(tiny_world, vq):
    a, _ = train_lmm(tiny_world, TINY_LMM, seed=0, deps={"visual_tokenizer": vq})
    b, _ = train_lmm(tiny_world, TINY_LMM, seed=0, deps={"visual_tokenizer": vq})
    c, _ = train_lmm(tiny_world, TINY_LMM, seed=1, deps={"visual_tokenizer": vq})
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    with pytest.raises(TigerError, match="visual tokenizer"):
        train_lmm(tiny_world, TINY_LMM, seed=0, deps={})


def test_zoo_build_and_reload(home, tiny_world):
    settings = get_settings(device="cpu")
    status = build_zoo(settings, only=["lmm"], configs=TINY, world=tiny_world)
    rec = status["models"]["lmm"]
    assert rec["built"] and rec["role"] == "lmm"
    for key in ("forward_clip_t", "shuffled_clip_t", "reverse_top1", "forward_judge"):
        assert key in rec["metrics"]
    for key in ("reverse_top1", "entity_reverse_r1"):
        assert 0.0 <= rec["metrics"][key] <= 1.0
    assert (model_dir(settings, "lmm") / "tokenizer.json").exists()
    # a reload rebuilds the same model and tokenizer from the checkpoint
    first = load_zoo_model(settings, "lmm")
    again = load_zoo_model(settings, "lmm")
    assert isinstance(first, UnifiedLMM) and first.tokenizer.get_vocab() == again.tokenizer.get_vocab()
    vq = load_zoo_model(settings, "visual_tokenizer")
    codes = vq.encode(tiny_world.val.images[:3])
    assert torch.equal(first.logp_image_given_text(TEXTS[:3], codes), again.logp_image_given_text(TEXTS[:3], codes))
    # a damaged tokenizer file is caught by the hash check
    (model_dir(settings, "lmm") / "tokenizer.json").write_text("{}")
    with pytest.raises(TigerError, match="tiger zoo build"):
        load_zoo_model(settings, "lmm")


def test_create_needs_a_tokenizer():
    with pytest.raises(TigerError, match="tokenizer"):
        UnifiedLMM.create(TINY_LMM)
    enc = DualEncoder.create(TINY_DUAL_ENCODER)  # the evaluator the zoo passes in deps
    assert enc.encode_text(["a red circle"]).shape[0] == 1


def test_entity_share_sets_the_batch_mix():
    import numpy as np

    from tigerlib.models.lmm import _sample_batch

    rng = np.random.default_rng(0)
    entities, scenes = np.arange(0, 10), np.arange(10, 1000)
    idx = np.concatenate([_sample_batch(rng, [entities, scenes], 64, 0.4) for _ in range(100)])
    assert abs(np.isin(idx, entities).mean() - 0.4) < 0.03
    assert not np.isin(_sample_batch(rng, [entities, scenes], 64, 0.0), entities).any()
    assert np.isin(_sample_batch(rng, [entities, scenes], 64, 1.0), entities).all()
    # a split without entity photos (or without scenes) still fills the batch from the other pool
    assert np.isin(_sample_batch(rng, [entities[:0], scenes], 64, 0.4), scenes).all()
    assert np.isin(_sample_batch(rng, [entities, scenes[:0]], 64, 0.4), entities).all()


def test_entity_share_is_checked(tiny_world, vq):
    import dataclasses

    with pytest.raises(TigerError, match="entity_share"):
        train_lmm(tiny_world, dataclasses.replace(TINY_LMM, entity_share=1.5), seed=0, deps={"visual_tokenizer": vq})
