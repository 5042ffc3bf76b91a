"""Benchmark: :class:`TensorTrie` against the published dict trie on random identifier galleries.

For each gallery size it reports build time, memory per trie node, and the time of one decoding
step for ``beams`` beams. A step means: produce the full [beams, vocab] boolean mask of allowed
next tokens. The tensor trie gets there from each beam's parent node and last token
(``step`` + ``allowed_mask``, as in :func:`constrained_beam_search`); the reference gets the
beams' token prefixes and does what HF's ``PrefixConstrainedLogitsProcessor`` does with a
``prefix_allowed_tokens_fn`` (per beam: walk from the root, write the row). Beam states are
prefixes of random gallery sequences at every depth ``0 .. seq_len - 1`` (depth 0: all beams at
the root, which has thousands of children), so ``step_ms`` is the mean over a full decode of the
per-depth median time. Both implementations see the same states and their masks are compared.

Run ``python -m tigerlib.decoding.trie_benchmark`` to print the JSON.
"""
from __future__ import annotations

import gc
import json
import statistics
import sys
import time
import tracemalloc
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .reference_trie import DictTrie, reference_allowed_mask
from .trie import TensorTrie


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` in ms, after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _beam_states(gallery: np.ndarray, depths: Sequence[int], beams: int, rng: np.random.Generator) -> dict[int, torch.Tensor]:
    """For each depth d: [beams, d] prefixes of randomly chosen gallery sequences."""
    return {d: torch.from_numpy(gallery[rng.integers(0, len(gallery), size=beams), :d].copy()) for d in depths}


def _tensor_step(trie: TensorTrie, prefixes: torch.Tensor) -> Callable[[], torch.Tensor]:
    """The timed step of the tensor trie: from each beam's parent node and last token to the mask."""
    if prefixes.shape[1] == 0:
        root = torch.zeros(len(prefixes), dtype=torch.long, device=trie.device)
        return lambda: trie.allowed_mask(root)
    parents, last = trie.walk(prefixes[:, :-1]), prefixes[:, -1].contiguous()
    return lambda: trie.allowed_mask(trie.step(parents, last))


def _measure_reference(gallery: np.ndarray) -> tuple[DictTrie, float, float, float]:
    """Build the dict trie twice: once timed, once under tracemalloc (slower) for its memory.
    Returns (trie, build seconds, total seconds of both builds, bytes per node)."""
    start = time.perf_counter()
    trie = DictTrie.build(gallery)
    seconds = time.perf_counter() - start
    del trie
    gc.collect()
    tracemalloc.start()
    try:
        trie = DictTrie.build(gallery)
        traced = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return trie, seconds, time.perf_counter() - start, traced / trie.num_nodes


def run_trie_benchmark(sizes: Sequence[int] = (1_000, 10_000, 100_000, 1_000_000), seq_len: int = 32,
                       vocab: int = 8192, beams: int = 800, seed: int = 0,
                       reference_limit_seconds: float = 120.0, reference_limit_bytes: int | None = None,
                       repeats: int = 11, reference_repeats: int = 3, threads: int | None = 1) -> dict:
    """Measure both tries at each size; returns a JSON-ready dict.

    ``results`` has one row per (n, impl) with keys n, impl ("tensor" | "reference"), status
    ("ok" or why it did not run), build_seconds, bytes_per_node, step_ms, beams; fields that
    could not be measured are None. The reference is not run where its estimated build time
    (both builds, extrapolated per node from the largest reference run so far, or from a pilot
    at n/10) exceeds ``reference_limit_seconds`` or its estimated memory exceeds
    ``reference_limit_bytes`` (default: min(4 GiB, half the available memory)).

    ``threads`` sets torch's intra-op threads for the run (restored after): the reference is
    single-threaded Python, and on a shared machine extra threads mostly wait for a core.
    """
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _run(sizes, seq_len, vocab, beams, seed, reference_limit_seconds, reference_limit_bytes,
                    repeats, reference_repeats)
    finally:
        torch.set_num_threads(previous_threads)


def _run(sizes: Sequence[int], seq_len: int, vocab: int, beams: int, seed: int, reference_limit_seconds: float,
         reference_limit_bytes: int | None, repeats: int, reference_repeats: int) -> dict:
    if reference_limit_bytes is None:
        available = _available_bytes()
        reference_limit_bytes = min(4 * 2**30, available // 2) if available else 4 * 2**30
    depths = list(range(seq_len))
    results: list[dict] = []
    extra: dict[str, dict] = {key: {} for key in ("num_nodes", "masks_match", "speedup_step", "speedup_build",
                                                   "memory_ratio", "reference_estimates")}
    step_by_depth: dict[str, dict] = {"tensor": {}, "reference": {}}
    basis: dict | None = None  # per-node cost of the largest reference run so far

    def row(n: int, impl: str, status: str, build: float | None = None, bpn: float | None = None,
            step: float | None = None) -> dict:
        out = {"n": n, "impl": impl, "status": status, "build_seconds": build, "bytes_per_node": bpn,
               "step_ms": step, "beams": beams}
        results.append(out)
        return out

    bar = tqdm(total=2 * len(sizes), file=sys.stderr, desc="trie benchmark")
    for n in sizes:
        key = str(n)
        rng = np.random.default_rng([seed, n])
        gallery = rng.integers(0, vocab, size=(n, seq_len), dtype=np.int64)
        states = _beam_states(gallery, depths, beams, rng)

        bar.set_description(f"n={n} tensor")
        trie, tensor_row, tensor_fns = None, None, {}
        try:
            start = time.perf_counter()
            trie = TensorTrie.build(gallery, vocab)
            build = time.perf_counter() - start
            extra["num_nodes"][key] = trie.num_nodes
            per_depth = []
            for d in depths:
                tensor_fns[d] = _tensor_step(trie, states[d])
                per_depth.append(_median_ms(tensor_fns[d], repeats))
            step_by_depth["tensor"][key] = per_depth
            tensor_row = row(n, "tensor", "ok", build, trie.bytes_per_node, float(np.mean(per_depth)))
        except Exception as e:  # report, never skip silently
            row(n, "tensor", f"failed: {type(e).__name__}: {e}")
        bar.update(1)

        bar.set_description(f"n={n} reference")
        nodes = trie.num_nodes if trie is not None else None
        if basis is None:  # no smaller run to extrapolate from: measure a pilot at n/10
            pilot = gallery[: max(1, n // 10)]
            pilot_trie, _, pilot_s, pilot_bpn = _measure_reference(pilot)
            basis = {"n": len(pilot), "seconds_per_node": pilot_s / pilot_trie.num_nodes,
                     "bytes_per_node": pilot_bpn, "pilot": True}
            del pilot_trie
        est_nodes = nodes if nodes is not None else n * seq_len  # upper bound when the tensor build failed
        est_bytes = basis["bytes_per_node"] * est_nodes
        est_seconds = basis["seconds_per_node"] * est_nodes
        extra["reference_estimates"][key] = {"nodes": est_nodes, "bytes": est_bytes, "build_seconds": est_seconds,
                                             "basis_n": basis["n"], "basis_bytes_per_node": basis["bytes_per_node"]}
        source = (f"{basis['bytes_per_node']:.0f} B/node and {basis['seconds_per_node'] * 1e6:.2f} us/node "
                  f"measured at n={basis['n']}{' (pilot)' if basis.get('pilot') else ''}, x {est_nodes} nodes")
        if est_bytes > reference_limit_bytes:
            row(n, "reference", f"not run: estimated {est_bytes / 2**30:.2f} GiB ({source}) exceeds "
                                f"reference_limit_bytes={reference_limit_bytes / 2**30:.2f} GiB")
        elif est_seconds > reference_limit_seconds:
            row(n, "reference", f"not run: estimated {est_seconds:.0f} s to build (timed + traced builds; {source}) "
                                f"exceeds reference_limit_seconds={reference_limit_seconds:.0f}")
        else:
            try:
                ref, build, total, bpn = _measure_reference(gallery)
                basis = {"n": n, "seconds_per_node": total / ref.num_nodes, "bytes_per_node": bpn}
                allowed = ref.prefix_allowed_tokens_fn(prompt_length=0)
                per_depth, match = [], True
                for d in depths:
                    def fn(d=d):
                        return reference_allowed_mask(allowed, states[d], vocab)
                    per_depth.append(_median_ms(fn, reference_repeats))
                    if d in tensor_fns:
                        match = match and torch.equal(fn(), tensor_fns[d]().cpu())
                step_by_depth["reference"][key] = per_depth
                ref_row = row(n, "reference", "ok", build, bpn, float(np.mean(per_depth)))
                if tensor_row is not None:
                    extra["masks_match"][key] = match
                    extra["speedup_step"][key] = ref_row["step_ms"] / tensor_row["step_ms"]
                    extra["speedup_build"][key] = ref_row["build_seconds"] / tensor_row["build_seconds"]
                    extra["memory_ratio"][key] = ref_row["bytes_per_node"] / tensor_row["bytes_per_node"]
                del ref, allowed
            except Exception as e:
                row(n, "reference", f"failed: {type(e).__name__}: {e}")
        bar.update(1)
        del trie, tensor_fns, gallery, states
        gc.collect()
    bar.close()

    config = {"sizes": list(sizes), "seq_len": seq_len, "vocab": vocab, "beams": beams, "seed": seed,
              "depths": depths, "repeats": repeats, "reference_repeats": reference_repeats,
              "reference_limit_seconds": reference_limit_seconds, "reference_limit_bytes": reference_limit_bytes,
              "torch_threads": torch.get_num_threads(), "device": "cpu"}
    return {"results": results, **extra, "step_ms_by_depth": step_by_depth, "config": config}


def format_results(result: dict) -> list[str]:
    """One human-readable line per result row; rows that did not run show their status instead of numbers."""
    lines = []
    for r in result["results"]:
        head = f"n={r['n']:>9,} {r['impl']:<9}"
        if r["status"] == "ok":
            lines.append(f"{head} ok         build {r['build_seconds']:.2f}s  {r['bytes_per_node']:.1f} B/node  "
                         f"step {r['step_ms']:.3f} ms")
        else:
            lines.append(f"{head} {r['status']}")
    return lines


if __name__ == "__main__":
    print(json.dumps(run_trie_benchmark(), indent=1))
