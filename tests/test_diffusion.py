import json
import string

import numpy as np
import pytest
import torch

from tigerlib.errors import TigerError
from tigerlib.evaluation.zoo_metrics import evaluate_diffusion, evaluation_prompts
from tigerlib.models.diffusion import TINY_DIFFUSION, LatentDiffusion, StableDiffusion, train_diffusion
from tigerlib.models.dual_encoder import TINY_DUAL_ENCODER, DualEncoder
from tigerlib.models.visual_tokenizer import TINY_VQ, VQTokenizer


@pytest.fixture(scope="module")
def deps():
    torch.manual_seed(0)
    return {"dual_encoder": DualEncoder.create(TINY_DUAL_ENCODER), "visual_tokenizer": VQTokenizer.create(TINY_VQ)}


@pytest.fixture(scope="module")
def t2i(tiny_world, deps, one_thread):
    model, stats = train_diffusion(tiny_world, TINY_DIFFUSION, 0, "cpu", deps)
    assert stats["train_images"] == int((tiny_world.train.attributes["entity"] < 0).sum())  # common scenes only
    return model


def test_generate_shapes_and_seed(t2i):
    a = t2i(prompt=["a red circle on a blue background", "a green square"], seed=3, progress=False).images
    assert a.shape == (2, 32, 32, 3) and a.dtype == np.uint8
    again = t2i(prompt=["a red circle on a blue background", "a green square"], seed=3, progress=False).images
    other = t2i(prompt=["a red circle on a blue background", "a green square"], seed=4, progress=False).images
    assert np.array_equal(a, again) and not np.array_equal(a, other)
    assert t2i(prompt="a red circle", num_images_per_prompt=3, progress=False).images.shape == (3, 32, 32, 3)


def test_prompt_embeds_equal_prompt(t2i):
    prompts = ["a small yellow star", "zzz qqq unknown words"]
    states = t2i.encode_prompt(prompts)
    assert states.shape == (2, TINY_DUAL_ENCODER.context_length, TINY_DUAL_ENCODER.text_width)
    by_text = t2i(prompt=prompts, seed=0, progress=False).images
    by_states = t2i(prompt_embeds=states, seed=0, progress=False).images
    assert np.array_equal(by_text, by_states)


def test_bad_prompts_and_embeds(t2i):
    # empty and over-long prompts are truncated by the tokenizer, never a crash
    assert t2i(prompt=["", "red " * 200], progress=False).images.shape == (2, 32, 32, 3)
    with pytest.raises(TigerError, match="exactly one"):
        t2i(prompt=["a"], prompt_embeds=torch.zeros(1, 24, 32))
    with pytest.raises(TigerError, match="exactly one"):
        t2i()
    with pytest.raises(TigerError, match="prompt_embeds must have shape"):
        t2i(prompt_embeds=torch.zeros(1, 24, 7))
    with pytest.raises(TigerError, match="num_inference_steps"):
        t2i(prompt=["a"], num_inference_steps=0)


def test_evaluation_prompts_are_distinct_and_metrics_bounded(t2i, tiny_world, deps):
    prompts = evaluation_prompts(tiny_world, n=8)
    assert set(prompts) == {"common", "creative", "knowledge"}
    for texts, truth in prompts.values():
        assert 0 < len(texts) <= 8 and len(set(texts)) == len(texts) and len(truth["shape"]) == len(texts)
    from tigerlib.models.judge import TINY_JUDGE, AttributeJudge

    m = evaluate_diffusion(t2i, tiny_world, {**deps, "judge": AttributeJudge.create(TINY_JUDGE)}, n=8)
    for kind in ("common", "creative", "knowledge"):
        assert 0.0 <= m[f"{kind}_r1"] <= 1.0
    assert m["common_judge"]["all"] is not None and m["knowledge_judge"]["entity"] is not None


def test_stable_diffusion_pipeline_from_configs(tmp_path):
    """The full path: a diffusers StableDiffusionPipeline assembled from tiny random configs."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    chars = list(string.ascii_lowercase + string.digits + ".,'")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    vocab.update({c + end: i for i, (c, end) in enumerate(((c, e) for e in ("", "</w>") for c in chars), start=2)})
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(vocab_file=str(tmp_path / "vocab.json"), merges_file=str(tmp_path / "merges.txt"), model_max_length=77)
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=1, cross_attention_dim=16, attention_head_dim=4, norm_num_groups=4)
    vae = AutoencoderKL(block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4, sample_size=16)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=DDIMScheduler(clip_sample=False), safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    sd = StableDiffusion(pipe)
    states = sd.encode_prompt(["a red circle"])
    assert states.shape == (1, 77, 16)  # SD v1.5 gives [1, 77, 768]
    a = sd(prompt=["a red circle"], num_inference_steps=2, seed=1, progress=False).images
    b = sd(prompt_embeds=states, num_inference_steps=2, seed=1, progress=False).images
    assert a.shape == (1, 16, 16, 3) and a.dtype == np.uint8 and np.array_equal(a, b)


def test_full_profile_name_offline_fails_fast(empty_model_caches):
    with pytest.raises(TigerError, match="download"):
        StableDiffusion.from_pretrained("stable-diffusion-v1-5/stable-diffusion-v1-5")
