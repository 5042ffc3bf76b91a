"""Build the mini world's fixed, versioned splits into the data root, and load them back.

Splits: ``train`` (common scenes without the creative pairs, plus photos of every entity), ``val``
(held-out common scenes for model quality checks), ``gallery`` (common scenes plus one image per
entity) and ``queries`` (knowledge, common and creative prompts with gold labels). A build is
idempotent: a second one finds the finished world, checks its hashes, and does nothing.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ..config import ensure_writable, info
from ..errors import TigerError
from ..storage import atomic_dir, atomic_write_json, files_manifest, load_npz, read_json, save_npz, verify_files
from . import world as W
from .dataset import GOLD_LABEL, CaptionedImages, Queries

ATTR_KEYS = ("kind", "entity") + W.ATTRIBUTES


def _common_attrs(attrs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    n = len(attrs["shape"])
    return {"kind": np.full(n, W.KIND_COMMON, np.int16), "entity": np.full(n, -1, np.int16), **attrs}


def _entity_attrs(idx: np.ndarray) -> dict[str, np.ndarray]:
    n = len(idx)
    out = {"kind": np.full(n, W.KIND_ENTITY, np.int16), "entity": idx.astype(np.int16)}
    out.update({k: np.full(n, -1, np.int16) for k in W.ATTRIBUTES})
    return out


def _concat(*parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in ATTR_KEYS}


class WorldGenerator:
    """The seeded generator behind a world: samples fresh scenes at any scale."""

    def __init__(self, config: W.WorldConfig):
        self.config = config.validate()
        self.held_out = W.creative_pairs(config.seed, config.n_creative_pairs)
        self.entities = W.make_entities(config.seed, config.n_entities, config.image_size)

    def common(self, n: int, rng: np.random.Generator, creative: str = "exclude", captions: int | None = None) -> CaptionedImages:
        attrs = W.sample_attributes(rng, n, self.held_out, creative)
        images = W.render_scenes(attrs, self.config.image_size, rng)
        k = self.config.captions_per_image if captions is None else captions
        caps = W.scene_captions(attrs, rng, k) if k else [[] for _ in range(n)]
        return CaptionedImages(f"common[{creative}]", images, caps, _common_attrs(attrs))

    def entity_photos(self, idx: np.ndarray, rng: np.random.Generator | None) -> CaptionedImages:
        idx = np.asarray(idx, dtype=np.int64)
        images = W.render_entities(self.entities, idx, rng)
        k = self.config.captions_per_image
        n_templates = len(W.ENTITY_TEMPLATES["flag"])
        caps = [self.entities.captions(np.full(n_templates, e), np.arange(n_templates))[: max(k, 1)] for e in idx]
        return CaptionedImages("entities", images, caps, _entity_attrs(idx))

    def sample(self, n: int, seed: int, creative: str = "include", entity_share: float = 0.1) -> CaptionedImages:
        """A fresh mixed batch of the whole world distribution (creative pairs and entities
        included by default): training data for the evaluator, or a scaling gallery."""
        rng = W.stream(self.config.seed, "sample", seed)
        n_ent = int(round(n * entity_share))
        common = self.common(n - n_ent, rng, creative)
        ents = self.entity_photos(rng.integers(self.config.n_entities, size=n_ent), rng)
        return merge("sample", common, ents)

    def build(self) -> dict[str, dict[str, np.ndarray]]:
        """Every split as plain arrays, ready to save."""
        c = self.config
        out = {}
        # train: common scenes + jittered photos of each entity
        rng = W.stream(c.seed, "train")
        train = merge(
            "train",
            self.common(c.n_train, rng),
            self.entity_photos(np.repeat(np.arange(c.n_entities), c.entity_variants), rng),
        )
        out["train"] = to_arrays(train)
        out["val"] = to_arrays(self.common(c.n_val, W.stream(c.seed, "val")))
        gallery = merge("gallery", self.common(c.n_gallery, W.stream(c.seed, "gallery")), self.entity_photos(np.arange(c.n_entities), None))
        out["gallery"] = to_arrays(gallery)
        out["queries"] = self._queries(gallery)
        out["entities"] = {"names": np.array(self.entities.names), "kinds": self.entities.kinds.astype(np.int16), "canonical": self.entities.canonical}
        return out

    def _queries(self, gallery: CaptionedImages) -> dict[str, np.ndarray]:
        c = self.config
        rng = W.stream(c.seed, "queries")
        n_templates = len(W.ENTITY_TEMPLATES["flag"])
        # knowledge: one prompt per entity, answered by its gallery image
        ent_idx = np.arange(c.n_entities)
        k_texts = self.entities.captions(ent_idx, rng.integers(n_templates, size=c.n_entities))
        k_gallery = c.n_gallery + ent_idx
        # common: a fresh paraphrase of a gallery scene
        com_idx = rng.choice(c.n_gallery, size=min(c.n_common_queries, c.n_gallery), replace=False)
        com_attrs = {k: gallery.attributes[k][com_idx] for k in W.ATTRIBUTES}
        c_texts = [caps[0] for caps in W.scene_captions(com_attrs, rng, 1)]
        # creative: held-out pairs; the ground-truth image exists but is not in the gallery
        creative = self.common(c.n_creative_queries, rng, creative="only", captions=1)
        texts = k_texts + c_texts + creative.first_captions()
        # every query once more, phrased as no training caption is (language.py), from its own stream
        held_rng = W.stream(c.seed, "queries", 1)
        heldout = self.entities.heldout_phrasings(ent_idx, held_rng) + W.heldout_phrasings(com_attrs, held_rng)
        heldout += W.heldout_phrasings(creative.attributes, held_rng)
        kind = np.array(["knowledge"] * c.n_entities + ["common"] * len(com_idx) + ["creative"] * c.n_creative_queries)
        attrs = _concat(_entity_attrs(ent_idx), _common_attrs(com_attrs), creative.attributes)
        g_index = np.concatenate([k_gallery, com_idx, np.full(c.n_creative_queries, -1)]).astype(np.int64)
        images = np.concatenate([gallery.images[k_gallery], gallery.images[com_idx], creative.images])
        hits = hit_sets(gallery.attributes, attrs)
        return {
            "texts": np.array(texts),
            "heldout_texts": np.array(heldout),
            "kind": kind,
            "label": np.array([GOLD_LABEL[k] for k in kind]),
            "gallery_index": g_index,
            "hits_flat": np.concatenate(hits).astype(np.int64),
            "hits_offsets": np.cumsum([0] + [len(h) for h in hits]).astype(np.int64),
            "images": images,
            **{f"attr_{k}": v for k, v in attrs.items()},
        }


def hit_sets(gallery_attrs: dict[str, np.ndarray], query_attrs: dict[str, np.ndarray], rows=None) -> list[np.ndarray]:
    """Which gallery images answer each query: the same entity, or a common scene with exactly the
    query's attributes (the one definition of a hit; every metric uses it). ``rows`` picks the
    queries in ``query_attrs`` (default: all)."""
    keys = ATTR_KEYS
    g = np.stack([np.asarray(gallery_attrs[k]) for k in keys], axis=1).astype(np.int64)
    q = np.stack([np.asarray(query_attrs[k]) for k in keys], axis=1).astype(np.int64)
    q = q if rows is None else q[np.asarray(rows, dtype=np.int64)]
    # group identical descriptions once instead of comparing every pair
    uniq, inverse = np.unique(np.concatenate([g, q]), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    g_code, q_code = inverse[: len(g)], inverse[len(g) :]
    order = np.argsort(g_code, kind="stable")
    starts = np.searchsorted(g_code[order], np.arange(len(uniq) + 1))
    return [order[starts[c] : starts[c + 1]] for c in q_code]


def merge(name: str, *parts: CaptionedImages) -> CaptionedImages:
    return CaptionedImages(
        name,
        np.concatenate([p.images for p in parts]),
        [c for p in parts for c in p.captions],
        _concat(*[p.attributes for p in parts]),
    )


def to_arrays(d: CaptionedImages) -> dict[str, np.ndarray]:
    k = max(len(c) for c in d.captions)
    caps = np.array([c + [""] * (k - len(c)) for c in d.captions])
    return {"images": d.images, "captions": caps, **{f"attr_{a}": v for a, v in d.attributes.items()}}


def from_arrays(name: str, a: dict[str, np.ndarray]) -> CaptionedImages:
    caps = [[c for c in row if c] for row in a["captions"].tolist()]
    return CaptionedImages(name, a["images"], caps, {k[5:]: v for k, v in a.items() if k.startswith("attr_")})


@dataclass
class World:
    """A built mini world: splits, queries, entities, and the generator that made them."""

    config: W.WorldConfig
    path: Path
    train: CaptionedImages
    val: CaptionedImages
    gallery: CaptionedImages
    queries: Queries
    entity_names: list[str]
    built_now: bool = False

    @property
    def id(self) -> str:
        return self.config.world_id()

    @cached_property
    def generator(self) -> WorldGenerator:
        return WorldGenerator(self.config)

    def summary(self) -> dict:
        kinds, counts = np.unique(self.queries.kind, return_counts=True)
        return {
            "world_id": self.id,
            "path": str(self.path),
            "image_size": self.config.image_size,
            "train": len(self.train),
            "val": len(self.val),
            "gallery": len(self.gallery),
            "queries": {str(k): int(n) for k, n in zip(kinds, counts)},
            "entities": len(self.entity_names),
            "creative_pairs": [f"{W.COLOR_NAMES[c]} {W.SHAPES[s]}" for s, c in W.creative_pairs(self.config.seed, self.config.n_creative_pairs)],
        }


SPLITS = ("train", "val", "gallery", "queries", "entities")


def world_dir(data_dir: Path, config: W.WorldConfig) -> Path:
    return Path(data_dir) / "worlds" / config.world_id()


def check_world(path: Path) -> str | None:
    """None if ``path`` holds a complete, intact world; otherwise why not."""
    manifest = read_json(path / "manifest.json")
    if manifest is None:
        return "no readable manifest.json (an interrupted build?)"
    if manifest.get("version") != W.WORLD_VERSION:
        return f"built by world version {manifest.get('version')}, this library is version {W.WORLD_VERSION}"
    return verify_files(path, manifest.get("files", {})) or (None if set(manifest.get("files", {})) >= {f"{s}.npz" for s in SPLITS} else "split files missing from the manifest")


def build_world(data_dir: Path, config: W.WorldConfig | None = None, force: bool = False) -> World:
    """Build the world into ``data_dir`` unless an intact copy is already there (then do nothing)."""
    config = (config or W.WorldConfig()).validate()
    path = world_dir(data_dir, config)
    ensure_writable(path.parent)
    if path.exists() and not force:
        problem = check_world(path)
        if problem is None:
            info(f"world {config.world_id()} is already built at {path}: nothing to do")
            return load_world(data_dir, config, verify=False)
        info(f"world at {path} is unusable ({problem}): rebuilding it")
    t0 = time.perf_counter()
    info(f"building world {config.world_id()} ...")
    arrays = WorldGenerator(config).build()
    with atomic_dir(path) as tmp:
        for split, a in arrays.items():
            save_npz(tmp / f"{split}.npz", a)
        atomic_write_json(
            tmp / "manifest.json",
            {
                "version": W.WORLD_VERSION,
                "world_id": config.world_id(),
                "config": asdict(config),
                "build_seconds": round(time.perf_counter() - t0, 3),
                "files": files_manifest(tmp),
            },
        )
    _remove_stale_partials(path)
    world = load_world(data_dir, config, verify=False)
    world.built_now = True
    info(f"built world {config.world_id()} in {time.perf_counter() - t0:.1f}s at {path}")
    return world


def _remove_stale_partials(path: Path) -> None:
    for p in path.parent.glob(f".{path.name}.*.partial"):
        shutil.rmtree(p, ignore_errors=True)


def load_world(data_dir: Path, config: W.WorldConfig | None = None, verify: bool = True) -> World:
    """Load a built world; a missing, half-written or corrupted one is never used silently."""
    config = (config or W.WorldConfig()).validate()
    path = world_dir(data_dir, config)
    if not path.exists():
        raise TigerError(f"world {config.world_id()} is not built under {data_dir}: run `tiger world build`")
    problem = check_world(path) if verify else None
    if problem:
        raise TigerError(f"world at {path} is unusable ({problem}): run `tiger world build` to rebuild it")
    a = {s: load_npz(path / f"{s}.npz") for s in SPLITS}
    q = a["queries"]
    off = q["hits_offsets"]
    queries = Queries(
        q["texts"].tolist(),
        q["kind"],
        q["label"],
        q["gallery_index"],
        [q["hits_flat"][off[i] : off[i + 1]] for i in range(len(off) - 1)],
        q["images"],
        {k[5:]: v for k, v in q.items() if k.startswith("attr_")},
        q["heldout_texts"].tolist(),
    )
    return World(
        config,
        path,
        from_arrays("train", a["train"]),
        from_arrays("val", a["val"]),
        from_arrays("gallery", a["gallery"]),
        queries,
        a["entities"]["names"].tolist(),
    )
