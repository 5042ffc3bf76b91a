"""The scaling gallery's cache: a damaged file is rebuilt, never a crash."""
import numpy as np
import pytest

from tigerlib.storage import DamagedFileError, load_npz, save_npz


@pytest.fixture(scope="module")
def encoder():
    import torch

    from tigerlib.models.dual_encoder import TINY_DUAL_ENCODER, DualEncoder

    torch.manual_seed(0)
    return DualEncoder.create(TINY_DUAL_ENCODER)


def _damaged(path, how):
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "garbage": b"PK\x03\x04" + b"\x00garbage" * 50}[how])


@pytest.mark.parametrize("how", ["truncated", "empty", "garbage"])
def test_load_npz_damaged_file_raises_one_clear_error(tmp_path, how):
    path = tmp_path / "a.npz"
    save_npz(path, {"x": np.arange(1000)})
    _damaged(path, how)
    with pytest.raises(DamagedFileError, match="delete it and rebuild"):
        load_npz(path)
    with pytest.raises(FileNotFoundError):
        load_npz(tmp_path / "missing.npz")


@pytest.mark.parametrize("how", ["truncated", "empty", "garbage"])
def test_damaged_scaling_cache_is_rebuilt(tiny_world, vq, encoder, tmp_path, monkeypatch, one_thread, how):
    from tigerlib.evaluation import retrieval_benchmark

    monkeypatch.setattr(retrieval_benchmark, "CHUNK", 16)  # small batches of images: fast
    codes, emb = retrieval_benchmark.scaling_gallery(tiny_world, vq, encoder, 12, tmp_path)
    (path,) = tmp_path.glob("scaling-*-12.npz")
    _damaged(path, how)
    again, emb_again = retrieval_benchmark.scaling_gallery(tiny_world, vq, encoder, 12, tmp_path)
    assert np.array_equal(again.numpy(), codes.numpy()) and np.allclose(emb_again.numpy(), emb.numpy())
    assert load_npz(path)["codes"].shape[0] == 12  # rewritten intact
