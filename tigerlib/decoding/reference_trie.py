"""The published constrained-decoding trie, rewritten from its description, for comparison only.

TIGeR / GRACE (after GENRE) keep the gallery identifiers in nested Python dicts, insert them one
sequence at a time, and give Hugging Face ``generate`` a ``prefix_allowed_tokens_fn`` that walks
from the root for every beam at every step. ``PrefixConstrainedLogitsProcessor`` then loops over
the beams to build the mask. :class:`tigerlib.decoding.TensorTrie` replaces all of this; the
tests check both agree and the benchmark measures the difference.
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch


class DictTrie:
    """Nested-dict prefix trie: ``{token: {token: {...}}}``; a leaf is an empty dict."""

    def __init__(self) -> None:
        self.root: dict = {}
        self.num_nodes = 1

    @classmethod
    def build(cls, sequences: Iterable[Sequence[int]], end_token: int | None = None) -> "DictTrie":
        """Insert one sequence at a time (arrays/tensors are turned into lists first, as a
        dataset loader would hand them over)."""
        if hasattr(sequences, "tolist"):
            sequences = sequences.tolist()
        trie = cls()
        for seq in sequences:
            trie.add(list(seq) + ([end_token] if end_token is not None else []))
        return trie

    def add(self, sequence: Sequence[int]) -> None:
        node = self.root
        for token in sequence:
            child = node.get(token)
            if child is None:
                child = node[token] = {}
                self.num_nodes += 1
            node = child

    def get(self, prefix: Sequence[int]) -> list[int]:
        """Tokens allowed after ``prefix``, walking from the root ([] if the prefix is not in the trie)."""
        node = self.root
        for token in prefix:
            node = node.get(token)
            if node is None:
                return []
        return list(node)

    def prefix_allowed_tokens_fn(self, prompt_length: int,
                                 eos_token_id: int | None = None) -> Callable[[int, torch.Tensor], list[int]]:
        """HF ``generate(prefix_allowed_tokens_fn=...)`` callback: ``(batch_id, input_ids) -> list[int]``.

        The identifier is ``input_ids[prompt_length:]``. At a leaf (or off the trie) only
        ``eos_token_id`` is allowed when given; otherwise the list is empty (HF then raises).
        """

        def allowed(batch_id: int, input_ids: torch.Tensor) -> list[int]:
            tokens = self.get(input_ids[prompt_length:].tolist())
            if not tokens and eos_token_id is not None:
                return [eos_token_id]
            return tokens

        return allowed


def reference_allowed_mask(prefix_allowed_tokens_fn: Callable[[int, torch.Tensor], list[int]],
                           input_ids: torch.Tensor, vocab_size: int, num_beams: int | None = None) -> torch.Tensor:
    """BoolTensor[B, vocab_size] built like ``PrefixConstrainedLogitsProcessor``: one callback and
    one indexed write per beam (row ``r`` belongs to batch ``r // num_beams``)."""
    num_beams = num_beams or len(input_ids)
    mask = torch.zeros(len(input_ids), vocab_size, dtype=torch.bool)
    for row in range(len(input_ids)):
        mask[row, prefix_allowed_tokens_fn(row // num_beams, input_ids[row])] = True
    return mask
