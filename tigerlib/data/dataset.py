"""The common dataset interface: images with several captions each, and retrieval queries.

The mini world and real captioned datasets (Flickr30K, MS-COCO in the Karpathy JSON format) are
served through the same two classes, so every method and evaluation runs on either.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import TigerError


def as_uint8_images(images, size: int | None = None) -> np.ndarray:
    """Convert images (PIL, arrays HxWx3 / HxW / HxWx4, float in [0,1] or uint8) to uint8 [n,S,S,3].

    Wrong modes are converted (grey -> RGB, RGBA -> RGB); wrong sizes are resized when ``size``
    is given and rejected otherwise; anything else gets one clear error."""
    from PIL import Image

    if isinstance(images, np.ndarray) and images.ndim == 4 and images.dtype == np.uint8 and images.shape[-1] == 3:
        if size is None or images.shape[1:3] == (size, size):
            return images
    if isinstance(images, np.ndarray) and images.ndim == 4 and images.shape[1] in (1, 3, 4) and images.shape[-1] not in (1, 3, 4):
        raise TigerError(f"images have shape {images.shape} (channels first?): pass channels-last [n, H, W, 3]")
    if isinstance(images, np.ndarray) and images.ndim == 3 and images.shape[-1] not in (1, 3, 4):
        images = list(images)  # a batch of grey images [n, H, W]
    elif isinstance(images, (Image.Image, np.ndarray)) and not (isinstance(images, np.ndarray) and images.ndim == 4):
        images = [images]
    out = []
    for k, im in enumerate(images):
        if isinstance(im, Image.Image):
            im = np.asarray(im.convert("RGB"))
        im = np.asarray(im)
        if im.ndim == 2:
            im = np.repeat(im[..., None], 3, axis=-1)
        if im.ndim != 3 or im.shape[-1] not in (1, 3, 4):
            raise TigerError(f"image {k} has shape {im.shape}: expected HxWx3 (RGB), HxW (grey) or HxWx4 (RGBA)")
        if im.shape[-1] == 1:
            im = np.repeat(im, 3, axis=-1)
        im = im[..., :3]
        if im.dtype != np.uint8:
            if np.issubdtype(im.dtype, np.floating):
                if np.nanmin(im) < -1e-3 or np.nanmax(im) > 1 + 1e-3:
                    raise TigerError(f"image {k} is float with values outside [0, 1]: pass uint8 0..255 or floats in [0, 1]")
                im = np.rint(np.nan_to_num(im) * 255)
            elif not np.issubdtype(im.dtype, np.integer) or im.min() < 0 or im.max() > 255:
                raise TigerError(f"image {k} has dtype {im.dtype} outside 0..255: pass uint8 RGB images")
            im = im.astype(np.uint8)
        if size is not None and im.shape[:2] != (size, size):
            im = np.asarray(Image.fromarray(im).resize((size, size), Image.BICUBIC))
        out.append(im)
    if not out:
        raise TigerError("no images given: pass at least one image")
    shapes = {o.shape for o in out}
    if len(shapes) > 1:
        raise TigerError(f"images have different sizes {sorted(shapes)}: pass size= to resize them to one size")
    return np.stack(out)


class FileImages:
    """Images read lazily from files and resized to ``size`` x ``size`` (for real datasets)."""

    def __init__(self, paths: Sequence[Path], size: int):
        self.paths, self.size = list(paths), size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, idx) -> np.ndarray:
        from PIL import Image

        if isinstance(idx, (int, np.integer)):
            return self[[idx]][0]
        idx = np.arange(len(self))[idx] if isinstance(idx, slice) else np.asarray(idx)
        ims = []
        for i in idx.tolist():
            try:
                with Image.open(self.paths[i]) as im:
                    ims.append(im.convert("RGB").resize((self.size, self.size), Image.BICUBIC))
            except (OSError, ValueError) as e:
                raise TigerError(f"cannot read image {self.paths[i]} ({e}): check the image root of the dataset") from None
        return as_uint8_images(ims)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), self.size, self.size, 3)


def take(images: np.ndarray | FileImages, idx: np.ndarray) -> np.ndarray | FileImages:
    """Index images without loading lazy ones."""
    if isinstance(images, FileImages):
        return FileImages([images.paths[i] for i in idx], images.size)
    return images[idx]


@dataclass
class CaptionedImages:
    """Images (uint8 [n, S, S, 3], in memory or lazily from files) with a list of captions each.

    ``attributes`` holds the mini world's ground truth (``kind``, ``entity``, ``shape``, ``color``,
    ``size``, ``pos``, ``bg``; -1 where not applicable); real datasets have none."""

    name: str
    images: np.ndarray | FileImages
    captions: list[list[str]]
    attributes: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        if len(self.images) != len(self.captions):
            raise TigerError(f"{self.name}: {len(self.images)} images but {len(self.captions)} caption lists")

    def __len__(self) -> int:
        return len(self.captions)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    def load(self, idx=None) -> np.ndarray:
        """uint8 images for the given indices (all if None)."""
        if idx is None:
            idx = np.arange(len(self))
        return np.asarray(self.images[idx])

    def pil(self, i: int):
        from PIL import Image

        return Image.fromarray(self.load([i])[0])

    def first_captions(self) -> list[str]:
        return [c[0] for c in self.captions]

    def subset(self, idx) -> "CaptionedImages":
        idx = np.asarray(idx, dtype=np.int64)
        return CaptionedImages(
            self.name, take(self.images, idx), [self.captions[i] for i in idx], {k: v[idx] for k, v in self.attributes.items()}
        )


QUERY_KINDS = ("knowledge", "common", "creative")
GOLD_LABEL = {"knowledge": "retrieve", "creative": "generate", "common": "either"}


@dataclass
class Queries:
    """Text prompts with their ground truth.

    ``kind``: knowledge / common / creative. ``label``: the gold decision (``retrieve`` for
    knowledge, ``generate`` for creative, ``either`` for common scenes that the gallery holds and a
    generator can also draw). ``gallery_index``: the ground-truth gallery image, -1 when the gallery
    has none. ``hits``: every gallery image that answers the prompt (same entity, or a scene with
    exactly the prompt's attributes). ``images``: a ground-truth image for every prompt.
    ``heldout_texts``: the same prompts phrased as no training caption is (``tigerlib.data.language``;
    the mini world only, None elsewhere): :meth:`in_heldout_language` swaps them in."""

    texts: list[str]
    kind: np.ndarray
    label: np.ndarray
    gallery_index: np.ndarray
    hits: list[np.ndarray]
    images: np.ndarray | FileImages
    attributes: dict[str, np.ndarray] = field(default_factory=dict)
    heldout_texts: list[str] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def in_heldout_language(self) -> "Queries":
        """The same prompts and ground truth, phrased as no training caption is (mini world)."""
        if self.heldout_texts is None:
            raise TigerError("these queries have no held-out phrasings (only the mini world writes them)")
        return replace(self, texts=list(self.heldout_texts), heldout_texts=None)

    def subset(self, which) -> "Queries":
        """Queries of one kind (``"knowledge"``) or at the given indices."""
        if isinstance(which, str):
            if which not in QUERY_KINDS:
                raise TigerError(f"unknown query kind {which!r}: use one of {QUERY_KINDS}")
            which = np.flatnonzero(self.kind == which)
        idx = np.asarray(which, dtype=np.int64)
        return Queries(
            [self.texts[i] for i in idx],
            self.kind[idx],
            self.label[idx],
            self.gallery_index[idx],
            [self.hits[i] for i in idx],
            take(self.images, idx),
            {k: v[idx] for k, v in self.attributes.items()},
            None if self.heldout_texts is None else [self.heldout_texts[i] for i in idx],
        )


def load_karpathy(json_path: str | Path, image_root: str | Path, split: str = "test", image_size: int = 224) -> tuple[CaptionedImages, Queries]:
    """Load a split of a Karpathy-format captions file (``dataset_flickr30k.json`` /
    ``dataset_coco.json``) as a gallery plus text queries (every caption is a query; its hit is its
    own image), the standard text-to-image retrieval protocol."""
    json_path, image_root = Path(json_path), Path(image_root)
    if not json_path.exists():
        raise TigerError(f"captions file {json_path} not found: run data_scripts/ to download it, or pass its path")
    try:
        data = json.loads(json_path.read_text())
        entries = [e for e in data["images"] if e.get("split") == split]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise TigerError(f"{json_path} is not a Karpathy-format captions file ({e}): expected {{'images': [...]}}") from None
    if not entries:
        splits = sorted({e.get("split") for e in data["images"]})
        raise TigerError(f"split {split!r} is empty in {json_path}: use one of {splits}")
    paths = [image_root / e.get("filepath", "") / e["filename"] for e in entries]
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise TigerError(f"{len(missing)} images missing under {image_root} (first: {missing[0]}): check image_root")
    captions = [[s["raw"].strip() for s in e["sentences"]] for e in entries]
    gallery = CaptionedImages(f"{json_path.stem}:{split}", FileImages(paths, image_size), captions)
    texts, owners = zip(*[(c, i) for i, caps in enumerate(captions) for c in caps])
    owners = np.asarray(owners)
    queries = Queries(
        list(texts),
        np.full(len(texts), "common", dtype="<U9"),
        np.full(len(texts), "retrieve", dtype="<U8"),
        owners,
        [np.array([o]) for o in owners],
        FileImages([paths[o] for o in owners], image_size),  # lazily loaded
    )
    return gallery, queries
