"""The methods, each behind the one retrieval interface (:class:`Retriever` -> :class:`Ranking`):
dense retrieval (the baseline), TIGeR, GRACE and GILL (its retrieval head: :class:`GILLRetriever`)."""
from .dense import DenseRetriever
from .gill import GILL, GILLRetriever
from .grace import GRACE
from .retriever import EmbeddingRetriever, Ranking, Retriever
from .tiger import TIGeR, TIGeRRanking

__all__ = ["DenseRetriever", "EmbeddingRetriever", "GILL", "GILLRetriever", "GRACE", "Ranking", "Retriever", "TIGeR", "TIGeRRanking"]
