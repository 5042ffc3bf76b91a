"""Small pieces shared by the zoo's training loops."""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch


def warmup_cosine(opt: torch.optim.Optimizer, warmup: int, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up for ``warmup`` steps, then cosine decay to zero at ``steps``."""
    warmup = max(1, warmup)

    def factor(step: int) -> float:
        return min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, steps))))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def warmup_stable_decay(opt: torch.optim.Optimizer, warmup: int, steps: int, decay: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, the full rate until the last ``decay`` steps, then cosine decay to zero:
    a short recipe spends its steps at the full rate instead of on a long decay."""
    warmup = max(1, warmup)
    decay = max(1, min(decay, steps - warmup))  # a short run (tests, benchmarks) still trains at the full rate first

    def factor(step: int) -> float:
        tail = min(1.0, max(0.0, (step - (steps - decay)) / decay))
        return min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * tail))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def fast_bf16(device) -> bool:
    """bf16 autocast pays off on CUDA and on CPUs with native bf16 (elsewhere it is emulated, slow)."""
    if torch.device(device).type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return torch.device(device).type == "cpu" and ("avx512_bf16" in flags or "amx_bf16" in flags)


class Phases:
    """Seconds per phase of a training loop: call ``mark(name)`` at the end of each phase and the
    time since the previous mark is added to it (``tiger bench zoo`` reports these)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.start()

    def start(self) -> None:
        self._t = time.perf_counter()

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self._t
        self._t = now

    def summary(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in self.seconds.items()}
