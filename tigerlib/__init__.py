"""tigerlib: unified text-to-image generation and retrieval with multimodal LMs, for learning.

Flow: data (the mini world, real datasets) -> models (the zoo) -> decoding (tries, beam search)
-> methods (GRACE, TIGeR, GILL) -> evaluation -> notebooks and the ``tiger`` CLI.
"""
from .config import get_settings
from .errors import TigerError

__version__ = "0.1.0"
__all__ = ["TigerError", "get_settings", "__version__"]
