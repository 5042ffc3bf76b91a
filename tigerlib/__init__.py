"""tigerlib: unified text-to-image generation and retrieval with multimodal LMs, for learning.

Flow: data (the mini world, real datasets) -> models (the zoo) -> decoding (tries, beam search)
-> methods (dense, TIGeR, GRACE, GILL, the unified decision) -> evaluation -> notebooks and the ``tiger`` CLI.

The main classes are importable from here (loaded on first use, so ``tiger info`` stays fast):
``from tigerlib import TIGeR, DenseRetriever, build_world``.
"""
from .config import get_settings
from .errors import TigerError

__version__ = "0.1.0"

_LAZY = {
    "DenseRetriever": "methods",
    "Ranking": "methods",
    "Retriever": "methods",
    "TIGeR": "methods",
    "TIGeRRanking": "methods",
    "World": "data",
    "WorldConfig": "data",
    "build_world": "data",
    "load_world": "data",
    "TensorTrie": "decoding",
    "constrained_beam_search": "decoding",
    "recall_at_k": "evaluation",
    "build_zoo": "zoo",
    "load_zoo_model": "zoo",
    "zoo_status": "zoo",
}
__all__ = ["TigerError", "get_settings", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'tigerlib' has no attribute {name!r}")
