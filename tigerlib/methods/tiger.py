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

TIGeR is a :class:`~tigerlib.methods.retriever.Retriever`: ``retrieve(prompt)`` gives a
:class:`TIGeRRanking` (gallery indices best first; images with identical token sequences are
adjacent, they are the same answer to the model), with the beam search inside for teaching.

Shapes: a gallery of N images with L tokens each; a prompt is a string and a batch a list of Q
strings; full-ranking scores are FloatTensor [N] for one prompt and [Q, N] for a list.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..decoding.beam_search import BeamSearchResult, CausalLMScorer, constrained_beam_search, pmi_scorer
from ..decoding.trie import TensorTrie
from ..errors import TigerError
from .retriever import Ranking, Retriever, check_prompts

PROXIES = ("forward", "pmi", "reverse")


@dataclass
class TIGeRRanking(Ranking):
    """A :class:`Ranking` with how TIGeR found it. ``scores`` are on one scale, ``score_name``:
    ``reverse`` (log p(X|Y)) when candidates were re-ranked, ``pmi`` when none were (rerank=0).
    With a partial re-rank, the candidates below the re-ranked ones have score -inf on the reverse
    scale and keep their search order; ``pmi`` holds every candidate's beam-search score."""

    search: BeamSearchResult | None = None
    pmi: torch.Tensor | None = None  # [R] the forward (PMI) score of every returned index
    reranked: int = 0  # how many leading candidates (distinct sequences) were re-ranked by log p(X|Y)
    timings: dict = field(default_factory=dict)

    @property
    def ranking(self) -> torch.Tensor:
        """The gallery indices (an alias of ``indices``)."""
        return self.indices


class TIGeR(Retriever):
    """Generative retrieval over one gallery with a :class:`UnifiedLMM` (``lmm``)."""

    score_name = "reverse"

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

    def forward_scores(self, prompts) -> torch.Tensor:
        """log p(Y | X) for every gallery image: [N] or [Q, N] (Q x N full sequences: slow)."""
        texts, single = check_prompts(prompts)
        n = len(self.codes)
        rows = [self.lmm.logp_image_given_text([p] * n, self.codes) for p in texts]
        out = torch.stack(rows) if rows else torch.zeros(0, n)
        return out[0] if single else out

    def reverse_scores(self, prompts) -> torch.Tensor:
        """log p(X | Y) for every gallery image: [N] or [Q, N] (image prefixes run once)."""
        texts, single = check_prompts(prompts)
        out = self.lmm.logp_text_given_image_matrix(self.codes, texts).T
        return out[0] if single else out

    def proxy_scores(self, prompts, proxy: str = "pmi", eta: float = 1.0, forward: torch.Tensor | None = None) -> torch.Tensor:
        """Full-ranking scores ([N] or [Q, N]) under one proxy; pass ``forward`` to reuse computed log p(Y|X)."""
        if proxy not in PROXIES:
            raise TigerError(f"unknown proxy {proxy!r}: use one of {PROXIES}")
        if proxy == "reverse":
            return self.reverse_scores(prompts)
        fwd = self.forward_scores(prompts) if forward is None else forward
        return fwd if proxy == "forward" else fwd - float(eta) * self.null_scores()

    # -- 2. forward beam search -------------------------------------------------------------------
    def search(self, prompts, num_beams: int = 100, eta: float = 1.0, early_stop: bool = True):
        """Trie-constrained beam search scored by per-step PMI (``eta=0``: raw log p(Y|X)): a
        :class:`BeamSearchResult` for one prompt, a list for a list. ``num_beams`` above the
        number of distinct sequences is capped to it."""
        texts, single = check_prompts(prompts)
        out = []
        for prompt in texts:
            ids = self.lmm.prompt_ids(prompt)
            model = self.lmm.model
            scorer = pmi_scorer(model, ids, self.lmm.null_prompt_ids(), eta) if eta else CausalLMScorer(model, ids)
            out.append(constrained_beam_search(scorer, self.trie, num_beams, early_stop_unique=early_stop))
        return out[0] if single else out

    # -- 3. retrieval = search + reverse re-ranking -----------------------------------------------
    def _retrieve(self, prompts: list[str], k: int | None, num_beams: int = 100, eta: float = 1.0, rerank: int | None = None, early_stop: bool = True) -> list[TIGeRRanking]:
        """Per prompt: forward beam search, then the best ``rerank`` candidates (distinct token
        sequences; None: all the beams reached, as in the paper; 0: none) re-ranked by log p(X|Y).
        Every image the beams reached is returned (or the first ``k``); images sharing a
        sequence move together."""
        if rerank is not None and int(rerank) < 0:
            raise TigerError(f"rerank={rerank}: pass how many candidates to re-rank (0: none, None: all)")
        known = self.lmm.known_word_share(prompts)
        return [self._retrieve_one(p, k, num_beams, eta, rerank, early_stop, share) for p, share in zip(prompts, known)]

    def _retrieve_one(self, prompt, k, num_beams, eta, rerank, early_stop, known) -> TIGeRRanking:
        t0 = time.perf_counter()
        res = self.search(prompt, num_beams=num_beams, eta=eta, early_stop=early_stop)
        t1 = time.perf_counter()
        groups, pmi = list(res.item_ids), res.scores.cpu()
        n = len(groups) if rerank is None else min(int(rerank), len(groups))
        if n > 0:
            rev = self.lmm.logp_text_given_image(self.codes[torch.stack([g[0] for g in groups[:n]])], [prompt] * n)
            order = torch.argsort(rev, descending=True, stable=True).tolist()
            groups = [groups[i] for i in order] + groups[n:]
            pmi = torch.cat([pmi[order], pmi[n:]])
            scores = torch.cat([rev[order], torch.full((len(groups) - n,), -float("inf"))])
        else:
            scores = pmi
        sizes = torch.tensor([len(g) for g in groups], dtype=torch.long)
        indices = torch.cat(groups) if groups else torch.zeros(0, dtype=torch.long)
        scores, pmi = (torch.repeat_interleave(x, sizes) if groups else torch.zeros(0) for x in (scores, pmi))
        if k is not None:
            indices, scores, pmi = indices[:k], scores[:k], pmi[:k]
        t2 = time.perf_counter()
        return TIGeRRanking(prompt, indices, scores, "reverse" if n > 0 else "pmi", t2 - t0, known,
                            search=res, pmi=pmi, reranked=n, timings={"search": t1 - t0, "rerank": t2 - t1})
