"""The one place that decides profile, device, seed and where files live.

Environment variables (all optional):

- ``TIGER_PROFILE``: ``mini`` (default) or ``full``
- ``TIGER_HOME``: root for data, checkpoints and caches (default: ``tiger_home/`` in the repo)
- ``TIGER_SEED``: global seed (default 0)
- ``TIGER_DEVICE``: force a torch device such as ``cpu`` or ``cuda:1``
"""
from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import TigerError
from .profiles import PROFILES, Profile

REPO_ROOT = Path(__file__).resolve().parents[1]


def info(msg: str) -> None:
    """Progress/log line for people: stderr, so ``--json`` output on stdout stays clean."""
    print(msg, file=sys.stderr, flush=True)


def _default_home() -> Path:
    if (REPO_ROOT / "pyproject.toml").exists():  # running from a checkout
        return REPO_ROOT / "tiger_home"
    return Path.home() / ".cache" / "tigerlib"


def resolve_profile(name: str | None = None) -> Profile:
    name = (name or os.environ.get("TIGER_PROFILE") or "mini").strip().lower()
    if name not in PROFILES:
        raise TigerError(f"unknown profile {name!r}: use one of {sorted(PROFILES)} (set TIGER_PROFILE or pass profile=)")
    return PROFILES[name]


def resolve_seed(seed: int | str | None = None) -> int:
    raw = seed if seed is not None else os.environ.get("TIGER_SEED", "0")
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise TigerError(f"invalid seed {raw!r}: use a non-negative integer such as 0") from None
    if value < 0 or value >= 2**32:
        raise TigerError(f"invalid seed {value}: use an integer in [0, 2**32)")
    return value


def resolve_device(profile: Profile, device: str | None = None):
    import torch

    wanted = device or os.environ.get("TIGER_DEVICE")
    if wanted:
        try:
            dev = torch.device(wanted)
        except RuntimeError:
            raise TigerError(f"invalid device {wanted!r}: use 'cpu' or 'cuda' (TIGER_DEVICE)") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise TigerError(f"device {wanted!r} asked for but CUDA is not available: unset TIGER_DEVICE or use 'cpu'")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if profile.wants_gpu:
        info(
            f"warning: profile {profile.name!r} expects a GPU but none is available; running on CPU "
            "(slow; use TIGER_PROFILE=mini for the CPU course)"
        )
    return torch.device("cpu")


def ensure_writable(path: Path) -> Path:
    """Create ``path`` if needed and prove it is writable, or fail with one line naming the fix."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write_probe_{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise TigerError(
            f"data root {path} is not writable ({e.strerror or e}): set TIGER_HOME to a writable folder"
        ) from None
    return path


@dataclass(frozen=True)
class Settings:
    profile: Profile
    device: object  # torch.device
    seed: int
    home: Path

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def checkpoint_dir(self) -> Path:
        return self.home / "checkpoints" / self.profile.name

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache" / self.profile.name

    def world_config(self, **overrides):
        """The mini world this profile and seed use (the same world for every command)."""
        from .data.world import WorldConfig

        return WorldConfig(seed=self.seed, **overrides)

    def describe(self) -> str:
        return (
            f"profile={self.profile.name} ({self.profile.description})\n"
            f"device={self.device}  seed={self.seed}\n"
            f"home={self.home}\n  data={self.data_dir}\n  checkpoints={self.checkpoint_dir}\n  cache={self.cache_dir}"
        )


def get_settings(
    profile: str | None = None, seed: int | None = None, home: str | os.PathLike | None = None, device: str | None = None
) -> Settings:
    """Resolve settings from arguments, then environment variables, then defaults."""
    prof = resolve_profile(profile)
    root = Path(home or os.environ.get("TIGER_HOME") or _default_home()).expanduser().resolve()
    return Settings(profile=prof, device=resolve_device(prof, device), seed=resolve_seed(seed), home=root)


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
