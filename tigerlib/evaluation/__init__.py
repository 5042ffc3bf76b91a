"""Evaluation: retrieval recalls, and (later) generation and decision metrics."""
from .retrieval import attribute_hits, recall_at_k

__all__ = ["attribute_hits", "recall_at_k"]
