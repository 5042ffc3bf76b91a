"""The methods: dense retrieval (the baseline), and later GRACE, TIGeR and GILL."""
from .dense import DenseRetriever

__all__ = ["DenseRetriever"]
