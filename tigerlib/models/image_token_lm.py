"""What every LMM over discrete image tokens offers TIGeR and GRACE, whatever its architecture.

A subclass provides ``.model`` (a causal LM: ``model(input_ids=..., ...)`` returns ``.logits``
[n, T, V] and a KV cache), where image code ``c`` is token id ``image_offset + c``, plus
``prompt_ids(text)``, ``null_prompt_ids()`` and ``logp_text_given_image``. This base class turns
them into batched likelihoods and sampling:

- ``logp_image_given_text(texts, codes)``, ``logp_image_null(codes)``: summed log-probabilities of
  the L image tokens, FloatTensor [n]. Batches are right-padded: in a causal model no real token
  attends to a later pad, so batched scores equal unbatched ones.
- ``sample_images(texts, top_p, seed)``: codes LongTensor [n, L] by nucleus sampling over the image
  tokens only (incremental decoding with a KV cache, left-padded prompts).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import TigerError
from .visual_tokenizer import check_codes
from .vocabulary import known_word_shares


def pad_right(seqs: list[list[int]], pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """[n, T] ids padded with ``pad``, and the bool mask of real tokens."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return ids, ids.new_tensor([[j < len(s) for j in range(width)] for s in seqs], dtype=torch.bool)


class ImageTokenLM:
    model: torch.nn.Module
    device: torch.device
    codebook_size: int
    tokens_per_image: int
    image_offset: int  # token id of image code 0
    vocab_size: int  # width of the model's logits
    pad_id: int = 0
    vocabulary: set[str] | None = None  # words seen in training (mini); None: pretrained, any word counts

    @property
    def image_ids(self) -> torch.Tensor:
        return torch.arange(self.image_offset, self.image_offset + self.codebook_size)

    def known_word_share(self, texts) -> list[float]:
        """Per text, the share of its words the model knows (see ``vocabulary.py``)."""
        return known_word_shares(texts, self.vocabulary)

    # -- token ids ------------------------------------------------------------------------------
    def check_codes(self, codes) -> torch.Tensor:
        return check_codes(codes, self.tokens_per_image, self.codebook_size).cpu()

    def image_token_ids(self, codes) -> torch.Tensor:
        """Visual codes [n, L] -> the model's token ids [n, L]."""
        return self.check_codes(codes) + self.image_offset

    def codes_from_token_ids(self, ids) -> torch.Tensor:
        """Image-token ids [n, L] -> visual codes [n, L] (any other token raises)."""
        ids = torch.as_tensor(ids).long()
        lo, hi = self.image_offset, self.image_offset + self.codebook_size
        if ids.numel() and (ids.min() < lo or ids.max() >= hi):
            raise TigerError(f"not image tokens: ids must lie in [{lo}, {hi})")
        return self.check_codes(ids - lo)

    def prompt_ids(self, text: str) -> torch.Tensor:
        raise NotImplementedError

    def null_prompt_ids(self) -> torch.Tensor:
        raise NotImplementedError

    # -- likelihoods ----------------------------------------------------------------------------
    @torch.no_grad()
    def _score(self, prefixes: list[list[int]], continuations: list[list[int]], batch_size: int = 64) -> torch.Tensor:
        """Sum of log p(continuation | prefix) per row: FloatTensor [n]."""
        out = []
        for lo in range(0, len(prefixes), batch_size):
            pre, cont = prefixes[lo : lo + batch_size], continuations[lo : lo + batch_size]
            ids, real = pad_right([p + c for p, c in zip(pre, cont)], self.pad_id)
            logits = self.model(input_ids=ids.to(self.device)).logits[:, :-1].float()
            # prefix tokens may lie outside the logits (Janus' text ids); they are never scored
            target = ids[:, 1:].clamp(max=logits.shape[-1] - 1)
            logp = F.log_softmax(logits, -1).gather(2, target[:, :, None].to(self.device)).squeeze(2).cpu()
            start = torch.tensor([len(p) - 1 for p in pre])[:, None]
            pos = torch.arange(ids.shape[1] - 1)[None]
            out.append((logp * ((pos >= start) & real[:, 1:])).sum(1))
        return torch.cat(out) if out else torch.zeros(0)

    def image_continuation(self, codes) -> list[list[int]]:
        """The tokens scored after a generation prompt (the image tokens; subclasses may add an end token)."""
        return self.image_token_ids(codes).tolist()

    def logp_image_given_text(self, texts: list[str], codes) -> torch.Tensor:
        """log p(image tokens | generation prompt(text_i)) summed over the image tokens: [n]."""
        if isinstance(texts, str):
            raise TigerError("pass a list of texts, not a single string")
        ids = self.image_continuation(codes)
        if len(ids) != len(texts):
            raise TigerError(f"got {len(texts)} texts for {len(ids)} images: pass one text per image")
        return self._score([self.prompt_ids(t).tolist() for t in texts] if texts else [], ids)

    def logp_image_null(self, codes) -> torch.Tensor:
        """log p(image tokens | null prompt) summed over the image tokens: [n]."""
        ids = self.image_continuation(codes)
        return self._score([self.null_prompt_ids().tolist()] * len(ids), ids)

    def logp_text_given_image(self, codes, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError

    def logp_text_given_image_matrix(self, codes, texts: list[str]) -> torch.Tensor:
        """log p(text_j | image_i) for every pair: [n_images, n_texts] (one row at a time here;
        subclasses share the image prefix's KV cache)."""
        codes = self.check_codes(codes)
        rows = [self.logp_text_given_image(codes[i : i + 1].expand(len(texts), -1), list(texts)) for i in range(len(codes))]
        return torch.stack(rows) if rows else torch.zeros(0, len(texts))

    # -- generation -----------------------------------------------------------------------------
    @torch.no_grad()
    def _decode_loop(self, prompts: list[list[int]], steps: int, allowed: torch.Tensor, pick) -> torch.Tensor:
        """Left-padded incremental decoding with a KV cache; ``pick(logits [n, |allowed|])`` returns
        indices into ``allowed``. Returns the chosen token ids [n, steps]."""
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros(len(prompts), width, dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, width - len(p) :], mask[i, width - len(p) :] = torch.tensor(p), 1
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        allowed = allowed.to(self.device)
        out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device), position_ids=pos.to(self.device), use_cache=True, logits_to_keep=1)
        cache, nxt = out.cache, pos[:, -1:] + 1
        chosen = []
        for t in range(steps):
            tok = allowed[pick(out.logits[:, -1, allowed].float())]
            chosen.append(tok.cpu())
            if t + 1 == steps:
                break
            mask = torch.cat([mask, torch.ones(len(mask), 1, dtype=torch.long)], 1)
            out = self.model(input_ids=tok[:, None], attention_mask=mask.to(self.device), position_ids=nxt.to(self.device), cache=cache, use_cache=True)
            nxt = nxt + 1
        return torch.stack(chosen, 1)

    def sample_images(self, texts: list[str], top_p: float = 0.5, temperature: float = 1.0, seed: int = 0, batch_size: int = 256) -> torch.Tensor:
        """Sample image tokens for each prompt (nucleus sampling over image tokens only):
        codes LongTensor [n, L]. The same texts and seed give exactly the same codes."""
        if not 0 < top_p <= 1 or temperature <= 0:
            raise TigerError(f"need 0 < top_p <= 1 and temperature > 0, got top_p={top_p}, temperature={temperature}")
        if isinstance(texts, str):
            raise TigerError("pass a list of texts, not a single string")
        gen = torch.Generator().manual_seed(int(seed))

        def pick(logits):
            probs = F.softmax(logits / temperature, -1).cpu()
            sorted_p, order = probs.sort(-1, descending=True)
            keep = (sorted_p.cumsum(-1) - sorted_p) < top_p  # the smallest set reaching top_p
            sorted_p = sorted_p * keep
            choice = torch.multinomial(sorted_p / sorted_p.sum(-1, keepdim=True), 1, generator=gen).squeeze(1)
            return order.gather(1, choice[:, None]).squeeze(1).to(self.device)

        out = [self._decode_loop([self.prompt_ids(t).tolist() for t in texts[i : i + batch_size]], self.tokens_per_image, self.image_ids, pick) for i in range(0, len(texts), batch_size)]
        return torch.cat(out) - self.image_offset if out else torch.zeros(0, self.tokens_per_image, dtype=torch.long)
