import json

import numpy as np
import pytest
from PIL import Image

from tigerlib.data import as_uint8_images, load_karpathy
from tigerlib.errors import TigerError


@pytest.fixture
def karpathy(tmp_path):
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    entries = []
    rng = np.random.default_rng(0)
    for i, split in enumerate(["train", "test", "test", "val", "test"]):
        name = f"img{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (40 + i, 50, 3), dtype=np.uint8)).save(root / "sub" / name)
        entries.append({"filename": name, "filepath": "sub", "split": split, "imgid": i,
                        "sentences": [{"raw": f"caption {i} a", "tokens": []}, {"raw": f"caption {i} b ", "tokens": []}]})
    path = tmp_path / "dataset_flickr30k.json"
    path.write_text(json.dumps({"images": entries, "dataset": "flickr30k"}))
    return path, root


def test_karpathy_loader(karpathy):
    path, root = karpathy
    gallery, queries = load_karpathy(path, root, split="test", image_size=32)
    assert len(gallery) == 3 and gallery.captions[0] == ["caption 1 a", "caption 1 b"]
    assert gallery.load([0, 2]).shape == (2, 32, 32, 3)
    assert len(queries) == 6 and queries.gallery_index.tolist() == [0, 0, 1, 1, 2, 2]
    assert queries.subset([2]).texts == ["caption 2 a"]


def test_karpathy_bad_inputs(karpathy, tmp_path):
    path, root = karpathy
    with pytest.raises(TigerError, match="split"):
        load_karpathy(path, root, split="nope")
    with pytest.raises(TigerError, match="not found"):
        load_karpathy(tmp_path / "missing.json", root)
    with pytest.raises(TigerError, match="missing"):
        load_karpathy(path, tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(TigerError, match="Karpathy"):
        load_karpathy(bad, root)


def test_image_conversion():
    grey = np.zeros((8, 8), np.uint8)
    rgba = np.zeros((8, 8, 4), np.uint8)
    floats = np.ones((8, 8, 3), np.float32)
    out = as_uint8_images([grey, rgba, floats])
    assert out.shape == (3, 8, 8, 3) and out.dtype == np.uint8 and out[2].max() == 255
    assert as_uint8_images(Image.new("L", (10, 12)), size=8).shape == (1, 8, 8, 3)
    with pytest.raises(TigerError, match="outside"):
        as_uint8_images(np.full((8, 8, 3), 3.0))
    with pytest.raises(TigerError, match="different sizes"):
        as_uint8_images([np.zeros((8, 8, 3), np.uint8), np.zeros((9, 9, 3), np.uint8)])
    with pytest.raises(TigerError, match="shape"):
        as_uint8_images(np.zeros((2, 8, 8, 5), np.uint8))
    assert as_uint8_images(np.zeros((3, 8, 8), np.uint8)).shape == (3, 8, 8, 3)  # a batch of grey images
