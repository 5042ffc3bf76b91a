"""The full-scale unified LMM: Janus-Pro (transformers ``JanusForConditionalGeneration``) behind the
same interface as the mini :class:`UnifiedLMM`, so TIGeR runs unchanged on it.

Janus decouples the two directions:

- **generation** reads text tokens, then writes image codes with its own embeddings
  (``generation_embeddings`` + ``generation_aligner``) and head (``generation_head``) over the VQ
  codebook. :class:`JanusImageGeneration` exposes this mode as one causal LM whose logits are the
  K image codes: ids ``0..K-1`` are image codes, ids ``K + t`` are text token ``t`` (input only).
  TIGeR's trie, beam search and PMI work on it as on any causal LM.
- **understanding** reads the image through its SigLIP encoder. The reverse score log p(X|Y)
  decodes the image's codes to pixels with Janus' own VQ, then scores the caption with the text
  head after "describe the image".

Prompts follow Janus-Pro's conversation format: ``<|User|>: {prompt}\\n\\n<|Assistant|>:`` then
``<begin_of_image>`` for generation.
"""
from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F

from ..errors import TigerError
from .image_token_lm import ImageTokenLM, pad_right

NULL_PROMPT = "Can you generate an image?"
DESCRIBE = "Describe the image."


class JanusImageGeneration(torch.nn.Module):
    """Janus in image-generation mode as a causal LM over [image codes | text tokens]."""

    def __init__(self, janus):
        super().__init__()
        self.janus = janus
        self.config = janus.config
        self.codebook_size = int(janus.config.vq_config.num_embeddings)

    def forward(self, input_ids, attention_mask=None, position_ids=None, cache=None, use_cache=None, logits_to_keep: int = 0, **kwargs):
        k = self.codebook_size
        is_text = input_ids >= k
        text = self.janus.model.language_model.get_input_embeddings()((input_ids - k).clamp(min=0))
        image = self.janus.prepare_embeddings_for_image_generation(input_ids.clamp(max=k - 1))
        embeds = torch.where(is_text[..., None], text, image.to(text.dtype))
        out = self.janus.model.language_model(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids, cache=cache, use_cache=use_cache)
        hidden = out.last_hidden_state
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        return SimpleNamespace(logits=self.janus.model.generation_head(hidden), cache=out.cache)


class JanusLMM(ImageTokenLM):
    """Janus-Pro (or a tiny random Janus in tests) with its tokenizer."""

    image_offset = 0

    def __init__(self, janus, tokenizer, device="cpu"):
        self.janus = janus.to(device).eval()
        self.model = JanusImageGeneration(self.janus).eval()
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        cfg = janus.config
        self.codebook_size = int(cfg.vq_config.num_embeddings)
        self.vocab_size = self.codebook_size  # generation-mode logits cover the image codes only
        self.tokens_per_image = int(torch.tensor(janus.model.vqmodel.quantize.quant_state_dims).prod())
        vision = cfg.vision_config
        self.num_image_features = (int(vision.image_size) // int(vision.patch_size)) ** 2
        self.vision_size = int(vision.image_size)
        vocab = tokenizer.get_vocab()
        missing = [t for t in ("<begin_of_image>", "<end_of_image>", "<image_placeholder>") if t not in vocab]
        if missing:
            raise TigerError(f"the tokenizer lacks Janus' special tokens {missing}: load it with the model (AutoProcessor.from_pretrained(name).tokenizer)")
        self.boi, self.eoi = vocab["<begin_of_image>"], vocab["<end_of_image>"]
        self.image_token_id = int(cfg.image_token_id)
        self.eos = tokenizer.eos_token_id
        self.pad_id = self.codebook_size + (tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)

    @classmethod
    def from_pretrained(cls, name: str, device="cpu") -> "JanusLMM":
        from transformers import AutoProcessor, JanusForConditionalGeneration

        try:
            processor = AutoProcessor.from_pretrained(name)
            model = JanusForConditionalGeneration.from_pretrained(name, dtype=torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32)
        except OSError as e:
            raise TigerError(f"cannot load {name} offline ({type(e).__name__}): download it once with network access (huggingface-cli download {name}) or pass a local folder") from None
        return cls(model, processor.tokenizer, device)

    def _text(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _generation_prompt(self, text: str) -> torch.Tensor:
        bos = [self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []
        ids = bos + self._text(f"<|User|>: {text}\n\n<|Assistant|>:") + [self.boi]
        return torch.tensor(ids) + self.codebook_size

    def prompt_ids(self, text: str) -> torch.Tensor:
        """The generation prompt for ``text``, in this class's joint ids (text ids shifted by K)."""
        return self._generation_prompt("" if text is None else str(text))

    def null_prompt_ids(self) -> torch.Tensor:
        return self._generation_prompt(NULL_PROMPT)

    # -- understanding direction ------------------------------------------------------------------
    @torch.no_grad()
    def pixels_of(self, codes) -> torch.Tensor:
        """Codes -> images in [-1, 1] at the vision encoder's size (Janus normalizes with mean = std = 0.5)."""
        x = self.janus.model.vqmodel.decode(self.check_codes(codes).to(self.device))
        if x.shape[-1] != self.vision_size:
            x = F.interpolate(x.float(), size=(self.vision_size, self.vision_size), mode="bicubic", align_corners=False)
        return x.clamp(-1, 1)

    @torch.no_grad()
    def logp_text_given_image(self, codes, texts: list[str], batch_size: int = 8) -> torch.Tensor:
        """log p(text_i <eos> | image_i, "describe the image") with the text head: [n]."""
        codes = self.check_codes(codes)
        if isinstance(texts, str) or len(texts) != len(codes):
            raise TigerError(f"pass a list of {len(codes)} texts, one per image")
        bos = [self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []
        head = bos + self._text("<|User|>: ") + [self.boi] + [self.image_token_id] * self.num_image_features + [self.eoi] + self._text(f"\n{DESCRIBE}\n\n<|Assistant|>:")
        out = []
        for lo in range(0, len(codes), batch_size):
            conts = [self._text(" " + str(t)) + ([self.eos] if self.eos is not None else []) for t in texts[lo : lo + batch_size]]
            ids, real = pad_right([head + c for c in conts], self.pad_id - self.codebook_size)
            logits = self.janus(input_ids=ids.to(self.device), pixel_values=self.pixels_of(codes[lo : lo + batch_size]).to(self.janus.dtype)).logits[:, :-1].float()
            logp = F.log_softmax(logits, -1).gather(2, ids[:, 1:, None].to(self.device)).squeeze(2).cpu()
            pos = torch.arange(ids.shape[1] - 1)[None]
            out.append((logp * ((pos >= len(head) - 1) & real[:, 1:])).sum(1))
        return torch.cat(out) if out else torch.zeros(0)
