import json
import subprocess
import sys

import pytest

from tigerlib.config import get_settings
from tigerlib.errors import TigerError


def test_defaults(home):
    s = get_settings()
    assert s.profile.name == "mini" and s.seed == 0 and s.device.type in ("cpu", "cuda")
    assert s.home == home.resolve() and s.data_dir.parent == s.home


def test_unknown_profile(home):
    with pytest.raises(TigerError, match="unknown profile"):
        get_settings(profile="huge")


def test_bad_seed(home):
    with pytest.raises(TigerError, match="seed"):
        get_settings(seed="abc")


def test_full_profile_without_gpu_still_works(home, capsys):
    import torch

    s = get_settings(profile="full")
    if not torch.cuda.is_available():
        assert s.device.type == "cpu"
        assert "expects a GPU" in capsys.readouterr().err


def test_cli_errors_are_one_line(home):
    r = subprocess.run([sys.executable, "-m", "tigerlib", "--profile", "huge", "info"], capture_output=True, text=True)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "TIGER_PROFILE" in lines[0]


def test_bench_world_json(home):
    r = subprocess.run([sys.executable, "-m", "tigerlib", "bench", "world", "--json", "--n", "500"], capture_output=True, text=True, check=True)
    out = json.loads(r.stdout)
    assert out["images_per_second"] > 0 and out["image_size"] == 32 and out["n"] == 500


def test_empty_model_caches_hide_what_the_machine_downloaded(tmp_path, monkeypatch, request):
    """The offline fail-fast tests use ``empty_model_caches``: a checkpoint in the machine's cache stays unseen."""
    import huggingface_hub
    import huggingface_hub.constants as hf
    import torch

    machine = tmp_path / "machine_hub"  # a checkpoint as `huggingface-cli download org/model` leaves it
    snap = machine / "models--org--model" / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (machine / "models--org--model" / "refs").mkdir()
    (machine / "models--org--model" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(machine))
    assert huggingface_hub.try_to_load_from_cache("org/model", "config.json") == str(snap / "config.json")

    root = request.getfixturevalue("empty_model_caches")
    assert huggingface_hub.try_to_load_from_cache("org/model", "config.json") is None
    assert hf.HF_HUB_OFFLINE and str(root) in hf.HF_HUB_CACHE and str(root) in torch.hub.get_dir()
