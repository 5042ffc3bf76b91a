"""The unified LMM (the SEED-LLaMA role in TIGeR, the base model GRACE fine-tunes).

One transformers ``LlamaForCausalLM`` over one vocabulary: words, special tokens and one token per
visual code (see ``text_tokenizer.py``). Trained here on the mini world's train split in both
directions with instruction prompts:

- text -> image: ``<bos> generate an image of {caption} <boi> {image tokens} <eoi>`` (loss on
  the image tokens and ``<eoi>``); a share of them use the null prompt
  ``<bos> can you generate an image ? <boi> ...`` (caption dropout), so that log p(Y | null)
  is meaningful for TIGeR's PMI.
- image -> text: ``<bos> <boi> {image tokens} <eoi> describe the image . {caption} <eos>``
  (loss on the caption and ``<eos>``).

Shapes: ``codes`` are LongTensor [n, L] visual codes in [0, K) (L = 64, K = 512 in the mini
world); text arguments are lists of n strings. Scores are summed log-probabilities, FloatTensor [n].
Batches are right-padded with ``<pad>``: in a causal model no real token attends to a later pad,
so batched scores equal unbatched ones.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import info
from ..errors import TigerError
from .text_tokenizer import IMAGE_OFFSET, check_layout, load_text_tokenizer, save_text_tokenizer, train_text_tokenizer
from .training import Phases, fast_bf16, warmup_stable_decay
from .image_token_lm import ImageTokenLM, pad_right

PROMPT = "generate an image of"
NULL_PROMPT = "can you generate an image ?"
DESCRIBE = "describe the image ."
PAD, BOS, EOS, UNK, BOI, EOI = range(6)


@dataclass(frozen=True)
class LMMConfig:
    # 192 wide, 1500 steps at a stable rate (2.0M parameters): reverse top-1 0.885, CLIP-T gap 0.51,
    # TIGeR common R@1 0.73, in about half the build seconds of 256 wide x 2000 steps on a cosine (0.85, 0.54,
    # 0.63). 256 wide x 1000 steps at a stable rate fell short (0.72, 0.28, 0.37)
    hidden_size: int = 192
    layers: int = 4
    heads: int = 4
    intermediate_size: int = 512
    max_length: int = 112  # context: prompt + image tokens + caption
    codebook_size: int = 512  # must match the visual tokenizer
    tokens_per_image: int = 64
    # training
    steps: int = 1500
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.1
    warmup: int = 100
    decay: int = 450  # the last steps' cosine decay (warmup_stable_decay)
    i2t_share: float = 0.6  # share of image -> text sequences in a batch
    null_share: float = 0.1  # share of text -> image sequences with the null prompt
    entity_share: float = 0.4  # share of entity photos in a batch (uniform over the train split: ~0.09): memorizing entities needs repeats
    grad_clip: float = 1.0
    bf16: bool = True  # bf16 autocast while training where the hardware has it (CUDA, CPUs with AVX512-BF16/AMX)

    def llama_config(self, vocab_size: int):
        from transformers import LlamaConfig

        return LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
            max_position_embeddings=self.max_length,
            pad_token_id=PAD,
            bos_token_id=BOS,
            eos_token_id=EOS,
            tie_word_embeddings=False,  # safetensors refuses shared tensors
        )


TINY_LMM = LMMConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64, codebook_size=32, steps=4, batch_size=8, warmup=1)


class UnifiedLMM(ImageTokenLM):
    """A causal LM over text and image tokens with its tokenizer (``.model``, ``.tokenizer``)."""

    image_offset = IMAGE_OFFSET
    pad_id = PAD

    def __init__(self, model, tokenizer, config: LMMConfig, device="cpu"):
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.config = config
        self.device = torch.device(device)
        self.codebook_size = check_layout(tokenizer)
        if self.codebook_size != config.codebook_size:
            raise TigerError(f"LMM tokenizer has {self.codebook_size} image tokens, the config says {config.codebook_size}: rebuild the lmm")
        self.tokens_per_image = config.tokens_per_image
        self.vocab_size = len(tokenizer)
        self.first_word = IMAGE_OFFSET + self.codebook_size
        self.vocabulary = {w for w in tokenizer.get_vocab() if w.isalnum() or "'" in w}  # the rest become <unk>
        self._head, self._null, self._describe = (self._encode([t])[0] for t in (PROMPT, NULL_PROMPT, DESCRIBE))
        fixed = 3 + self.tokens_per_image + max(len(self._head), len(self._describe))  # bos, boi, eoi/eos
        self.max_text_tokens = config.max_length - fixed
        if self.max_text_tokens < 1:
            raise TigerError(f"max_length={config.max_length} leaves no room for text: use at least {fixed + 16}")

    # -- construction ---------------------------------------------------------------------------
    @staticmethod
    def tokenizer_texts(world) -> list[str]:
        """What the tokenizer is trained on: train captions, entity names, the instruction prompts."""
        return [c for caps in world.train.captions for c in caps] + list(world.entity_names) + [PROMPT, NULL_PROMPT, DESCRIBE]

    @classmethod
    def create(cls, config: LMMConfig, device="cpu", folder: Path | None = None, tokenizer=None) -> "UnifiedLMM":
        """A randomly initialized model; its tokenizer is given or read from ``folder/tokenizer.json``."""
        from transformers import LlamaForCausalLM

        if tokenizer is None:
            if folder is None:
                raise TigerError("UnifiedLMM.create needs its tokenizer: pass tokenizer= or the checkpoint folder")
            tokenizer = load_text_tokenizer(folder)
        model = LlamaForCausalLM(config.llama_config(len(tokenizer)))
        return cls(model, tokenizer, config, device)

    def save_files(self, folder: Path) -> None:
        """Files besides the weights that the checkpoint needs (the tokenizer)."""
        save_text_tokenizer(self.tokenizer, folder)

    # -- token ids ------------------------------------------------------------------------------
    def _encode(self, texts: list[str]) -> list[list[int]]:
        if isinstance(texts, str):
            raise TigerError("pass a list of texts, not a single string")
        texts = ["" if t is None else str(t) for t in texts]
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []

    def _text_ids(self, texts: list[str]) -> list[list[int]]:
        """Word ids of each text, truncated (with a warning) to fit the context window."""
        ids = self._encode(texts)
        long = [i for i, s in enumerate(ids) if len(s) > self.max_text_tokens]
        if long:
            info(f"warning: {len(long)} text(s) longer than {self.max_text_tokens} tokens truncated to fit the LMM's context (max_length={self.config.max_length})")
        return [s[: self.max_text_tokens] for s in ids]

    def prompt_ids(self, text: str) -> torch.Tensor:
        """``<bos> generate an image of {text} <boi>`` as LongTensor [P]: a prompt for
        ``CausalLMScorer``. An empty text gives the template with nothing after "of"."""
        return torch.tensor([BOS] + self._head + self._text_ids([text])[0] + [BOI])

    def null_prompt_ids(self) -> torch.Tensor:
        """``<bos> can you generate an image ? <boi>`` (TIGeR's null prompt for PMI)."""
        return torch.tensor([BOS] + self._null + [BOI])

    def _image_prefix(self, codes) -> list[list[int]]:
        """``<bos> <boi> {image tokens} <eoi> describe the image .`` per image."""
        return [[BOS, BOI] + row + [EOI] + self._describe for row in self.image_token_ids(codes).tolist()]

    # -- likelihoods (the forward ones come from ImageTokenLM) -----------------------------------
    def logp_text_given_image(self, codes, texts: list[str]) -> torch.Tensor:
        """log p(text_i <eos> | image_i, "describe the image .") summed over the text's tokens: [n]."""
        prefixes = self._image_prefix(codes)
        if len(prefixes) != len(texts):
            raise TigerError(f"got {len(texts)} texts for {len(prefixes)} images: pass one text per image")
        return self._score(prefixes, [t + [EOS] for t in self._text_ids(texts)])

    @torch.no_grad()
    def logp_text_given_image_matrix(self, codes, texts: list[str], max_rows: int = 512) -> torch.Tensor:
        """log p(text_j | image_i) for every pair: FloatTensor [n_images, n_texts]. The image
        prefix is run once per image and its KV cache shared by all texts (TIGeR re-ranking)."""
        prefix = torch.tensor(self._image_prefix(codes), dtype=torch.long)
        conts, real = pad_right([t + [EOS] for t in self._text_ids(texts)]) if len(texts) else (None, None)
        out = torch.zeros(len(prefix), len(texts))
        if conts is None or not len(prefix):
            return out
        m = len(texts)
        for t0 in range(0, m, max_rows):
            c_ids, c_real = conts[t0 : t0 + max_rows], real[t0 : t0 + max_rows]
            k = len(c_ids)
            per = max(1, max_rows // k)
            for lo in range(0, len(prefix), per):
                pre = prefix[lo : lo + per].to(self.device)
                first = self.model(input_ids=pre, use_cache=True)
                cache = first.cache
                cache.batch_repeat_interleave(k)
                inp = c_ids.repeat(len(pre), 1).to(self.device)
                mask = torch.cat([torch.ones(len(inp), pre.shape[1], dtype=torch.long), c_real.repeat(len(pre), 1).long()], 1)
                rest = self.model(input_ids=inp, attention_mask=mask.to(self.device), cache=cache).logits
                logits = torch.cat([first.logits[:, -1:].repeat_interleave(k, 0), rest[:, :-1]], 1).float()
                logp = F.log_softmax(logits, -1).gather(2, inp[:, :, None]).squeeze(2).cpu()
                out[lo : lo + len(pre), t0 : t0 + k] = (logp * c_real.repeat(len(pre), 1)).sum(1).view(len(pre), k)
        return out

    # -- generation (sample_images comes from ImageTokenLM) -------------------------------------
    def caption(self, codes, max_new_tokens: int = 20, batch_size: int = 256) -> list[str]:
        """Greedy caption per image (text tokens only; stops at ``<eos>``)."""
        prefixes = self._image_prefix(codes)
        allowed = torch.cat([torch.tensor([EOS]), torch.arange(self.first_word, self.vocab_size)])
        texts = []
        for i in range(0, len(prefixes), batch_size):
            ids = self._decode_loop(prefixes[i : i + batch_size], max(1, max_new_tokens), allowed, lambda logits: logits.argmax(-1))
            for row in ids.tolist():
                row = row[: row.index(EOS)] if EOS in row else row
                texts.append(self._detokenize(row))
        return texts

    def _detokenize(self, ids: list[int]) -> str:
        text = " ".join(self.tokenizer.convert_ids_to_tokens(ids))
        return re.sub(r" ' ", "'", re.sub(r" ([,.?!])", r"\1", text))


# -- training ---------------------------------------------------------------------------------------


def _training_sequence(lmm: UnifiedLMM, codes: list[int], text: list[int], to_text: bool, null: bool) -> tuple[list[int], int]:
    """(ids, index of the first position with a loss) for one training example."""
    img = [IMAGE_OFFSET + c for c in codes]
    if to_text:
        prefix = [BOS, BOI] + img + [EOI] + lmm._describe
        return prefix + text + [EOS], len(prefix)
    prefix = [BOS] + (lmm._null if null else lmm._head + text) + [BOI]
    return prefix + img + [EOI], len(prefix)


def _sample_batch(rng: np.random.Generator, pools: list[np.ndarray], n: int, entity_share: float) -> np.ndarray:
    """``n`` train indices: each an entity photo with probability ``entity_share`` (from
    ``pools[0]``), else a common scene (``pools[1]``); an empty pool gives way to the other."""
    entities, scenes = pools
    share = entity_share if len(entities) and len(scenes) else float(len(entities) > 0)
    pick_entity = rng.random(n) < share
    out = np.empty(n, np.int64)
    out[pick_entity] = entities[rng.integers(len(entities), size=int(pick_entity.sum()))] if pick_entity.any() else []
    out[~pick_entity] = scenes[rng.integers(len(scenes), size=int((~pick_entity).sum()))] if (~pick_entity).any() else []
    return out


def train_lmm(world, config: LMMConfig, seed: int, device="cpu", deps: dict | None = None) -> tuple[UnifiedLMM, dict]:
    """Next-token training on the train split in both directions (mean loss per direction)."""
    from tqdm.auto import tqdm

    vq = (deps or {}).get("visual_tokenizer")
    if vq is None:
        raise TigerError("train_lmm needs deps['visual_tokenizer']: build the zoo's visual tokenizer first")
    if vq.codebook_size != config.codebook_size or vq.tokens_per_image != config.tokens_per_image:
        raise TigerError(f"LMMConfig expects {config.tokens_per_image} codes from {config.codebook_size}, the visual tokenizer gives {vq.tokens_per_image} from {vq.codebook_size}: fix the config")
    torch.manual_seed(seed)
    tokenizer = train_text_tokenizer(UnifiedLMM.tokenizer_texts(world), config.codebook_size)
    lmm = UnifiedLMM.create(config, device, tokenizer=tokenizer)
    t0 = time.perf_counter()
    all_codes = (vq.training_codes(world.train.images) if hasattr(vq, "training_codes") else vq.encode(world.train.images)).tolist()
    captions = [lmm._text_ids(caps) for caps in world.train.captions]
    encode_seconds = time.perf_counter() - t0
    model = lmm.model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=config.lr, betas=(0.9, 0.95))
    sched = warmup_stable_decay(opt, config.warmup, config.steps, config.decay)
    use_bf16 = config.bf16 and fast_bf16(device)
    rng = np.random.default_rng(seed)
    ent = world.train.attributes.get("entity")  # data without ground truth: no entity pool
    is_entity = np.asarray(ent) >= 0 if ent is not None else np.zeros(len(all_codes), bool)
    pools = [np.flatnonzero(is_entity), np.flatnonzero(~is_entity)]
    if not (0.0 <= config.entity_share <= 1.0):
        raise TigerError(f"LMMConfig.entity_share={config.entity_share}: use a share in [0, 1]")
    losses = {"t2i": [], "i2t": []}
    ph = Phases()
    for step in (bar := tqdm(range(config.steps), desc="lmm", leave=False)):
        idx = _sample_batch(rng, pools, config.batch_size, config.entity_share)
        to_text = rng.random(config.batch_size) < config.i2t_share
        null = rng.random(config.batch_size) < config.null_share
        seqs, starts = [], []
        for i, b in enumerate(idx.tolist()):
            caps = captions[b]
            s, start = _training_sequence(lmm, all_codes[b], caps[rng.integers(len(caps))], bool(to_text[i]), bool(null[i]))
            seqs.append(s)
            starts.append(start)
        ids, real = pad_right(seqs)
        ids = ids.to(device)
        ph.mark("data")
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=use_bf16):
            logits = model(input_ids=ids).logits[:, :-1]  # right padding: no mask needed
        target = ids[:, 1:].masked_fill(~real[:, 1:].to(device), -100)
        pos = torch.arange(ids.shape[1] - 1, device=device)[None]
        target = target.masked_fill(pos < torch.tensor(starts, device=device)[:, None] - 1, -100)
        token_loss = F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(), ignore_index=-100, reduction="none").view_as(target)
        loss = 0.0
        for name, rows in (("i2t", torch.as_tensor(to_text, device=device)), ("t2i", ~torch.as_tensor(to_text, device=device))):
            counted = (target[rows] >= 0).sum()
            if counted > 0:
                part = token_loss[rows].sum() / counted
                loss = loss + part
                losses[name].append(float(part.detach()))
        ph.mark("forward")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        ph.mark("backward")
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        sched.step()
        ph.mark("optimizer")
        if step % 20 == 0:
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
    model.eval()
    tail = lambda v: round(float(np.mean(v[-50:])), 4) if v else None  # noqa: E731
    return lmm, {
        "train_seconds": round(time.perf_counter() - t0, 1),
        "encode_seconds": round(encode_seconds, 1),
        "final_loss_t2i": tail(losses["t2i"]),
        "final_loss_i2t": tail(losses["i2t"]),
        "vocab_size": lmm.vocab_size,
        "bf16": use_bf16,
        "phases": {"encode": round(encode_seconds, 3), **ph.summary()},
        "parameters": sum(p.numel() for p in model.parameters()),
    }
