"""What the judge says about images: GenEval-style accuracy of shape, colour, size, position,
background (common and creative scenes) and entity (knowledge), next to CLIP-T.

``truth`` is the world's ground truth for each image (``kind``, ``entity`` and the scene
attributes, -1 where moot), for example a query's attributes for the image chosen for it."""
from __future__ import annotations

import numpy as np

from ..data import world as W


def attribute_accuracy(pred: dict[str, np.ndarray], truth: dict[str, np.ndarray]) -> dict:
    """``all``: share of scene images with every attribute right (and read as a scene), then per
    attribute; ``entity``: share of entity images read as their entity. None where no image has
    that kind."""
    kind = np.asarray(truth["kind"])
    scene, ent = kind == W.KIND_COMMON, kind == W.KIND_ENTITY
    out: dict = {}
    right = {k: np.asarray(pred[k]) == np.asarray(truth[k]) for k in W.ATTRIBUTES}
    all_right = _scene_right(pred, truth)
    out["all"] = round(float(all_right[scene].mean()), 4) if scene.any() else None
    for k in W.ATTRIBUTES:
        out[k] = round(float(right[k][scene].mean()), 4) if scene.any() else None
    out["entity"] = round(float((np.asarray(pred["entity"]) == np.asarray(truth["entity"]))[ent].mean()), 4) if ent.any() else None
    out["n_scenes"], out["n_entities"] = int(scene.sum()), int(ent.sum())
    return out


def _scene_right(pred: dict[str, np.ndarray], truth: dict[str, np.ndarray]) -> np.ndarray:
    right = [np.asarray(pred[k]) == np.asarray(truth[k]) for k in W.ATTRIBUTES]
    return np.logical_and.reduce(right) & (np.asarray(pred["kind"]) == W.KIND_COMMON)


def judged_right(pred: dict[str, np.ndarray], truth: dict[str, np.ndarray]) -> np.ndarray:
    """Per image, bool: a scene read with every attribute right, or an entity image read as its
    entity (the per-image form of :func:`attribute_accuracy`'s ``all`` and ``entity``)."""
    ent = np.asarray(truth["kind"]) == W.KIND_ENTITY
    return np.where(ent, np.asarray(pred["entity"]) == np.asarray(truth["entity"]), _scene_right(pred, truth))


def judge_images(judge, images, truth: dict[str, np.ndarray]) -> dict:
    """The judge reads ``images``; :func:`attribute_accuracy` against ``truth``."""
    return attribute_accuracy(judge.read(images), truth)


def pick(attrs: dict[str, np.ndarray], rows) -> dict[str, np.ndarray]:
    """Ground truth of the given rows (for example a gallery's attributes at the top-1 indices)."""
    rows = np.asarray(rows, dtype=np.int64)
    return {k: np.asarray(v)[rows] for k, v in attrs.items()}


def top1_accuracy(judge_reading: dict[str, np.ndarray], top1: np.ndarray, query_truth: dict[str, np.ndarray]) -> dict:
    """Judge accuracy of each query's top-1 gallery image (``judge_reading``: the judge's reading
    of the whole gallery, computed once). A query whose ranking is empty (-1) counts as wrong."""
    top1 = np.asarray(top1, dtype=np.int64)
    pred = {k: np.where(top1 >= 0, np.asarray(v)[np.maximum(top1, 0)], -2) for k, v in judge_reading.items()}
    return attribute_accuracy(pred, query_truth)
