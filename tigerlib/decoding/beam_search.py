"""Beam search over image identifiers, constrained by a :class:`TensorTrie`.

Two ways in:

- :class:`TrieLogitsProcessor` plugs the trie into Hugging Face ``model.generate(num_beams=k)``
  for any causal LM (a vectorized replacement for ``prefix_allowed_tokens_fn``).
- :func:`constrained_beam_search` is the library's own search. It asks a *scorer* for
  next-token log-probabilities, keeps at most ``num_beams`` hypotheses, and stops expanding as
  soon as every beam's path leads to a single identifier; the rest of each identifier is then
  read off the trie and scored in one teacher-forced pass, so final scores are still
  full-sequence log-probabilities.

Scores are sums of the model's raw log-probabilities over the identifier tokens (the trie only
removes tokens; it does not renormalize), exactly what exhaustive scoring of each gallery
identifier would give.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from transformers import LogitsProcessor

from ..errors import TigerError
from .trie import TensorTrie


# ---------------------------------------------------------------------------- HF generate
class TrieLogitsProcessor(LogitsProcessor):
    """Mask next-token scores to the trie inside ``model.generate``.

    Use ``model.generate(input_ids, num_beams=k, max_new_tokens=trie.depth,
    logits_processor=LogitsProcessorList([TrieLogitsProcessor(trie, input_ids.shape[1])]))``.

    ``prompt_length`` is the (padded) prompt length of ``input_ids``: the generated identifier
    is ``input_ids[:, prompt_length:]`` (for encoder-decoder models, the decoder input, usually
    1 for the start token). Each call walks every row's generated suffix down the trie with one
    vectorized :meth:`TensorTrie.step` per position, so no per-beam Python and no state to keep
    in sync with HF's beam reordering.

    Finished beams and EOS: HF removes a beam from the running set once it emits an EOS token
    or reaches ``max_length``, so rows seen here are unfinished. For fixed-length identifiers
    use ``max_new_tokens=trie.depth`` and every beam ends exactly at a leaf. For
    variable-length identifiers build the trie with ``end_token=eos_token_id``: the end token
    is then the only way out of a complete identifier and HF finishes the beam on it. A row
    standing on a leaf, or off the trie (a -inf candidate HF kept to fill its 2*k pool), has no
    allowed token; with ``eos_token_id`` given that row may emit only EOS (with the model's
    score), which finishes it; without, all its scores are -inf (HF's own processor raises in
    that case instead).
    """

    def __init__(self, trie: TensorTrie, prompt_length: int, eos_token_id: int | None = None):
        self.trie, self.prompt_length, self.eos_token_id = trie, int(prompt_length), eos_token_id

    def nodes(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Trie node of every row's generated suffix (-1 where it left the trie)."""
        nodes = torch.zeros(len(input_ids), dtype=torch.long, device=self.trie.device)
        for col in range(self.prompt_length, input_ids.shape[1]):
            nodes = self.trie.step(nodes, input_ids[:, col].to(self.trie.device))
        return nodes

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        nodes = self.nodes(input_ids)
        out = self.trie.mask_logits(scores, nodes)
        if self.eos_token_id is not None:
            stuck = (self.trie.degree(nodes) == 0).to(scores.device)
            out[stuck, self.eos_token_id] = scores[stuck, self.eos_token_id]
        return out


# ---------------------------------------------------------------------------- scorers
class Scorer:
    """What :func:`constrained_beam_search` needs from a model. Subclass and implement
    :meth:`start` and :meth:`step`; :meth:`score_continuation` has a default.

    Rows are beams. The scorer keeps its own state (e.g. a KV cache) for the current rows and
    reorders it with ``beam_origin``: new row ``b`` continues old row ``beam_origin[b]``.
    """

    def start(self, num_beams: int) -> torch.Tensor:
        """Read the prompt; return log-probs [1, V] of the first identifier token.
        ``num_beams`` is the most rows later steps will have."""
        raise NotImplementedError

    def step(self, last_tokens: torch.Tensor, beam_origin: torch.Tensor) -> torch.Tensor:
        """Append ``last_tokens[b]`` to old row ``beam_origin[b]``; return log-probs [B, V] of the next token."""
        raise NotImplementedError

    def score_continuation(self, last_tokens: torch.Tensor, beam_origin: torch.Tensor,
                           continuation: torch.Tensor) -> torch.Tensor:
        """Like :meth:`step`, then force ``continuation`` [B, m] (padded with -1): return the
        log-prob of each continuation token [B, m] (0 at padding). Ends the scorer's use for
        this search. Default: one :meth:`step` per position."""
        out, tokens, origin = [], last_tokens, beam_origin
        for col in range(continuation.shape[1]):
            logprobs = self.step(tokens, origin)
            target = continuation[:, col].to(logprobs.device)
            picked = logprobs.gather(1, target.clamp(min=0)[:, None]).squeeze(1)
            out.append(torch.where(target >= 0, picked, torch.zeros_like(picked)))
            tokens, origin = target.clamp(min=0), torch.arange(len(target), device=target.device)
        if not out:
            return torch.zeros(len(last_tokens), 0)
        return torch.stack(out, 1)


