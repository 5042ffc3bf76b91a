"""TIGeR: training-free generative retrieval with a unified LMM.

Every gallery image becomes its visual-token sequence (the visual tokenizer's codes, as the LMM's
image tokens); all sequences go into one :class:`TensorTrie`. Retrieval is then generation:

1. **Proxies** (full ranking, the paper's proxy study): score every gallery image for a prompt X by
   (a) ``log p(Y|X)``, (b) PMI ``log p(Y|X) - eta * log p(Y|X_null)`` with the null prompt
   "can you generate an image ?", (c) the reverse ``log p(X|Y)``. The null scores do not depend on
   the prompt: they are computed once per gallery and cached.
2. **Forward beam search** over the trie with per-step PMI: every beam is a gallery image; the
   search stops once every beam's trie path is unique, completes the beams along the trie and
   rescores them (:func:`constrained_beam_search`). Its cost is bounded by L steps of
   ``num_beams`` rows whatever the gallery size; a larger gallery only needs a few more steps
   before the paths are unique.
3. **Reverse re-ranking** of the best beams by ``log p(X|Y)``.

Shapes: a gallery of N images with L tokens each; prompts are lists of Q strings; full-ranking
scores are FloatTensor [Q, N]; a ranking is a LongTensor of gallery indices, best first, in which
images with identical token sequences are adjacent (they are the same answer to the model).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..decoding.beam_search import BeamSearchResult, CausalLMScorer, constrained_beam_search, pmi_scorer
from ..decoding.trie import TensorTrie
from ..errors import TigerError

PROXIES = ("forward", "pmi", "reverse")


@dataclass
class Retrieval:
    """One prompt's answer: gallery indices best first, their scores, and how the search went."""

    prompt: str
    ranking: torch.Tensor  # [R] gallery indices (duplicates of a sequence adjacent)
    scores: torch.Tensor  # [R] the score each index was ranked by (re-ranked head: log p(X|Y))
    search: BeamSearchResult | None = None
    reranked: int = 0  # how many leading candidates (distinct sequences) were re-ranked by log p(X|Y)
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)


