"""The visual tokenizer (the SEED-tokenizer role): image <-> a short sequence of discrete codes.

One interface, :class:`VisualTokenizer`, for both scales: the mini profile trains a small diffusers
``VQModel`` here; the full profile wraps a unified LMM's own VQ (Janus-Pro's ``JanusVQVAE`` in
transformers). TIGeR's identifiers, the LMM's image tokens and generation all go through it.
"""
from __future__ import annotations

import hashlib

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..data.dataset import as_uint8_images
from ..errors import TigerError
from .training import Phases, fast_bf16, warmup_cosine


def check_codes(codes, tokens_per_image: int, codebook_size: int) -> torch.Tensor:
    """Codes as LongTensor [n, L]; a wrong length, non-integers or out-of-range values raise."""
    codes = torch.as_tensor(codes)
    if codes.ndim == 1:
        codes = codes[None]
    if codes.ndim != 2 or codes.shape[1] != tokens_per_image:
        raise TigerError(f"image codes must have shape [n, {tokens_per_image}], got {tuple(codes.shape)}")
    if codes.dtype.is_floating_point or codes.dtype == torch.bool:
        raise TigerError("image codes must be integers")
    if codes.numel() and (codes.min() < 0 or codes.max() >= codebook_size):
        raise TigerError(f"image codes out of range: got [{int(codes.min())}, {int(codes.max())}], the codebook has {codebook_size} entries (0..{codebook_size - 1})")
    return codes.long()


class VisualTokenizer:
    """``encode(images) -> LongTensor[n, L]`` and ``decode(codes) -> uint8 [n, S, S, 3]``."""

    image_size: int
    codebook_size: int
    grid: tuple[int, int]

    @property
    def tokens_per_image(self) -> int:
        return self.grid[0] * self.grid[1]

    def check_codes(self, codes) -> torch.Tensor:
        return check_codes(codes, self.tokens_per_image, self.codebook_size)

    def to_pixels(self, images, device) -> torch.Tensor:
        """uint8 images (any size/mode) -> float [-1, 1], [n, 3, S, S] at this tokenizer's size."""
        x = torch.from_numpy(as_uint8_images(images, size=self.image_size)).to(device)
        return x.permute(0, 3, 1, 2).float() / 127.5 - 1.0

    @staticmethod
    def to_uint8(x: torch.Tensor) -> np.ndarray:
        return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()

    def encode(self, images, batch_size: int = 256) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, codes, batch_size: int = 256) -> np.ndarray:
        raise NotImplementedError


@dataclass(frozen=True)
class VQConfig:
    image_size: int = 32
    block_out_channels: tuple[int, ...] = (16, 32, 64)  # 3 blocks: 2 downsamplings -> 8x8 grid at 32 px
    layers_per_block: int = 1
    latent_channels: int = 32
    vq_embed_dim: int = 16
    codebook_size: int = 512
    norm_num_groups: int = 8
    # training
    # 1500 steps: 28.5 dB, recon R@1 0.86. Shorter runs are fragile: 700 on a cosine gave 22.8 dB, 0.27;
    # 1000 at a stable rate gave 28.6 dB, 0.84 on one thread but 27.1 dB, 0.72 on two
    steps: int = 1500
    batch_size: int = 64
    lr: float = 2e-3
    reset_every: int = 50  # re-seed codes unused over this many steps (dead-code reset)
    grad_clip: float = 1.0
    legacy_vq_loss: bool = False  # diffusers' legacy loss weights codebook/commitment the other way round
    # bf16 autocast for the encoder and decoder while training where the hardware has it; the codebook lookup stays fp32.
    # 1500 steps: 254 s, recon R@1 0.861, 29.1 dB (fp32: 309 s, 0.813, 28.6 dB; same machine and day)
    bf16: bool = True

    def diffusers_config(self) -> dict:
        n = len(self.block_out_channels)
        return dict(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * n,
            up_block_types=("UpDecoderBlock2D",) * n,
            block_out_channels=tuple(self.block_out_channels),
            layers_per_block=self.layers_per_block,
            latent_channels=self.latent_channels,
            vq_embed_dim=self.vq_embed_dim,
            num_vq_embeddings=self.codebook_size,
            norm_num_groups=self.norm_num_groups,
            sample_size=self.image_size,
        )


TINY_VQ = VQConfig(block_out_channels=(8, 8, 8), latent_channels=8, vq_embed_dim=4, codebook_size=32, norm_num_groups=4, steps=3, batch_size=8, reset_every=2)


