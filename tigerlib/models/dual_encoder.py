"""The dual encoder (the CLIP role): dense retrieval baseline, structured identifiers, the
diffusion model's text encoder, and (at mini scale) CLIP-T / CLIP-I.

Both scales use open_clip's ``CLIP`` class. The mini model is a small config registered with
open_clip the same way open_clip registers its own, trained contrastively here on the mini world's
common scenes and entity photos; like every method model it never sees the creative pairs (only
the judge, ``judge.py``, does). The full model is an open_clip pretrained name (ViT-L-14/openai).
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import info
from ..data.dataset import as_uint8_images
from ..errors import TigerError
from .training import Phases, warmup_stable_decay
from .vocabulary import known_word_shares, vocabulary_of

MINI_CLIP_NAME = "tiger-mini-clip"
VOCABULARY_FILE = "vocabulary.json"


@dataclass(frozen=True)
class DualEncoderConfig:
    image_size: int = 32
    patch_size: int = 8
    vision_width: int = 128
    vision_layers: int = 4
    text_width: int = 128
    text_layers: int = 4
    text_heads: int = 4
    context_length: int = 24
    embed_dim: int = 128
    # training: 300 steps at the full rate until the last 90 give t2i R@1 0.95, entity R@1 1.0
    # (400 on a cosine: 0.96, 0.995) in 3/4 of the time
    steps: int = 300
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 60
    decay: int = 90
    entity_share: float = 0.15

    def open_clip_config(self) -> dict:
        return {
            "embed_dim": self.embed_dim,
            "vision_cfg": {"image_size": self.image_size, "layers": self.vision_layers, "width": self.vision_width, "patch_size": self.patch_size, "head_width": 32},
            "text_cfg": {"context_length": self.context_length, "vocab_size": 49408, "width": self.text_width, "heads": self.text_heads, "layers": self.text_layers},
        }


TINY_DUAL_ENCODER = DualEncoderConfig(vision_width=32, vision_layers=1, text_width=32, text_layers=1, text_heads=2, embed_dim=32, steps=4, batch_size=32, warmup=1)


def register_config(config: DualEncoderConfig, name: str = MINI_CLIP_NAME) -> str:
    """Register the mini architecture with open_clip (as a JSON model config), return its name."""
    import open_clip

    folder = Path(tempfile.gettempdir()) / "tigerlib_open_clip_configs"
    folder.mkdir(exist_ok=True)
    digest = hashlib.sha256(json.dumps(config.open_clip_config(), sort_keys=True).encode()).hexdigest()[:8]
    full_name = f"{name}-{digest}"
    path = folder / f"{full_name}.json"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(config.open_clip_config()))
        tmp.replace(path)
    open_clip.add_model_config(path)
    return full_name


@contextlib.contextmanager
def _quiet_root_logger():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


class DualEncoder:
    """An open_clip CLIP with its tokenizer and preprocessing: ``encode_text`` / ``encode_images``
    return L2-normalized embeddings; images are uint8 arrays of any size (resized to the model's)."""

    def __init__(self, model, tokenizer, name: str, device="cpu", vocabulary: set[str] | None = None):
        self.model = model.to(device).eval()
        self.vocabulary = vocabulary  # words seen in training (mini); None: pretrained, any word
        self.tokenizer = tokenizer
        self.name = name
        self.device = torch.device(device)
        cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
        from open_clip import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

        self.mean = torch.tensor(cfg.get("mean", OPENAI_DATASET_MEAN)).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg.get("std", OPENAI_DATASET_STD)).view(1, 3, 1, 1)
        size = model.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def create(cls, config: DualEncoderConfig, device="cpu", folder: Path | None = None) -> "DualEncoder":
        """Random weights; a checkpoint ``folder`` also gives the vocabulary it was trained on."""
        import open_clip

        name = register_config(config)
        with _quiet_root_logger():  # open_clip warns that no pretrained weights were loaded: intended
            model = open_clip.create_model(name, pretrained=None)
        vocabulary = None
        if folder is not None and (Path(folder) / VOCABULARY_FILE).exists():
            vocabulary = set(json.loads((Path(folder) / VOCABULARY_FILE).read_text()))
        return cls(model, open_clip.get_tokenizer(name), name, device, vocabulary)

    def save_files(self, folder: Path) -> None:
        """The training vocabulary next to the weights (for :meth:`known_word_share`)."""
        if self.vocabulary is not None:
            (Path(folder) / VOCABULARY_FILE).write_text(json.dumps(sorted(self.vocabulary)))

    def known_word_share(self, texts) -> list[float]:
        """Per text, the share of its words seen in training (see ``vocabulary.py``)."""
        return known_word_shares(texts, self.vocabulary)

    @classmethod
    def from_pretrained(cls, spec: str, device="cpu", pretrained: bool = True) -> "DualEncoder":
        """``spec`` is ``model/pretrained`` (for example ``ViT-L-14/openai``). ``pretrained=False``
        builds the same class with random weights (offline tests of the full path)."""
        import open_clip

        arch, _, tag = spec.partition("/")
        if arch not in open_clip.list_models():
            raise TigerError(f"unknown open_clip model {arch!r}: see open_clip.list_models()")
        try:
            model = open_clip.create_model(arch, pretrained=tag if pretrained and tag else None)
        except Exception as e:  # offline hub, missing file, ...
            raise TigerError(
                f"cannot load {spec} offline ({type(e).__name__}): download it once with network access "
                f"(open_clip.create_model('{arch}', pretrained='{tag}')) so it sits in the Hugging Face cache, "
                "or pass pretrained=<path to open_clip_pytorch_model.bin>"
            ) from None
        return cls(model, open_clip.get_tokenizer(arch), spec, device)

    # -- encoding -------------------------------------------------------------------------------
    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(list(texts)).to(self.device)

    def pixels(self, images) -> torch.Tensor:
        """uint8 images -> normalized float tensor at the model's size."""
        if isinstance(images, torch.Tensor) and images.dtype == torch.uint8 and images.ndim == 4:
            x = images
        else:
            x = torch.from_numpy(as_uint8_images(images))
        x = x.to(self.device).permute(0, 3, 1, 2).float() / 255.0
        if x.shape[-1] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bicubic", align_corners=False).clamp(0, 1)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    @torch.no_grad()
    def encode_text(self, texts: list[str], batch_size: int = 512) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        out = [F.normalize(self.model.encode_text(self.tokenize(texts[i : i + batch_size])), dim=-1) for i in range(0, len(texts), batch_size)]
        return torch.cat(out) if out else torch.zeros(0, self.embed_dim)

    @torch.no_grad()
    def encode_images(self, images, batch_size: int = 512) -> torch.Tensor:
        n = len(images)
        out = [F.normalize(self.model.encode_image(self.pixels(images[i : i + batch_size])), dim=-1) for i in range(0, n, batch_size)]
        return torch.cat(out) if out else torch.zeros(0, self.embed_dim)

    @torch.no_grad()
    def encode_text_states(self, texts: list[str], batch_size: int = 512) -> torch.Tensor:
        """Per-token text states after the final layer norm, before pooling: [n, context, width]
        (the conditioning a text-to-image UNet cross-attends to, like SD's 77 x 768)."""
        if isinstance(texts, str):
            texts = [texts]
        m = self.model
        out = []
        for i in range(0, len(texts), batch_size):
            tokens = self.tokenize(texts[i : i + batch_size])
            x = m.token_embedding(tokens) + m.positional_embedding
            out.append(m.ln_final(m.transformer(x, attn_mask=m.attn_mask)).float())
        return torch.cat(out) if out else torch.zeros(0, int(m.positional_embedding.shape[0]), self.text_width)

    @property
    def text_width(self) -> int:
        return int(self.model.token_embedding.weight.shape[1])

    @property
    def embed_dim(self) -> int:
        return int(self.model.text_projection.shape[1]) if hasattr(self.model, "text_projection") else int(self.model.visual.output_dim)

    def clip_score(self, texts: list[str], images) -> np.ndarray:
        """CLIP-T style score per pair: cosine(text_i, image_i) (x100 is the papers' convention)."""
        return (self.encode_text(texts) * self.encode_images(images)).sum(-1).cpu().numpy()


