"""``tiger bench retrieval``: latency per query of generative vs dense retrieval as the gallery grows.

Galleries of 1K .. 1M fresh mini-world images (one stream; a smaller gallery is the start of a
larger one). Every image is tokenized by the visual tokenizer and embedded by the dual encoder
once; both are cached on disk (keyed by world, models and size) and reused.

- generative: TIGeR's forward beam search over the trie of the gallery's token sequences (per-step
  PMI, early stop, completion and rescoring): at most one LMM step per visual token per beam,
  whatever the gallery size. ``search_steps`` (steps before every path is unique) says where
  the time goes: a larger gallery keeps paths shared a few tokens longer.
- dense: one text embedding and an exact top-k by matrix product over all gallery embeddings.
"""
from __future__ import annotations

import contextlib
import hashlib
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import info
from ..errors import TigerError
from ..methods.tiger import TIGeR
from ..storage import load_npz, save_npz

CHUNK = 8192


def _weights_id(model) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().float().numpy().tobytes()[:4096])
    return h.hexdigest()[:12]


def scaling_gallery(world, visual_tokenizer, dual_encoder, n: int, cache_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes [n, L], L2-normalized embeddings [n, d]) of the first ``n`` images of one fresh
    stream of world images, cached. Images come in fixed chunks, so a cached larger gallery
    holds every smaller one: it is sliced, never rebuilt."""
    prefix = f"scaling-{world.id}-vq{_weights_id(visual_tokenizer)}-de{_weights_id(dual_encoder)}-"
    cached = sorted((int(p.stem[len(prefix):]), p) for p in Path(cache_dir).glob(f"{prefix}*.npz") if p.stem[len(prefix):].isdigit())
    for size, path in cached:
        if size < n:
            continue
        try:
            arrays = load_npz(path)
            codes, emb = arrays["codes"][:n], arrays["embeddings"][:n]
        except (OSError, ValueError, KeyError) as e:  # damaged cache (DamagedFileError is a ValueError): drop it, try the next, else rebuild
            info(f"ignoring the damaged scaling cache {path} ({e}); deleting it")
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        return torch.from_numpy(codes.astype(np.int64)), torch.from_numpy(emb.astype(np.float32))
    path = Path(cache_dir) / f"{prefix}{n}.npz"
    info(f"tokenizing and embedding {n:,} mini-world images once (cache: {path})")
    codes, emb = [], []
    for i, lo in enumerate(tqdm(range(0, n, CHUNK), desc="scaling gallery", leave=False)):
        images = world.generator.sample(CHUNK, seed=10_000 + i).images[: n - lo]
        codes.append(visual_tokenizer.encode(images).to(torch.int16))
        emb.append(dual_encoder.encode_images(images).to(torch.float16).cpu())
    codes, emb = torch.cat(codes), torch.cat(emb)
    save_npz(path, {"codes": codes.numpy(), "embeddings": emb.numpy()})
    return codes.long(), emb.float()


def run_retrieval_benchmark(lmm, visual_tokenizer, dual_encoder, world, cache_dir, sizes=(1_000, 10_000, 100_000, 1_000_000),
                            n_queries: int = 5, num_beams: int = 100, eta: float = 1.0, k: int = 10) -> dict:
    """Milliseconds per query (mean over ``n_queries`` common-scene prompts, after one warm-up)."""
    sizes = sorted(int(s) for s in sizes)
    if not sizes or sizes[0] < 1 or n_queries < 1 or num_beams < 1:
        raise TigerError(f"need gallery sizes >= 1, queries >= 1 and beams >= 1; got sizes={sizes}, queries={n_queries}, beams={num_beams}")
    prompts = list(world.queries.subset("common").texts[:n_queries])
    codes_all, emb_all = scaling_gallery(world, visual_tokenizer, dual_encoder, sizes[-1], cache_dir)
    results = []
    for n in sizes:
        t0 = time.perf_counter()
        tiger = TIGeR(lmm, codes_all[:n])
        build_s = time.perf_counter() - t0
        tiger.search(prompts[0], num_beams=num_beams, eta=eta)  # warm-up
        times, steps = [], []
        for p in prompts:
            t0 = time.perf_counter()
            res = tiger.search(p, num_beams=num_beams, eta=eta)
            times.append(time.perf_counter() - t0)
            steps.append(res.stopped_early_at or len(res.beams_per_step))
        results.append({"n": n, "method": "generative", "ms_per_query": round(1000 * float(np.mean(times)), 2),
                        "trie_build_seconds": round(build_s, 2), "trie_nodes": tiger.trie.num_nodes, "search_steps": float(np.mean(steps))})
        emb = emb_all[:n].to(dual_encoder.device).contiguous()
        times = []
        for p in [prompts[0]] + prompts:  # the first is a warm-up
            t0 = time.perf_counter()
            q = dual_encoder.encode_text([p])
            (q @ emb.T).topk(min(k, n), dim=1).indices.cpu()  # the answer on the host (on CUDA: waits for it)
            times.append(time.perf_counter() - t0)
        results.append({"n": n, "method": "dense", "ms_per_query": round(1000 * float(np.mean(times[1:])), 3)})
        info(f"n={n:,}: generative {results[-2]['ms_per_query']:.1f} ms, dense {results[-1]['ms_per_query']:.2f} ms per query")
    by = lambda m: [r["ms_per_query"] for r in results if r["method"] == m]  # noqa: E731
    gen, dense = by("generative"), by("dense")
    return {
        "results": results,
        "growth": {"generative": round(gen[-1] / gen[0], 3), "dense": round(dense[-1] / dense[0], 3), "from_n": sizes[0], "to_n": sizes[-1]},
        "ratio_generative_over_dense": [round(g / d, 2) for g, d in zip(gen, dense)],
        "num_beams": num_beams,
        "eta": eta,
        "n_queries": len(prompts),
        "threads": torch.get_num_threads(),
    }