class TIGeR:
    """Generative retrieval over one gallery with a :class:`UnifiedLMM` (``lmm``)."""

    def __init__(self, lmm, codes):
        self.lmm = lmm
        self.codes = lmm.check_codes(codes)
        if len(self.codes) == 0:
            raise TigerError("the gallery is empty: pass the codes of at least one image")
        self.token_ids = lmm.image_token_ids(self.codes)
        self.trie = TensorTrie.build(self.token_ids, vocab_size=lmm.vocab_size)
        self._null: torch.Tensor | None = None

    @classmethod
    def from_images(cls, lmm, visual_tokenizer, images) -> "TIGeR":
        """Tokenize the gallery images with the visual tokenizer the LMM was trained with."""
        return cls(lmm, visual_tokenizer.encode(images))

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def num_duplicates(self) -> int:
        """Gallery images whose token sequence another image also has (beyond the first)."""
        return len(self.codes) - self.trie.num_leaves

    # -- 1. proxies, full ranking -----------------------------------------------------------------
    def null_scores(self) -> torch.Tensor:
        """log p(Y | null prompt) for every gallery image [N], computed once and cached."""
        if self._null is None:
            self._null = self.lmm.logp_image_null(self.codes)
        return self._null

    def forward_scores(self, prompts: list[str]) -> torch.Tensor:
        """log p(Y | X) for every prompt and gallery image: [Q, N] (Q x N full sequences: slow)."""
        prompts = _check_prompts(prompts)
        n = len(self.codes)
        rows = [self.lmm.logp_image_given_text([p] * n, self.codes) for p in prompts]
        return torch.stack(rows) if rows else torch.zeros(0, n)

    def reverse_scores(self, prompts: list[str]) -> torch.Tensor:
        """log p(X | Y) for every prompt and gallery image: [Q, N] (image prefixes run once)."""
        return self.lmm.logp_text_given_image_matrix(self.codes, _check_prompts(prompts)).T

    def proxy_scores(self, prompts: list[str], proxy: str = "pmi", eta: float = 1.0, forward: torch.Tensor | None = None) -> torch.Tensor:
        """Full-ranking scores [Q, N] under one proxy; pass ``forward`` to reuse computed log p(Y|X)."""
        if proxy not in PROXIES:
            raise TigerError(f"unknown proxy {proxy!r}: use one of {PROXIES}")
        if proxy == "reverse":
            return self.reverse_scores(prompts)
        fwd = self.forward_scores(prompts) if forward is None else forward
        return fwd if proxy == "forward" else fwd - float(eta) * self.null_scores()[None]

    # -- 2. forward beam search -------------------------------------------------------------------
    def search(self, prompt: str, num_beams: int = 100, eta: float = 1.0, early_stop: bool = True) -> BeamSearchResult:
        """Trie-constrained beam search for one prompt, scored by per-step PMI (``eta=0``: raw
        log p(Y|X)). ``num_beams`` above the number of distinct sequences is capped to it."""
        prompt = _check_prompts([prompt])[0]
        ids = self.lmm.prompt_ids(prompt)
        model = self.lmm.model
        scorer = pmi_scorer(model, ids, self.lmm.null_prompt_ids(), eta) if eta else CausalLMScorer(model, ids)
        return constrained_beam_search(scorer, self.trie, num_beams, early_stop_unique=early_stop)

    # -- 3. retrieval = search + reverse re-ranking -----------------------------------------------
    def retrieve(self, prompt: str, num_beams: int = 100, eta: float = 1.0, rerank: int | None = None, early_stop: bool = True) -> Retrieval:
        """Forward beam search, then the best ``rerank`` candidates (distinct token sequences;
        None: all the beams reached, as in the paper; 0: none) re-ranked by log p(X|Y). Returns
        every image the beams reached, best first; images sharing a sequence move together."""
        t0 = time.perf_counter()
        res = self.search(prompt, num_beams=num_beams, eta=eta, early_stop=early_stop)
        t1 = time.perf_counter()
        groups, group_scores = list(res.item_ids), res.scores.cpu()
        k = len(groups) if rerank is None else min(_check_rerank(rerank), len(groups))
        if k > 0:
            rev = self.lmm.logp_text_given_image(self.codes[torch.stack([g[0] for g in groups[:k]])], [prompt] * k)
            order = torch.argsort(rev, descending=True, stable=True).tolist()
            groups = [groups[i] for i in order] + groups[k:]
            group_scores = torch.cat([rev[order], group_scores[k:]])
        ranking = torch.cat(groups) if groups else torch.zeros(0, dtype=torch.long)
        scores = torch.repeat_interleave(group_scores, torch.tensor([len(g) for g in groups], dtype=torch.long)) if groups else torch.zeros(0)
        t2 = time.perf_counter()
        return Retrieval(prompt, ranking, scores, res, k, t2 - t0, {"search": t1 - t0, "rerank": t2 - t1})

    def top_k(self, prompts: list[str], k: int = 5, num_beams: int = 100, eta: float = 1.0, rerank: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`retrieve` per prompt, as ``DenseRetriever.search`` returns it: top-k indices and
        scores [Q, k] (fewer than k found: index -1, score -inf)."""
        idx, val = np.full((len(prompts), k), -1), np.full((len(prompts), k), -np.inf, dtype=np.float32)
        for i, p in enumerate(_check_prompts(prompts)):
            r = self.retrieve(p, num_beams=num_beams, eta=eta, rerank=rerank)
            n = min(k, len(r.ranking))
            idx[i, :n], val[i, :n] = r.ranking[:n].numpy(), r.scores[:n].numpy()
        return idx, val


def _check_rerank(rerank) -> int:
    if int(rerank) < 0:
        raise TigerError(f"rerank={rerank}: pass how many candidates to re-rank (0: none, None: all)")
    return int(rerank)


def _check_prompts(prompts) -> list[str]:
    if isinstance(prompts, str):
        raise TigerError("pass a list of prompts, not a single string")
    return ["" if p is None else str(p) for p in prompts]


def recall_of_rankings(rankings: list[torch.Tensor], hits: list, ks=(1, 5, 10)) -> dict[int, float]:
    """R@k of ranked gallery indices: a hit among the first k (a ranking shorter than k, as from
    a small beam, simply has fewer chances)."""
    out = {}
    for k in ks:
        found = [bool(set(r[:k].tolist()) & set(map(int, h))) for r, h in zip(rankings, hits)]
        out[k] = round(sum(found) / max(1, len(found)), 4)
    return out
