"""The full-profile LMM class (transformers Janus) on a tiny random config, offline."""
import pytest
import torch

from tigerlib.errors import TigerError
from tigerlib.methods.tiger import TIGeR
from tigerlib.models.janus_lmm import JanusLMM

WORDS = "a red blue green circle square star on the left right of flag can you generate an image describe".split()


def _tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<bos>", "<eos>", "<unk>", "<|User|>", "<|Assistant|>", "<begin_of_image>", "<end_of_image>", "<image_placeholder>"]
    vocab = {t: i for i, t in enumerate(specials + WORDS + list("?:.,"))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(specials)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>", unk_token="<unk>")


@pytest.fixture(scope="module")
def janus():
    from transformers import JanusConfig, JanusForConditionalGeneration

    tokenizer = _tokenizer()
    torch.manual_seed(0)
    cfg = JanusConfig(
        text_config=dict(model_type="llama", vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8, projection_dim=32, depth=1),
        vq_config=dict(embed_dim=8, num_embeddings=64, base_channels=32, channel_multiplier=[1, 1, 2], num_res_blocks=1, num_patches=8, latent_channels=32, projection_dim=32, num_hidden_layers=1, image_token_embed_dim=32),
        image_token_id=tokenizer.convert_tokens_to_ids("<image_placeholder>"),
    )
    model = JanusForConditionalGeneration(cfg)
    with torch.no_grad():  # larger weights than the init: near-uniform outputs would hide bugs
        g = torch.Generator().manual_seed(1)
        for n, p in model.named_parameters():
            if p.ndim >= 2 and "vqmodel" not in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return JanusLMM(model, tokenizer)


TEXTS = ["a red circle on the left", "", "zzz unknown words"]


def test_layout(janus):
    assert janus.codebook_size == 64 and janus.tokens_per_image == 16 and janus.vocab_size == 64  # a 4x4 grid
    assert janus.num_image_features == 16
    assert (janus.prompt_ids("a red circle") >= 64).all()  # text ids sit after the image codes


def test_batched_likelihoods_equal_unbatched(janus):
    codes = torch.randint(0, 64, (3, 16), generator=torch.Generator().manual_seed(0))
    fwd = janus.logp_image_given_text(TEXTS, codes)
    null = janus.logp_image_null(codes)
    rev = janus.logp_text_given_image(codes, TEXTS)
    assert fwd.shape == null.shape == rev.shape == (3,)
    assert (fwd < 0).all() and (null < 0).all() and (rev < 0).all()
    for i in range(3):
        assert torch.allclose(fwd[i : i + 1], janus.logp_image_given_text([TEXTS[i]], codes[i : i + 1]), atol=1e-3)
        assert torch.allclose(rev[i : i + 1], janus.logp_text_given_image(codes[i : i + 1], [TEXTS[i]]), atol=1e-3)
    assert torch.allclose(janus.logp_text_given_image_matrix(codes, TEXTS).diagonal(), rev, atol=1e-3)
    with pytest.raises(TigerError, match="out of range"):
        janus.logp_image_null(torch.full((1, 16), 64))


def test_sampling_is_reproducible(janus):
    a = janus.sample_images(TEXTS[:2], top_p=0.9, seed=3)
    assert a.shape == (2, 16) and int(a.max()) < 64
    assert torch.equal(a, janus.sample_images(TEXTS[:2], top_p=0.9, seed=3))


def test_tiger_runs_unchanged_on_janus(janus):
    codes = torch.randint(0, 64, (6, 16), generator=torch.Generator().manual_seed(1))
    tiger = TIGeR(janus, codes)
    full = tiger.proxy_scores([TEXTS[0]], "pmi")[0]
    res = tiger.search(TEXTS[0], num_beams=10, eta=1.0)
    ranking = res.ranked_items()
    expected = torch.repeat_interleave(res.scores, torch.tensor([len(i) for i in res.item_ids]))
    assert sorted(ranking.tolist()) == list(range(6))
    assert torch.allclose(full[ranking], expected, atol=1e-3)
    assert len(tiger.retrieve(TEXTS[0], num_beams=3, rerank=2).ranking) == 3


def test_full_profile_name_offline_fails_fast(empty_model_caches):
    with pytest.raises(TigerError, match="download"):
        JanusLMM.from_pretrained("deepseek-community/Janus-Pro-1B")