class VQTokenizer(VisualTokenizer):
    """A diffusers ``VQModel``: encoder -> nearest codebook entry per latent cell -> decoder."""

    def __init__(self, model, device="cpu"):
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        cfg = model.config
        self.image_size = int(cfg.sample_size)
        self.codebook_size = int(cfg.num_vq_embeddings)
        side = self.image_size // 2 ** (len(cfg.block_out_channels) - 1)
        self.grid = (side, side)

    @classmethod
    def create(cls, config: VQConfig, device="cpu") -> "VQTokenizer":
        from diffusers import VQModel

        return cls(VQModel(**config.diffusers_config()), device)

    def latents(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode(x).latents

    def quantize(self, z: torch.Tensor):
        zq, vq_loss, (_, _, idx) = self.model.quantize(z)
        return zq, vq_loss, idx.view(z.shape[0], -1)

    def decode_latents(self, zq: torch.Tensor) -> torch.Tensor:
        return self.model.decode(zq, force_not_quantize=True).sample

    @torch.no_grad()
    def encode(self, images, batch_size: int = 256) -> torch.Tensor:
        out = [self.quantize(self.latents(self.to_pixels(images[i : i + batch_size], self.device)))[2] for i in range(0, len(images), batch_size)]
        return torch.cat(out).cpu() if out else torch.zeros(0, self.tokens_per_image, dtype=torch.long)

    def training_codes(self, images: np.ndarray) -> torch.Tensor:
        """``encode(images)``, computed once per image set and kept: the LMM and the diffusion model
        train on the same split's codes, so a zoo build encodes it once."""
        key = hashlib.sha1(np.ascontiguousarray(images).view(np.uint8).data).hexdigest()
        cache = self.__dict__.setdefault("_codes", {})
        if key not in cache:
            cache[key] = self.encode(images)
        return cache[key]

    def latents_of_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """The quantized latents [n, C, h, w] of codes (what ``quantize`` returns for their images)."""
        codes = self.check_codes(codes)
        h, w = self.grid
        with torch.no_grad():
            return self.model.quantize.get_codebook_entry(codes.reshape(-1).to(self.device), (len(codes), h, w, self.model.quantize.vq_embed_dim))

    @torch.no_grad()
    def decode(self, codes, batch_size: int = 256) -> np.ndarray:
        codes = self.check_codes(codes)
        h, w = self.grid
        out = []
        for i in range(0, len(codes), batch_size):
            c = codes[i : i + batch_size].to(self.device)
            zq = self.model.quantize.get_codebook_entry(c.reshape(-1), (len(c), h, w, self.model.quantize.vq_embed_dim))
            out.append(self.to_uint8(self.decode_latents(zq)))
        return np.concatenate(out) if out else np.zeros((0, self.image_size, self.image_size, 3), np.uint8)


class JanusTokenizer(VisualTokenizer):
    """The full-scale tokenizer: a unified LMM's own VQ (transformers ``JanusVQVAE``)."""

    def __init__(self, vqvae, device="cpu"):
        self.model = vqvae.to(device).eval()
        self.device = torch.device(device)
        cfg = vqvae.config
        self.grid = tuple(vqvae.quantize.quant_state_dims)
        self.image_size = int(self.grid[0] * 2 ** (len(cfg.channel_multiplier) - 1))
        self.codebook_size = int(cfg.num_embeddings)

    @classmethod
    def from_pretrained(cls, name: str, device="cpu") -> "JanusTokenizer":
        from transformers import JanusForConditionalGeneration

        try:
            model = JanusForConditionalGeneration.from_pretrained(name)
        except OSError as e:
            raise TigerError(f"cannot load {name} offline ({type(e).__name__}): download it once with network access (huggingface-cli download {name}) or pass a local folder") from None
        return cls(model.model.vqmodel, device)

    @torch.no_grad()
    def encode(self, images, batch_size: int = 16) -> torch.Tensor:
        out = []
        for i in range(0, len(images), batch_size):
            x = self.to_pixels(images[i : i + batch_size], self.device)
            out.append(self.model.encode(x).image_tokens.view(len(x), -1))
        return torch.cat(out).cpu()

    @torch.no_grad()
    def decode(self, codes, batch_size: int = 16) -> np.ndarray:
        codes = self.check_codes(codes)
        out = [self.to_uint8(self.model.decode(codes[i : i + batch_size].to(self.device))) for i in range(0, len(codes), batch_size)]
        return np.concatenate(out)


def train_vq(world, config: VQConfig, seed: int, device="cpu") -> tuple[VQTokenizer, dict]:
    """Reconstruction + VQ losses on the training split, with codebook init from encoder outputs
    and dead-code reset (unused codes jump to random current latents)."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    tok = VQTokenizer.create(config, device)
    model = tok.model.train()
    model.quantize.legacy = config.legacy_vq_loss
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    sched = warmup_cosine(opt, config.steps // 20, config.steps)
    images = world.train.images
    rng = np.random.default_rng(seed)
    codebook = model.quantize.embedding.weight
    usage = torch.zeros(config.codebook_size)
    use_bf16 = config.bf16 and fast_bf16(device)
    t0 = time.perf_counter()
    ph = Phases()
    for step in (bar := tqdm(range(config.steps), desc="visual tokenizer", leave=False)):
        x = tok.to_pixels(images[rng.integers(len(images), size=config.batch_size)], device)
        ph.mark("data")
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=use_bf16):
            z = tok.latents(x).float()
        flat = z.detach().permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        if step == 0:  # start the codebook on real latents, not near zero
            with torch.no_grad():
                codebook.copy_(flat[torch.randint(len(flat), (config.codebook_size,))])
        zq, vq_loss, idx = tok.quantize(z)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=use_bf16):
            recon = tok.decode_latents(zq).float()
        loss = F.mse_loss(recon, x) + 0.5 * F.l1_loss(recon, x) + vq_loss
        ph.mark("forward")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        ph.mark("backward")
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        sched.step()
        ph.mark("optimizer")
        usage += torch.bincount(idx.reshape(-1).cpu(), minlength=config.codebook_size)
        if (step + 1) % config.reset_every == 0 and step + 1 < config.steps * 0.9:
            dead = (usage == 0).nonzero().squeeze(1)
            if len(dead):
                with torch.no_grad():
                    codebook[dead] = flat[torch.randint(len(flat), (len(dead),))]
            usage.zero_()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    model.eval()
    return tok, {"train_seconds": round(time.perf_counter() - t0, 1), "final_loss": round(float(loss.item()), 5), "phases": ph.summary(), "bf16": use_bf16}
