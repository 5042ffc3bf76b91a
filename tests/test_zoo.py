import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from tigerlib.config import get_settings
from tigerlib.errors import TigerError
from tigerlib.models.diffusion import TINY_DIFFUSION
from tigerlib.models.dual_encoder import TINY_DUAL_ENCODER, DualEncoder
from tigerlib.models.judge import TINY_JUDGE
from tigerlib.models.lmm import TINY_LMM
from tigerlib.models.visual_tokenizer import TINY_VQ, VQTokenizer
from tigerlib.zoo import FLOORS, below_floors, build_zoo, load_zoo_model, model_dir, zoo_status

TINY = {"dual_encoder": TINY_DUAL_ENCODER, "visual_tokenizer": TINY_VQ, "judge": TINY_JUDGE, "lmm": TINY_LMM, "diffusion": TINY_DIFFUSION}
ONLY = list(TINY)  # the text LLM is imported, not trained: tests/test_text_llm.py covers it


@pytest.fixture
def settings(home):
    return get_settings(device="cpu")


def test_build_status_and_noop(settings, tiny_world, capsys):
    status = build_zoo(settings, only=ONLY, configs=TINY, world=tiny_world)
    de, vq = status["models"]["dual_encoder"], status["models"]["visual_tokenizer"]
    assert de["built"] and vq["built"] and de["role"] == "dual_encoder" and vq["role"] == "visual_tokenizer"
    for key in ("t2i_r1", "t2i_r5", "t2i_r10", "own_image_r1", "entity_r1", "random_r1"):
        assert 0.0 <= de["metrics"][key] <= 1.0
    for key in ("recon_r1", "codebook_usage", "unique_share"):
        assert 0.0 <= vq["metrics"][key] <= 1.0
    assert vq["metrics"]["tokens_per_image"] == 64 and vq["metrics"]["codebook_size"] == TINY_VQ.codebook_size
    assert de["train_seconds"] > 0
    judge = status["models"]["judge"]
    assert judge["built"] and judge["role"] == "evaluator"
    assert set(judge["metrics"]["attribute_accuracy"]) == {"all", "shape", "color", "size", "pos", "bg"} and "entity_accuracy" in judge["metrics"]
    assert all(isinstance(line, str) for line in below_floors(status))  # tiny models: far below, listed not raised
    capsys.readouterr()
    build_zoo(settings, only=ONLY, configs=TINY, world=tiny_world)
    assert capsys.readouterr().err.count("nothing to do") == len(TINY)


def test_training_is_deterministic(settings, tiny_world, tmp_path):
    first = build_zoo(settings, only=ONLY, configs=TINY, world=tiny_world)
    other = get_settings(home=tmp_path / "other", device="cpu")
    second = build_zoo(other, only=ONLY, configs=TINY, world=tiny_world)
    for name in ("dual_encoder", "visual_tokenizer"):
        assert first["models"][name]["metrics"] == second["models"][name]["metrics"]
    a = (model_dir(settings, "dual_encoder") / "model.safetensors").read_bytes()
    b = (model_dir(other, "dual_encoder") / "model.safetensors").read_bytes()
    assert a == b


def test_corrupt_checkpoint_is_detected_and_rebuilt(settings, tiny_world):
    build_zoo(settings, only=ONLY, configs=TINY, world=tiny_world)
    weights = model_dir(settings, "visual_tokenizer") / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-50])
    status = zoo_status(settings)["models"]["visual_tokenizer"]
    assert not status["built"] and "damaged" in status["problem"]
    with pytest.raises(TigerError, match="tiger zoo build"):
        load_zoo_model(settings, "visual_tokenizer")
    de_before = (model_dir(settings, "dual_encoder") / "model.safetensors").stat().st_mtime_ns
    build_zoo(settings, only=ONLY, configs=TINY, world=tiny_world)
    assert zoo_status(settings)["models"]["visual_tokenizer"]["built"]
    assert (model_dir(settings, "dual_encoder") / "model.safetensors").stat().st_mtime_ns == de_before  # kept


