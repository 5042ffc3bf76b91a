import os

# Tests never reach a model hub, and never touch the user's TIGER_HOME.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

# The quality tests need the built zoo: `make test-quality` runs them (TIGER_QUALITY=1).
collect_ignore = [] if os.environ.get("TIGER_QUALITY") == "1" else ["quality"]


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A private TIGER_HOME for one test."""
    monkeypatch.setenv("TIGER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TIGER_PROFILE", raising=False)
    monkeypatch.delenv("TIGER_SEED", raising=False)
    return tmp_path / "home"


TINY_WORLD = dict(n_train=300, n_val=50, n_gallery=60, n_entities=6, entity_variants=3, n_common_queries=10, n_creative_queries=10)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    from tigerlib.data import WorldConfig, build_world

    return build_world(tmp_path_factory.mktemp("world"), WorldConfig(**TINY_WORLD))


@pytest.fixture(scope="module")
def one_thread():
    """Small tensor ops on a shared 2-core machine: one intra-op thread avoids waiting for a core."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def vq():
    """A tiny random visual tokenizer (64 codes per image from a 32-code book)."""
    import torch

    from tigerlib.models.visual_tokenizer import TINY_VQ, VQTokenizer

    torch.manual_seed(0)
    return VQTokenizer.create(TINY_VQ)


@pytest.fixture(scope="session")
def lmm(tiny_world, vq):
    """A tiny trained LMM with its weights scaled up: near-uniform outputs would hide bugs."""
    import torch

    from tigerlib.models.lmm import TINY_LMM, train_lmm

    model, stats = train_lmm(tiny_world, TINY_LMM, seed=0, deps={"visual_tokenizer": vq})
    assert stats["train_seconds"] > 0 and stats["vocab_size"] == model.vocab_size
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.model.parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model


@pytest.fixture
def empty_model_caches(tmp_path, monkeypatch):
    """Offline, with every model cache (Hugging Face hub, torch hub, open_clip) an empty folder, so
    loading a checkpoint by name fails the same on every machine, whatever it has downloaded."""
    import huggingface_hub.constants as hf

    root = tmp_path / "empty_caches"
    hub = root / "huggingface" / "hub"
    env = {"HF_HOME": root / "huggingface", "HF_HUB_CACHE": hub, "HUGGINGFACE_HUB_CACHE": hub,
           "HF_ASSETS_CACHE": root / "huggingface" / "assets", "HF_XET_CACHE": root / "huggingface" / "xet",
           "TORCH_HOME": root / "torch", "XDG_CACHE_HOME": root, "HOME": root / "home"}
    for name, path in env.items():
        path.mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(name, str(path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads these once at import; its download functions look them up at call time
    for name in ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_ASSETS_CACHE", "HF_XET_CACHE"):
        monkeypatch.setattr(hf, name, str(env[name]), raising=False)
    monkeypatch.setattr(hf, "default_cache_path", str(hub), raising=False)
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(root)  # a name is never a local folder either
    return root