def train_dual_encoder(world, config: DualEncoderConfig, seed: int, device="cpu") -> tuple[DualEncoder, dict]:
    """Contrastive training on fresh batches of the world (creative pairs held out)."""
    from open_clip import ClipLoss
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    enc = DualEncoder.create(config, device)
    model = enc.model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
    sched = warmup_stable_decay(opt, config.warmup, config.steps, config.decay)
    loss_fn = ClipLoss()
    gen = world.generator
    rng = np.random.default_rng(seed)
    seen: set[str] = set()
    t0 = time.perf_counter()
    ph = Phases()
    for step in (bar := tqdm(range(config.steps), desc="dual encoder", leave=False)):
        batch = gen.sample(config.batch_size, seed=seed * 1_000_003 + step, creative="exclude", entity_share=config.entity_share)
        texts = [caps[rng.integers(len(caps))] for caps in batch.captions]
        seen |= vocabulary_of(texts)
        ph.mark("data")
        image_features = F.normalize(model.encode_image(enc.pixels(batch.images)), dim=-1)
        text_features = F.normalize(model.encode_text(enc.tokenize(texts)), dim=-1)
        loss = loss_fn(image_features, text_features, model.logit_scale.exp())
        ph.mark("forward")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        ph.mark("backward")
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, np.log(100))
        ph.mark("optimizer")
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    enc.vocabulary = seen
    return enc, {"train_seconds": round(time.perf_counter() - t0, 1), "final_loss": round(float(loss.item()), 4), "phases": ph.summary()}
