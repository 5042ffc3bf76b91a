"""The methods, each behind the one retrieval interface (:class:`Retriever` -> :class:`Ranking`):
dense retrieval (the baseline) and TIGeR. GRACE and GILL are coming (see the README)."""
from .dense import DenseRetriever
from .retriever import Ranking, Retriever
from .tiger import TIGeR, TIGeRRanking

__all__ = ["DenseRetriever", "Ranking", "Retriever", "TIGeR", "TIGeRRanking"]
