"""Small pieces shared by the zoo's training loops."""
from __future__ import annotations

import math

import torch


def warmup_cosine(opt: torch.optim.Optimizer, warmup: int, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up for ``warmup`` steps, then cosine decay to zero at ``steps``."""
    warmup = max(1, warmup)

    def factor(step: int) -> float:
        return min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, steps))))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)
