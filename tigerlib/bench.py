"""Benchmarks that print JSON: speed and memory targets are measured here, never in timed tests."""
from __future__ import annotations

import time

import numpy as np

from .data.world import WorldConfig
from .data.world_store import WorldGenerator
from .data import world as W


def bench_world(n: int = 20_000, image_size: int = 32, seed: int = 0, repeats: int = 3) -> dict:
    """Images per second of the mini world generator on one core (numpy, vectorized)."""
    from threadpoolctl import threadpool_limits

    gen = WorldGenerator(WorldConfig(seed=seed, image_size=image_size))
    gen.common(256, W.stream(seed, "sample", 999))  # warm-up
    render, full = [], []
    with threadpool_limits(1):
        for r in range(repeats):
            rng = W.stream(seed, "sample", 1000 + r)
            t0 = time.perf_counter()
            gen.common(n, rng, creative="include", captions=0)
            render.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            gen.common(n, rng, creative="include")
            full.append(time.perf_counter() - t0)
    return {
        "images_per_second": round(n / float(np.median(render)), 1),
        "images_per_second_with_captions": round(n / float(np.median(full)), 1),
        "image_size": image_size,
        "n": n,
        "repeats": repeats,
        "threads": 1,
    }
