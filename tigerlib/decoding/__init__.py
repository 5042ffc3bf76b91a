"""Trie-constrained decoding of image identifiers (TIGeR / GRACE generative retrieval).

- :class:`TensorTrie`: the gallery's identifiers as a flat, vectorized prefix trie.
- :class:`TrieLogitsProcessor`: that trie inside Hugging Face ``generate`` (beam search).
- :func:`constrained_beam_search`: the library's own search, with unique-path early stopping,
  driven by a :class:`Scorer` (:class:`CausalLMScorer`, :class:`CombinedScorer` for PMI).
- :class:`DictTrie`: the published nested-dict approach, for comparison and tests.
- :func:`run_trie_benchmark`: the two tries side by side.
"""
from .beam_search import (
    BeamSearchResult,
    CausalLMScorer,
    CombinedScorer,
    Scorer,
    TrieLogitsProcessor,
    constrained_beam_search,
    pmi_scorer,
)
from .reference_trie import DictTrie, reference_allowed_mask
from .trie import TensorTrie
from .trie_benchmark import run_trie_benchmark

__all__ = [
    "BeamSearchResult",
    "CausalLMScorer",
    "CombinedScorer",
    "DictTrie",
    "Scorer",
    "TensorTrie",
    "TrieLogitsProcessor",
    "constrained_beam_search",
    "pmi_scorer",
    "reference_allowed_mask",
    "run_trie_benchmark",
]
