"""Evaluation: every metric of the library, defined once (recall over hit sets, the judge's
attribute accuracy, the zoo's quality numbers, TIGeR's study, the latency benchmark)."""
from .judging import attribute_accuracy, judge_images, top1_accuracy
from .retrieval import hit_sets, rankings_of, recall_at_k

__all__ = ["attribute_accuracy", "hit_sets", "judge_images", "rankings_of", "recall_at_k", "top1_accuracy"]
