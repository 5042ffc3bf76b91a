"""GILL on tiny models: a tiny random Llama stands in for the frozen LLM (the real SmolLM2 is
tested in test_text_llm.py), the tiny dual encoder and diffusion model for theirs."""
import copy
import warnings

import numpy as np
import pytest
import torch

from tigerlib.errors import TigerError
from tigerlib.methods.gill import GILL, TINY_GILL, GILLRetriever, bf16_linear_copy, caption_pairs, info_nce, start_from_text, train_gill, train_image_input, training_pairs
from tigerlib.methods.gill_mapper import FULL_MAPPER, TINY_MAPPER, GILLMapper
from tigerlib.models.diffusion import TINY_DIFFUSION, train_diffusion
from tigerlib.models.dual_encoder import TINY_DUAL_ENCODER, DualEncoder
from tigerlib.models.text_llm import TextLLM
from tigerlib.models.visual_tokenizer import TINY_VQ, VQTokenizer


def tiny_llm(world) -> TextLLM:
    """A tiny random causal LM over a word-level tokenizer of the world's captions."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tigerlib.models.text_tokenizer import train_text_tokenizer

    tok = train_text_tokenizer([c for caps in world.train.captions for c in caps] + list(world.entity_names), 4)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=128,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=True)
    return TextLLM(LlamaForCausalLM(cfg), tok, "tiny")


@pytest.fixture(scope="module")
def deps(tiny_world, one_thread):
    torch.manual_seed(0)
    de, vq = DualEncoder.create(TINY_DUAL_ENCODER), VQTokenizer.create(TINY_VQ)
    t2i, _ = train_diffusion(tiny_world, TINY_DIFFUSION, 0, "cpu", {"dual_encoder": de, "visual_tokenizer": vq})
    return {"text_llm": tiny_llm(tiny_world), "dual_encoder": de, "diffusion": t2i}


@pytest.fixture(scope="module")
def trained(tiny_world, deps):
    before = {k: v.clone() for k, v in deps["text_llm"].model.state_dict().items()}
    gill, stats = train_gill(tiny_world, TINY_GILL, 0, "cpu", deps)
    return gill, stats, before


def test_mapper_shapes_at_both_scales():
    m = GILLMapper(TINY_MAPPER)
    out = m(torch.randn(3, 8, 32), torch.randn(3, 8, 32))
    assert out.shape == (3, TINY_MAPPER.queries, TINY_MAPPER.out_width)
    assert (FULL_MAPPER.llm_width, FULL_MAPPER.width, FULL_MAPPER.queries, FULL_MAPPER.out_width) == (4096, 512, 77, 768)
    assert (FULL_MAPPER.encoder_layers, FULL_MAPPER.decoder_layers, FULL_MAPPER.heads) == (4, 4, 4)
    with pytest.raises(TigerError, match="hidden states"):
        m(torch.randn(3, 8, 31), torch.randn(3, 8, 31))


def test_the_full_scale_mapper_runs_at_the_papers_shapes():
    """OPT-6.7B's [IMG] states [n, 8, 4096] -> Stable Diffusion v1.5's conditioning [n, 77, 768]."""
    torch.manual_seed(0)
    m = GILLMapper(FULL_MAPPER)
    x = torch.randn(1, FULL_MAPPER.img_tokens, FULL_MAPPER.llm_width)
    with torch.no_grad():
        assert m(x, x).shape == (1, 77, 768)
    assert m.transformer.encoder.layers[0].self_attn.num_heads == 4 and m.project_in.out_features == 512


def test_a_short_run_lowers_each_loss(tiny_world, deps):
    from dataclasses import replace

    config = replace(TINY_GILL, captions=64, joint_steps=16, mapper_steps=60, caption_steps=16, warmup=3, decay=10, lr=1e-2)
    _, stats = train_gill(tiny_world, config, 0, "cpu", deps)
    for name, curve in stats["loss_curves"].items():
        if name in ("l2", "nce"):  # the joint stage's batches are smaller (InfoNCE has fewer negatives): the mapper stage alone
            curve = curve[-config.mapper_steps :]
        assert len(curve) >= 16 and np.mean(curve[-4:]) < np.mean(curve[:4]), (name, curve[:4], curve[-4:])


def test_the_image_input_reads_scenes_in_one_template_and_keeps_other_captions(tiny_world):
    from types import SimpleNamespace

    from tigerlib.data import world as W

    attrs = tiny_world.train.attributes
    rows, texts = caption_pairs(tiny_world, 40, 0.5, 0)
    kinds = np.asarray(attrs["kind"])[rows]
    assert (kinds == W.KIND_COMMON).any() and (kinds != W.KIND_COMMON).any()
    for r, t, k in zip(rows.tolist(), texts, kinds):
        assert t == W.describe(attrs, r) if k == W.KIND_COMMON else t in tiny_world.train.captions[r]
    plain = SimpleNamespace(train=SimpleNamespace(attributes={}, captions=tiny_world.train.captions, images=tiny_world.train.images))
    rows, texts = caption_pairs(plain, 20, 0.0, 0)  # data without ground truth: each row's own captions
    assert all(t in plain.train.captions[r] for r, t in zip(rows.tolist(), texts))
    with pytest.raises(TigerError, match="caption_entity_share"):
        caption_pairs(tiny_world, 4, 1.5, 0)


@pytest.mark.parametrize("bf16", [False, True])
def test_the_image_input_trains_in_fp32_and_bf16(trained, tiny_world, monkeypatch, bf16):
    from dataclasses import replace

    import tigerlib.methods.gill as G

    gill = trained[0]
    monkeypatch.setattr(G, "fast_bf16", lambda device: True)  # autocast runs (emulated) on any CPU
    before = {k: v.clone() for k, v in gill.model.visual_prefix.state_dict().items()}
    try:
        losses = train_image_input(gill, tiny_world, replace(TINY_GILL, caption_steps=2, bf16=bf16), 0)
        assert len(losses) == 2 and np.isfinite(losses).all()
        assert not torch.equal(before["weight"], gill.model.visual_prefix.weight)
        assert train_image_input(gill, tiny_world, replace(TINY_GILL, caption_steps=0), 0) == []
    finally:
        gill.model.visual_prefix.load_state_dict(before)  # the module-scoped model stays as trained
        gill.model.eval()


def test_the_image_input_starts_from_the_llms_embeddings_of_a_text(trained):
    gill = trained[0]
    prefix = gill.model.visual_prefix
    before = {k: v.clone() for k, v in prefix.state_dict().items()}
    try:
        ids = gill.llm.tokenizer("a red circle", add_special_tokens=False).input_ids
        start_from_text(gill, "a red circle")
        rows = prefix.bias.view(gill.config.visual_tokens, -1)
        table = gill.llm.model.get_input_embeddings().weight
        for v in range(gill.config.visual_tokens):  # the text's tokens in turn
            assert torch.equal(rows[v], table[ids[v % len(ids)]])
        assert torch.equal(prefix.weight, before["weight"])
        bias = prefix.bias.clone()
        start_from_text(gill, "")  # no text: left as it is
        assert torch.equal(prefix.bias, bias)
    finally:
        prefix.load_state_dict(before)


def test_a_model_for_other_widths_is_refused_naming_both(trained, deps):
    from tigerlib.methods.gill import GILLModule

    gill = trained[0]
    s = gill.shapes
    for shapes, words in (({**s, "out_width": s["out_width"] + 8}, "diffusion"), ({**s, "image_dim": s["image_dim"] + 8}, "dual encoder"),
                          ({**s, "llm_width": s["llm_width"] + 8}, "LLM")):
        module = GILLModule(TINY_GILL, shapes["llm_width"], shapes["image_dim"], shapes["queries"], shapes["out_width"])
        with pytest.raises(TigerError, match=words) as err:
            GILL(module, deps["text_llm"], deps["dual_encoder"], deps["diffusion"], TINY_GILL)
        assert "rebuild" in str(err.value)


def test_an_overlong_prompt_is_cut_with_a_warning(trained):
    gill = trained[0]
    long = " ".join(["a red circle on a black background"] * 60)
    with pytest.warns(UserWarning, match="cut to their last"):
        emb = gill.prompt_embeds([long, "a red circle"])
    assert emb.shape[0] == 2 and torch.isfinite(emb).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a prompt that fits is not cut and says nothing
        gill.prompt_embeds([long[-150:]])


def test_image_input_of_any_mode_and_size(trained, tiny_world):
    from PIL import Image

    gill = trained[0]
    rgb = tiny_world.gallery.images[0]
    grey, rgba = rgb.mean(-1).astype(np.uint8), np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], -1)
    for image in (grey, rgba, Image.fromarray(rgb).resize((48, 48)), rgb.astype(np.float32) / 255):
        assert len(gill.caption(image, max_new_tokens=2)) == 1
        assert isinstance(gill.answer([image, "describe"], max_new_tokens=2), str)
    with pytest.raises(TigerError, match="expected HxWx3"):
        gill.caption(np.zeros(7, np.uint8))


def test_the_study_has_the_issues_json_shape(trained, tiny_world):
    import json

    from tigerlib.evaluation.gill_eval import evaluate_gill, findings
    from tigerlib.models.judge import TINY_JUDGE, AttributeJudge

    gill = trained[0]
    result = evaluate_gill(gill, tiny_world, AttributeJudge.create(TINY_JUDGE), n_prompts=4, n_queries=3, manifest={"train_seconds": 1.5})
    assert set(result["generation"]) == {"common", "creative", "heldout_language", "paraphrase"}
    for r in result["generation"].values():
        for path in ("mapped", "direct"):
            assert {"judge_all", "judge_per_attribute", "clip_t"} <= set(r[path])
    for kind in ("knowledge", "common"):
        assert {m: set(v) >= {"r1", "r5", "r10"} for m, v in result["retrieval"][kind].items()} == {"gill": True, "dense": True}
    assert {"shape_and_color", "shape", "color"} <= set(result["captioning"]) and result["train_seconds"] == 1.5
    json.dumps(result)
    assert len(findings(result)) == 8


def test_only_the_new_parameters_train_and_the_llm_stays_bit_identical(trained, deps):
    gill, stats, before = trained
    after = deps["text_llm"].model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(p.requires_grad for p in deps["text_llm"].model.parameters())
    assert stats["trained_parameters"] == sum(p.numel() for p in gill.model.parameters())
    assert set(stats["final_loss"]) == {"token", "l2", "nce", "caption"}


def test_outputs_have_the_diffusion_models_shapes(trained, deps):
    gill, _, _ = trained
    cond = deps["diffusion"].encode_prompt(["x"])
    emb = gill.prompt_embeds(["a red circle", "the flag of nowhere"])
    assert emb.shape == (2, *cond.shape[1:])
    imgs = gill.generate(["a red circle"], seed=1, progress=False)
    assert imgs.shape == (1, 32, 32, 3) and imgs.dtype == np.uint8
    assert np.array_equal(imgs, gill.generate(["a red circle"], seed=1, progress=False))
    lp = gill.img_token_logprob(["a red circle", ""])
    assert lp.shape == (2,) and bool((lp <= 0).all())
    assert gill.prompt_embeds([None, "", "红色的圆 🙂"]).shape == (3, *cond.shape[1:])  # odd prompts still give conditioning


def test_the_llm_states_are_standardized_on_training_prompts(trained, tiny_world):
    gill, _, _ = trained
    m = gill.model
    assert not torch.equal(m.state_mean, torch.zeros_like(m.state_mean)) and bool((m.state_std > 0).all())
    states = gill.img_states([c[0] for c in tiny_world.train.captions[:64]])
    z = m.standardize(states)
    assert z.mean(0).abs().mean() < 0.5 < z.std(0).mean() < 2.0  # near zero mean, unit spread per position and feature
    assert {"state_mean", "state_std"} <= set(m.state_dict())  # saved with the model
    one = copy.deepcopy(m)
    one.fit_standardization(states[:1])  # one state has no spread: the fit leaves the statistics as they were
    assert torch.equal(one.state_mean, m.state_mean) and torch.equal(one.state_std, m.state_std)


def test_batched_states_equal_one_by_one(trained):
    gill, _, _ = trained
    prompts = ["a red circle on a black background", "square", "the flag of nowhere at all today"]
    batched = gill.img_states(prompts)
    single = torch.cat([gill.img_states([p]) for p in prompts])
    assert torch.allclose(batched, single, atol=1e-5)
    repeated = gill.img_states([prompts[1], prompts[0], prompts[1]])  # repeats run once, rows stay in order
    assert repeated.shape[0] == 3 and torch.allclose(repeated, single[[1, 0, 1]], atol=1e-5)


def test_img_states_through_the_prompts_kv_cache_equal_one_pass(trained):
    """The prompt runs into a KV cache and the [IMG] tokens on it: the states of one pass over both."""
    gill, _, _ = trained
    prompts = ["a red circle on a black background", "square"]
    embeds, mask = gill._with_img_tokens(prompts)
    with torch.no_grad():
        hidden = gill.llm.model.model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        states, last = gill._img_states(prompts)
    T = gill.config.img_tokens
    assert torch.allclose(states, hidden[:, -T:], atol=1e-5) and torch.allclose(last, hidden[:, -T - 1], atol=1e-5)


def test_the_bf16_copy_computes_what_autocast_does(deps):
    model = deps["text_llm"].model
    half = bf16_linear_copy(model)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(model(input_ids=ids).logits, half(input_ids=ids).logits)
    assert half.get_output_embeddings().weight.dtype == torch.bfloat16 and model.get_output_embeddings().weight.dtype == torch.float32
    assert half.get_input_embeddings().weight.dtype == torch.float32  # untied from the output layer, not rounded
    assert bf16_linear_copy(half.to(torch.bfloat16)) is half  # a half-precision model is not copied again


def test_retriever_interface_and_captions(trained, tiny_world):
    gill, _, _ = trained
    r = gill.retriever(tiny_world.gallery.images)
    assert isinstance(r, GILLRetriever) and len(r) == len(tiny_world.gallery)
    ranking = r.retrieve("a red circle", k=5)
    assert len(ranking.indices) == 5 and bool((ranking.scores[:-1] >= ranking.scores[1:]).all())
    with pytest.raises(TigerError, match="empty"):
        gill.retriever(tiny_world.gallery.images[:0])
    caps = gill.caption(tiny_world.gallery.images[:3], max_new_tokens=4)
    assert len(caps) == 3 and all(isinstance(c, str) for c in caps)
    assert isinstance(gill.answer([tiny_world.gallery.images[0], "describe"], max_new_tokens=3), str)
    with pytest.raises(TigerError, match="at least one"):
        gill.answer([])


def test_training_pairs_share_and_info_nce():
    class W:
        class train:
            attributes = {"entity": np.array([-1] * 90 + [0] * 10)}
            captions = [[f"c{i}a", f"c{i}b"] for i in range(100)]

    rows, caps = training_pairs(W, 400, 0.5, 0)
    assert 0.4 < float((rows >= 90).mean()) < 0.6 and all(c.startswith(f"c{r}") for r, c in zip(rows, caps))
    with pytest.raises(TigerError, match="share"):
        training_pairs(W, 4, 1.5, 0)
    v = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    assert float(info_nce(v, v, torch.tensor(3.0))) < float(info_nce(v, v.roll(1, 0), torch.tensor(3.0)))


def test_missing_dependencies_name_the_fix(tiny_world):
    with pytest.raises(TigerError, match="tiger zoo build"):
        train_gill(tiny_world, TINY_GILL, 0, "cpu", {})


def test_saved_weights_load_back_through_the_zoo_entry(trained, deps, tmp_path):
    from safetensors.torch import load_file, save_file

    from tigerlib.zoo import ZOO

    gill, _, _ = trained
    save_file({k: v.detach().clone().contiguous() for k, v in gill.model.state_dict().items()}, str(tmp_path / "model.safetensors"))
    gill.save_files(tmp_path)
    again = ZOO["gill"].create(TINY_GILL, "cpu", tmp_path, deps)
    again.model.load_state_dict(load_file(tmp_path / "model.safetensors"))
    again.model.eval()
    assert torch.equal(again.prompt_embeds(["a red circle"]), gill.prompt_embeds(["a red circle"]))
    assert "text_llm" in ZOO["gill"].needs and ZOO["gill"].runs_with_needs


def test_gill_is_part_of_the_default_zoo_and_has_floors(monkeypatch):
    from dataclasses import replace

    from tigerlib.zoo import ZOO, below_floors, build_command

    assert not ZOO["gill"].optional and build_command(ZOO["gill"]) == "tiger zoo build"
    status = {"models": {n: {"built": True, "metrics": {}} for n in ZOO}}
    status["models"]["gill"]["metrics"] = {"common_judge_ratio": 0.1}
    assert any(m.startswith("gill common_judge_ratio=0.1") for m in below_floors(status))
    monkeypatch.setitem(ZOO, "gill", replace(ZOO["gill"], optional=True))  # an optional model's floors count once built
    status["models"]["gill"] = {"built": False}
    assert not any(m.startswith("gill ") for m in below_floors(status))
    assert build_command(ZOO["gill"]) == "tiger zoo build --only gill"


def test_out_of_world_prompts_use_words_no_training_caption_has(tiny_world):
    from tigerlib.data.out_of_world import SYNONYMS, out_of_world_prompts
    from tigerlib.models.vocabulary import vocabulary_of, words

    seen = vocabulary_of(c for caps in tiny_world.train.captions for c in caps)
    for table in SYNONYMS.values():
        for phrases in table.values():
            assert all(set(words(p)) - seen for p in phrases), phrases  # each synonym brings a word the world never uses
    prompts, truth = out_of_world_prompts(tiny_world, n=20)
    assert len(prompts) == len(truth["shape"]) == min(20, len(tiny_world.val))
    key = np.stack([truth[k] for k in ("shape", "color", "size", "pos", "bg")], 1)
    assert len(np.unique(key, axis=0)) == len(key)  # distinct scenes
    assert out_of_world_prompts(tiny_world, n=20)[0] == prompts  # seeded


def test_gill_answers_through_the_unified_api(trained, tiny_world, lmm, vq):
    """The GILL backend of the retrieve-or-generate system, with a likelihood rule and with the
    decision classifier trained on [IMG0] states of labelled prompts."""
    from tigerlib.methods.unified import ClassifierRule, LikelihoodRule, answer, gill_backend, train_decision_classifier

    gill, gallery = trained[0], tiny_world.gallery.images
    backend = gill_backend(gill, gallery)
    prompt = tiny_world.queries.subset("common").texts[0]
    a = answer(prompt, backend, LikelihoodRule(lmm, vq, "reverse"))
    assert a.backend == "gill" and a.retrieved.index == gill.retriever(gallery).retrieve(prompt, k=1).top1
    assert a.generated.image.shape == gallery[0].shape and a.decision in ("retrieve", "generate")
    k, c = tiny_world.queries.subset("knowledge").texts, tiny_world.queries.subset("creative").texts
    clf, stats = train_decision_classifier(gill, list(k) + list(c), ["retrieve"] * len(k) + ["generate"] * len(c))
    assert stats["n"] == len(k) + len(c) and stats["train_accuracy"] >= 0.5
    b = answer(prompt, backend, ClassifierRule(gill, clf))
    assert b.rule == "classifier" and abs(sum(b.scores.values()) - 1) < 1e-5