def test_loaded_models_encode_and_decode(settings, tiny_world):
    build_zoo(settings, only=ONLY, configs=TINY, world=tiny_world)
    tok = load_zoo_model(settings, "visual_tokenizer")
    codes = tok.encode(tiny_world.gallery.images[:5])
    assert codes.shape == (5, tok.tokens_per_image) and codes.dtype == torch.long
    assert int(codes.max()) < tok.codebook_size
    images = tok.decode(codes)
    assert images.shape == (5, 32, 32, 3) and images.dtype == np.uint8
    enc = load_zoo_model(settings, "dual_encoder")
    t = enc.encode_text(["a red circle", "the flag of nowhere"])
    i = enc.encode_images(tiny_world.gallery.images[:3])
    assert t.shape == (2, TINY_DUAL_ENCODER.embed_dim) and i.shape == (3, TINY_DUAL_ENCODER.embed_dim)
    assert torch.allclose(t.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_bad_codes_and_images():
    tok = VQTokenizer.create(TINY_VQ)
    with pytest.raises(TigerError, match="shape"):
        tok.decode(torch.zeros(2, 10, dtype=torch.long))
    with pytest.raises(TigerError, match="out of range"):
        tok.decode(torch.full((1, 64), TINY_VQ.codebook_size))
    with pytest.raises(TigerError, match="integers"):
        tok.decode(torch.zeros(1, 64))
    # other sizes, grey and float images are converted
    assert tok.encode(np.zeros((2, 48, 48), np.uint8)).shape == (2, 64)
    assert tok.encode(np.ones((1, 32, 32, 3), np.float32)).shape == (1, 64)
    with pytest.raises(TigerError):
        tok.encode(np.zeros((1, 32, 32, 7), np.uint8))
    enc = DualEncoder.create(TINY_DUAL_ENCODER)
    assert enc.encode_images(np.zeros((1, 64, 64, 3), np.uint8)).shape == (1, TINY_DUAL_ENCODER.embed_dim)


def test_full_profile_classes_with_random_weights():
    """The full path's classes, built from configs offline: open_clip ViT-B-32 and Janus' VQ."""
    from transformers import JanusVQVAE, JanusVQVAEConfig

    from tigerlib.models.visual_tokenizer import JanusTokenizer

    enc = DualEncoder.from_pretrained("ViT-B-32/openai", pretrained=False)
    assert enc.image_size == 224
    assert enc.encode_images(np.zeros((1, 32, 32, 3), np.uint8)).shape == (1, 512)
    assert enc.encode_text(["a photo of a dog"]).shape == (1, 512)
    cfg = JanusVQVAEConfig(embed_dim=8, num_embeddings=64, base_channels=32, channel_multiplier=[1, 1, 2], num_res_blocks=1, num_patches=8, latent_channels=32, projection_dim=16, num_hidden_layers=1, image_token_embed_dim=16)
    tok = JanusTokenizer(JanusVQVAE(cfg))
    assert tok.image_size == 32 and tok.tokens_per_image == 64
    codes = tok.encode(np.zeros((2, 48, 48, 3), np.uint8))
    assert codes.shape == (2, tok.tokens_per_image) and int(codes.max()) < 64
    assert tok.decode(codes).shape == (2, 32, 32, 3)


def test_full_profile_name_offline_fails_fast(empty_model_caches):
    with pytest.raises(TigerError, match="download"):
        DualEncoder.from_pretrained("ViT-B-32/openai")


def test_zoo_status_json_cli(home):
    r = subprocess.run([sys.executable, "-m", "tigerlib", "zoo", "status", "--json"], capture_output=True, text=True, check=True)
    status = json.loads(r.stdout)
    assert set(status["models"]) >= {"dual_encoder", "visual_tokenizer"}
    assert all(not m["built"] for m in status["models"].values())


def test_dependents_are_rebuilt_when_a_dependency_changes(settings, tiny_world, capsys):
    from dataclasses import replace

    build_zoo(settings, only=ONLY, configs=TINY, world=tiny_world)
    capsys.readouterr()
    other_vq = replace(TINY_VQ, steps=TINY_VQ.steps + 1)
    build_zoo(settings, only=ONLY, configs={**TINY, "visual_tokenizer": other_vq}, world=tiny_world)
    err = capsys.readouterr().err
    assert "dual_encoder: already built" in err
    assert "lmm: trained against other versions" in err
    assert "diffusion: trained against other versions" in err
    build_zoo(settings, only=ONLY, configs={**TINY, "visual_tokenizer": other_vq}, world=tiny_world)
    assert capsys.readouterr().err.count("nothing to do") == len(TINY)


def test_diffusion_in_the_zoo(settings, tiny_world):
    from tigerlib.zoo import load_text_to_image

    status = build_zoo(settings, only=["diffusion"], configs=TINY, world=tiny_world)["models"]["diffusion"]
    assert status["built"] and status["role"] == "diffusion"
    for key in ("common_r1", "creative_r1", "knowledge_r1"):
        assert 0.0 <= status["metrics"][key] <= 1.0
    t2i = load_text_to_image(settings)  # with the text encoder and decoder it was trained with
    a = t2i(prompt=["a red circle"], seed=0, progress=False).images
    b = load_text_to_image(settings)(prompt=["a red circle"], seed=0, progress=False).images
    assert a.shape == (1, 32, 32, 3) and np.array_equal(a, b)


def test_floors_fail_when_a_metric_falls():
    metrics = {name: {} for name in FLOORS}
    for name, floors in FLOORS.items():
        for path, floor in floors.items():
            node = metrics[name]
            *parents, leaf = path.split(".")
            for key in parents:
                node = node.setdefault(key, {})
            node[leaf] = floor
    status = {"models": {name: {"metrics": m} for name, m in metrics.items()}}
    assert below_floors(status) == []
    status["models"]["judge"]["metrics"]["attribute_accuracy"]["shape"] = 0.5
    del status["models"]["lmm"]["metrics"]["entity_reverse_r1"]
    assert below_floors(status) == ["judge attribute_accuracy.shape=0.5 < 0.98", "lmm entity_reverse_r1=None < 0.9"]


KILLED_BUILD = """
import sys, time
from dataclasses import replace
import tigerlib.zoo as zoo
from tigerlib.config import get_settings
from tigerlib.data import WorldConfig, build_world
from tests.conftest import TINY_WORLD
from tests.test_zoo import TINY

world = build_world(sys.argv[1], WorldConfig(**TINY_WORLD))
real = zoo.atomic_write_json

def hang_in_the_third_save(path, data):
    if ".visual_tokenizer." in str(path):  # its weights are written in the temporary folder: die there
        open(sys.argv[2], "w").close()
        time.sleep(600)
    real(path, data)

zoo.atomic_write_json = hang_in_the_third_save
zoo.build_zoo(get_settings(device="cpu"), only=["judge", "dual_encoder", "visual_tokenizer"], configs=TINY, world=world)
"""


def test_a_killed_build_keeps_finished_models_and_resumes(settings, tmp_path, capsys):
    """SIGKILL while the third model is being saved (its weights already in the temporary folder):
    the first two stay built and are not retrained, the half-written third is never accepted, and
    the next build removes it and trains only what is missing."""
    import os
    import signal
    import time
    from pathlib import Path

    from tigerlib.data import WorldConfig, load_world

    from .conftest import TINY_WORLD

    marker = tmp_path / "training-done"
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-c", KILLED_BUILD, str(tmp_path / "data"), str(marker)], cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    deadline = time.time() + 240
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert marker.exists(), f"the build did not reach the third model (exit code {proc.poll()})"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = list(model_dir(settings, "visual_tokenizer").parent.glob(".visual_tokenizer.*.partial"))
    assert partial and (partial[0] / "model.safetensors").exists()  # killed mid-save
    status = zoo_status(settings)["models"]
    assert status["judge"]["built"] and status["dual_encoder"]["built"] and not status["visual_tokenizer"]["built"]
    with pytest.raises(TigerError, match="zoo build"):
        load_zoo_model(settings, "visual_tokenizer")
    before = {n: (model_dir(settings, n) / "manifest.json").read_bytes() for n in ("judge", "dual_encoder")}
    capsys.readouterr()
    build_zoo(settings, only=["judge", "dual_encoder", "visual_tokenizer"], configs=TINY, world=load_world(tmp_path / "data", WorldConfig(**TINY_WORLD)))
    err = capsys.readouterr().err
    assert "judge: already built" in err and "dual_encoder: already built" in err and "visual_tokenizer: training" in err
    assert before == {n: (model_dir(settings, n) / "manifest.json").read_bytes() for n in before}
    assert zoo_status(settings)["models"]["visual_tokenizer"]["built"]
    assert not list(model_dir(settings, "visual_tokenizer").parent.glob(".*.partial"))


def test_an_interrupted_save_leaves_no_checkpoint(settings, tiny_world, monkeypatch):
    """Ctrl-C while the checkpoint is being written: the weights file is on disk in the temporary
    folder, but no checkpoint appears and the models built before it are kept."""
    import tigerlib.zoo as zoo

    build_zoo(settings, only=["judge"], configs=TINY, world=tiny_world)

    def interrupted(path, data):
        raise KeyboardInterrupt

    monkeypatch.setattr(zoo, "atomic_write_json", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_zoo(settings, only=["dual_encoder"], configs=TINY, world=tiny_world)
    monkeypatch.undo()
    status = zoo_status(settings)["models"]
    assert status["judge"]["built"] and not status["dual_encoder"]["built"]
    assert not model_dir(settings, "dual_encoder").exists()


def test_recipe_hash_covers_the_training_code(settings, tiny_world, monkeypatch, capsys):
    """Editing a model's training module (here: its bytes as read) makes the built model stale."""
    from pathlib import Path

    import tigerlib.models.judge as judge_module
    import tigerlib.zoo as zoo

    build_zoo(settings, only=["judge"], configs=TINY, world=tiny_world)
    before, other = zoo.recipe_hash(zoo.ZOO["judge"]), zoo.recipe_hash(zoo.ZOO["dual_encoder"])
    source = Path(judge_module.__file__).resolve()
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: real(self) + (b"\n# edited\n" if self.resolve() == source else b""))
    assert zoo.recipe_hash(zoo.ZOO["judge"]) != before
    assert zoo.recipe_hash(zoo.ZOO["dual_encoder"]) == other  # another model's code: not stale
    capsys.readouterr()
    build_zoo(settings, only=["judge"], configs=TINY, world=tiny_world)
    assert "judge: its training code changed" in capsys.readouterr().err


def test_warmup_stable_decay_keeps_the_full_rate_until_the_decay():
    from tigerlib.models.training import warmup_stable_decay

    def rates(steps, warmup, decay):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        sched, out = warmup_stable_decay(opt, warmup, steps, decay), []
        for _ in range(steps):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    r = rates(600, 100, 150)
    assert r[0] == pytest.approx(0.01) and r[99] == r[300] == r[450] == 1.0 and r[525] == pytest.approx(0.5) and r[-1] < 0.001
    short = rates(4, 1, 150)  # decay longer than the run: still starts at the full rate
    assert short[0] == 1.0 and short[-1] < short[0]


def test_a_stale_checkpoint_is_refused_on_load(settings, tiny_world, monkeypatch):
    import tigerlib.zoo as zoo

    build_zoo(settings, only=["judge"], configs=TINY, world=tiny_world)
    load_zoo_model(settings, "judge")
    monkeypatch.setattr(zoo, "recipe_hash", lambda entry: "another")
    with pytest.raises(TigerError, match="training code changed.*tiger zoo build"):
        load_zoo_model(settings, "judge")


def test_only_builds_every_model_it_needs_transitively():
    from tigerlib.zoo import ZOO, with_needs

    assert with_needs(["gill"]) == ["judge", "dual_encoder", "visual_tokenizer", "diffusion", "text_llm", "gill"]  # the VQ: the diffusion model's
    assert {"judge", "dual_encoder", "visual_tokenizer", "lmm"} <= set(with_needs(["grace_atomic"]))
    for name in ZOO:  # build order: each model after everything it needs
        order = with_needs([name])
        assert order[-1] == name and all(order.index(d) < order.index(name) for d in ZOO[name].needs)
