"""Atomic writes and integrity checks, shared by the world, the zoo and every cache.

Whatever is built is written to a temporary name first and renamed into place, so an interrupted
build never leaves something that looks finished. Manifests record a sha256 per file, so a
truncated or corrupted file is detected before use.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .config import ensure_writable
from .errors import TigerError


class DamagedFileError(TigerError, ValueError):
    """A file that exists but cannot be read back (truncated, garbage, not what it should be)."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    ensure_writable(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Plain arrays only (no object arrays, so loading never needs pickle)."""
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an .npz; a damaged file raises :class:`DamagedFileError` (a missing one: FileNotFoundError)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, ValueError, zlib.error) as e:
        raise DamagedFileError(f"{path} is damaged ({type(e).__name__}: {e}): delete it and rebuild it") from e


@contextlib.contextmanager
def atomic_dir(target: Path):
    """Yield a temporary folder next to ``target``; on success it replaces ``target`` in one rename."""
    target = Path(target)
    ensure_writable(target.parent)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial"))
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def files_manifest(folder: Path) -> dict[str, dict]:
    return {
        p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(Path(folder).iterdir())
        if p.is_file() and p.name != "manifest.json"
    }


def verify_files(folder: Path, files: dict[str, dict]) -> str | None:
    """None if every listed file is present with its recorded size and hash, else what is wrong."""
    for name, rec in files.items():
        p = Path(folder) / name
        if not p.exists():
            return f"{name} is missing"
        if p.stat().st_size != rec["bytes"]:
            return f"{name} has {p.stat().st_size} bytes, expected {rec['bytes']} (truncated?)"
        if sha256_file(p) != rec["sha256"]:
            return f"{name} does not match its recorded sha256 (corrupted?)"
    return None
