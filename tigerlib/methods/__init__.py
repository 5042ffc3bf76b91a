"""The methods, each behind the one retrieval interface (:class:`Retriever` -> :class:`Ranking`):
dense retrieval (the baseline), TIGeR and GRACE. GILL is coming (see the README)."""
from .dense import DenseRetriever
from .grace import GRACE
from .retriever import Ranking, Retriever
from .tiger import TIGeR, TIGeRRanking

__all__ = ["DenseRetriever", "GRACE", "Ranking", "Retriever", "TIGeR", "TIGeRRanking"]