class CausalLMScorer(Scorer):
    """Scores with a Hugging Face causal LM given a prompt, keeping a ``DynamicCache``.

    ``step`` reorders the cache with ``cache.reorder_cache(beam_origin)`` (an ``index_select``
    on the batch dim of every layer, which also grows 1 row to many) and runs one token.
    ``score_continuation`` runs all forced tokens in one forward (in position chunks so that the
    [B, m, vocab] logits stay under ``max_logits_bytes``). The model is used as is: call
    ``model.eval()`` first if it has dropout.
    """

    def __init__(self, model: torch.nn.Module, prompt_ids: torch.Tensor | Sequence[int],
                 max_logits_bytes: int = 256 * 2**20):
        prompt = torch.as_tensor(prompt_ids, dtype=torch.long).reshape(1, -1)
        if prompt.shape[1] == 0:
            raise TigerError("CausalLMScorer needs a non-empty prompt: pass at least one token (e.g. the BOS id)")
        self.model, self.max_logits_bytes = model, int(max_logits_bytes)
        self.device = next(model.parameters()).device
        self.prompt = prompt.to(self.device)
        self.cache = None

    @torch.no_grad()
    def start(self, num_beams: int) -> torch.Tensor:
        out = self.model(input_ids=self.prompt, use_cache=True, logits_to_keep=1)
        self.cache = out.cache
        return F.log_softmax(out.logits[:, -1].float(), dim=-1)

    def _reorder(self, beam_origin: torch.Tensor) -> None:
        if self.cache is None:
            raise TigerError("CausalLMScorer.step() before start(): call start(num_beams) first")
        self.cache.reorder_cache(beam_origin.to(self.device))

    @torch.no_grad()
    def step(self, last_tokens: torch.Tensor, beam_origin: torch.Tensor) -> torch.Tensor:
        self._reorder(beam_origin)
        out = self.model(input_ids=last_tokens.to(self.device)[:, None], cache=self.cache, use_cache=True)
        return F.log_softmax(out.logits[:, -1].float(), dim=-1)

    @torch.no_grad()
    def score_continuation(self, last_tokens: torch.Tensor, beam_origin: torch.Tensor,
                           continuation: torch.Tensor) -> torch.Tensor:
        continuation = continuation.to(self.device)
        targets = continuation.clamp(min=0)
        inputs = torch.cat([last_tokens.to(self.device)[:, None], targets[:, :-1]], dim=1)
        self._reorder(beam_origin)
        vocab = self.model.config.get_text_config().vocab_size
        chunk = max(1, self.max_logits_bytes // max(1, 4 * len(inputs) * vocab))
        parts = []
        for col in range(0, inputs.shape[1], chunk):
            out = self.model(input_ids=inputs[:, col:col + chunk], cache=self.cache, use_cache=True)
            logprobs = F.log_softmax(out.logits.float(), dim=-1)
            parts.append(logprobs.gather(2, targets[:, col:col + chunk, None]).squeeze(2))
        return torch.cat(parts, 1).masked_fill(continuation < 0, 0.0)


class CombinedScorer(Scorer):
    """Weighted sum of scorers: ``sum_i weights[i] * logp_i``, step by step.

    PMI re-ranking (penalize identifiers the model likes whatever the prompt):
    ``CombinedScorer([cond, null], [1.0, -eta])`` scores ``logp(y_t|x, y<t) - eta * logp(y_t|null, y<t)``;
    see :func:`pmi_scorer`. All scorers see the same beams and reorder in step.
    """

    def __init__(self, scorers: Sequence[Scorer], weights: Sequence[float]):
        if len(scorers) == 0 or len(scorers) != len(weights):
            raise TigerError(f"CombinedScorer got {len(scorers)} scorers and {len(weights)} weights: pass one weight per scorer")
        self.scorers, self.weights = list(scorers), [float(w) for w in weights]

    def _mix(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        total = self.weights[0] * outputs[0].float()
        for w, out in zip(self.weights[1:], outputs[1:]):
            total = total + w * out.float().to(total.device)
        return total

    def start(self, num_beams: int) -> torch.Tensor:
        return self._mix([s.start(num_beams) for s in self.scorers])

    def step(self, last_tokens: torch.Tensor, beam_origin: torch.Tensor) -> torch.Tensor:
        return self._mix([s.step(last_tokens, beam_origin) for s in self.scorers])

    def score_continuation(self, last_tokens: torch.Tensor, beam_origin: torch.Tensor,
                           continuation: torch.Tensor) -> torch.Tensor:
        return self._mix([s.score_continuation(last_tokens, beam_origin, continuation) for s in self.scorers])


def pmi_scorer(model: torch.nn.Module, prompt_ids: torch.Tensor | Sequence[int],
               null_prompt_ids: torch.Tensor | Sequence[int], eta: float = 1.0) -> CombinedScorer:
    """``logp(y|x) - eta * logp(y|null prompt)`` from one causal LM and two prompts."""
    return CombinedScorer([CausalLMScorer(model, prompt_ids), CausalLMScorer(model, null_prompt_ids)], [1.0, -eta])


# ---------------------------------------------------------------------------- own beam search
@dataclass
class BeamSearchResult:
    """Ranked identifiers, best first. Row ``r`` is one distinct trie leaf (or, for partial
    rows, one prefix) with all the items that share it."""

    item_ids: list[torch.Tensor]  # items of each row (several when identifiers collide)
    sequences: torch.Tensor  # [R, depth] identifier tokens, padded with -1
    scores: torch.Tensor  # [R] full-sequence scores (prefix scores for partial rows)
    nodes: torch.Tensor  # [R] trie leaf (or, for partial rows, the prefix node)
    complete: torch.Tensor  # [R] bool: False for partial prefixes kept with complete_partial=False
    num_beams: int  # beams actually used (capped at the number of identifiers)
    beams_per_step: list[int] = field(default_factory=list)  # unfinished beams after each step
    finished_per_step: list[int] = field(default_factory=list)  # finished hypotheses kept after each step
    stopped_early_at: int | None = None  # step after which all paths were unique (None: did not stop early)

    def ranked_items(self) -> torch.Tensor:
        """All item ids in rank order (items sharing an identifier are adjacent)."""
        if not self.item_ids:
            return torch.zeros(0, dtype=torch.long)
        return torch.cat([ids.cpu() for ids in self.item_ids])


def _pad_to(seqs: torch.Tensor, width: int) -> torch.Tensor:
    return F.pad(seqs, (0, width - seqs.shape[1]), value=-1)


@torch.no_grad()
def constrained_beam_search(scorer: Scorer, trie: TensorTrie, num_beams: int, max_steps: int | None = None,
                            early_stop_unique: bool = True, complete_partial: bool = True) -> BeamSearchResult:
    """Beam search over the trie's identifiers for one prompt (the scorer holds the prompt).

    Each step scores all ``V`` next tokens of every live beam, masks them to the trie, and keeps
    the best ``num_beams`` among these expansions and the already finished identifiers. A beam
    whose node is a leaf is finished.

    - ``num_beams`` larger than the number of distinct identifiers is capped to it (then the
      search is exhaustive and returns every identifier with its exact score).
    - ``early_stop_unique``: once every live beam's path has a single leaf below it, stop
      expanding: no ranking decision is left, only the scores of the remaining tokens.
    - ``complete_partial``: beams still partial at the end (early stop, or ``max_steps`` below
      the trie depth) are completed along the trie to every leaf below them and rescored with
      ``scorer.score_continuation`` in one pass, so their scores are full-sequence scores.
      With ``False`` they are returned as prefixes (``complete=False``, prefix score, all items
      below the prefix).
    """
    if num_beams < 1:
        raise TigerError(f"num_beams must be >= 1, got {num_beams}")
    beams = min(int(num_beams), trie.num_leaves)
    max_steps = trie.depth if max_steps is None else min(int(max_steps), trie.depth)
    if max_steps < 1:
        raise TigerError(f"max_steps must be >= 1, got {max_steps}")
    dev, depth = trie.device, trie.depth
    long = dict(dtype=torch.long, device=dev)

    nodes, scores, seqs = torch.zeros(1, **long), torch.zeros(1, device=dev), torch.zeros(1, 0, **long)
    fin_seqs, fin_scores, fin_nodes = torch.zeros(0, depth, **long), torch.zeros(0, device=dev), torch.zeros(0, **long)
    tok = origin = None
    beams_per_step, finished_per_step, stopped_early_at = [], [], None
    logprobs = scorer.start(beams)
    for t in range(max_steps):
        if t > 0:
            logprobs = scorer.step(tok, origin)
        masked = trie.mask_logits(logprobs.to(dev).float(), nodes)
        width = masked.shape[1]
        expansions = (scores[:, None] + masked).flatten()
        pool = torch.cat([expansions, fin_scores])
        k = min(beams, int(torch.isfinite(pool).sum()))
        if k == 0:  # every allowed token scored -inf: nothing can be extended
            nodes = nodes[:0]
            break
        top_scores, top = pool.topk(k)
        carried = top >= len(expansions)
        kept = top[carried] - len(expansions)
        fin_seqs, fin_scores, fin_nodes = fin_seqs[kept], top_scores[carried], fin_nodes[kept]
        picked = top[~carried]
        origin, tok = picked // width, picked % width
        nodes, scores = trie.step(nodes[origin], tok), top_scores[~carried]
        seqs = torch.cat([seqs[origin], tok[:, None]], dim=1)
        done = trie.is_leaf(nodes)
        if bool(done.any()):
            fin_seqs = torch.cat([fin_seqs, _pad_to(seqs[done], depth)])
            fin_scores, fin_nodes = torch.cat([fin_scores, scores[done]]), torch.cat([fin_nodes, nodes[done]])
            live = ~done
            nodes, scores, seqs, origin, tok = nodes[live], scores[live], seqs[live], origin[live], tok[live]
        beams_per_step.append(len(nodes))
        finished_per_step.append(len(fin_nodes))
        if len(nodes) == 0:
            break
        if early_stop_unique and t + 1 < max_steps and bool((trie.num_leaves_below(nodes) == 1).all()):
            stopped_early_at = t + 1
            break

    # Beams still partial here have chosen `tok` but the scorer has not seen it yet.
    out_seqs, out_scores, out_nodes = [fin_seqs], [fin_scores], [fin_nodes]
    out_complete = [torch.ones(len(fin_nodes), dtype=torch.bool, device=dev)]
    if len(nodes) and complete_partial:
        row, cont, leaf = _completions(trie, nodes, seqs.shape[1])
        cont_scores = scorer.score_continuation(tok[row], origin[row], cont).to(dev).float()
        out_seqs.append(_pad_to(torch.cat([seqs[row], cont], dim=1), depth))
        out_scores.append(scores[row] + cont_scores.sum(1))
        out_nodes.append(leaf)
        out_complete.append(torch.ones(len(row), dtype=torch.bool, device=dev))
    elif len(nodes):
        out_seqs.append(_pad_to(seqs, depth))
        out_scores.append(scores)
        out_nodes.append(nodes)
        out_complete.append(torch.zeros(len(nodes), dtype=torch.bool, device=dev))

    all_scores = torch.cat(out_scores)
    order = torch.argsort(all_scores, descending=True, stable=True)
    all_nodes, all_complete = torch.cat(out_nodes)[order], torch.cat(out_complete)[order]
    leaf_items = iter(trie.items_at(all_nodes[all_complete]))
    items = [next(leaf_items) if c else trie.items_under(n) for n, c in zip(all_nodes.tolist(), all_complete.tolist())]
    return BeamSearchResult(item_ids=items, sequences=torch.cat(out_seqs)[order], scores=all_scores[order],
                            nodes=all_nodes, complete=all_complete, num_beams=beams,
                            beams_per_step=beams_per_step, finished_per_step=finished_per_step,
                            stopped_early_at=stopped_early_at)


def _completions(trie: TensorTrie, nodes: torch.Tensor, prefix_len: int):
    """Every leaf below each partial beam: (beam row, remaining tokens [R, depth - prefix_len]
    padded -1, leaf node). Unique paths are followed vectorized; others are enumerated."""
    width = trie.depth - prefix_len
    unique = trie.num_leaves_below(nodes) == 1
    rows = [torch.nonzero(unique).squeeze(1)]
    tokens, leaf = trie.follow_first(nodes[rows[0]])
    conts, leaves = [_pad_to(tokens, width)], [leaf]
    for b in torch.nonzero(~unique).squeeze(1).tolist():
        below = trie.leaves_below(int(nodes[b]))
        rows.append(torch.full((len(below),), b, dtype=torch.long, device=trie.device))
        conts.append(trie.paths(below)[:, prefix_len:])
        leaves.append(below)
    return torch.cat(rows), torch.cat(conts), torch.cat(leaves)
