"""The judge: an evaluator that no method uses, so no method grades itself.

GenEval in spirit: does an image show the asked shape, colour, size, position and background, or
the asked entity? At mini scale the world's ground truth makes that a supervised problem:
:class:`AttributeJudge` is a small convolutional classifier with one head per attribute, trained
here on fresh world images of *every* kind (creative pairs and entities included, like a judge
that has seen everything). At full scale :class:`ClipJudge` reads the same attributes zero-shot
with an open_clip model (ViT-H-14 laion2b, TIGeR's evaluator) and also gives CLIP-T / CLIP-I.

Both return the same thing: ``read(images) -> {attribute: int array}`` with indices into the
world's vocabularies (``-1`` where it does not apply: scene attributes of an entity image).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import world as W
from ..data.dataset import as_uint8_images
from ..errors import TigerError
from .training import Phases, warmup_cosine

SCENE_HEADS = {"shape": len(W.SHAPES), "color": len(W.COLORS), "size": len(W.SIZES), "pos": len(W.POSITIONS), "bg": len(W.BACKGROUNDS)}
JUDGED = ("kind", "entity") + W.ATTRIBUTES
EVAL_SEED = 2**31  # the judge's held-out images come from sample streams training never uses


@dataclass(frozen=True)
class JudgeConfig:
    channels: tuple[int, ...] = (32, 64, 128)  # one stride-2 stage each: 32 px -> 4 px
    n_entities: int = 100  # must match the world
    # training
    steps: int = 300  # 600 steps gave 1.0 on every head; 300 keeps the floors (0.98) with the zoo in budget
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup: int = 30
    entity_share: float = 0.4  # entities are 100 classes with a few photos each: they need repeats
    n_eval: int = 2000


TINY_JUDGE = JudgeConfig(channels=(8, 16), n_entities=6, steps=3, batch_size=16, warmup=1, n_eval=64)  # n_entities: the tests' tiny world


class JudgeNet(nn.Module):
    """Conv stages (conv, batch norm, ReLU, stride 2), global average pooling, one linear head per attribute."""

    def __init__(self, config: JudgeConfig):
        super().__init__()
        layers, c_in = [], 3
        for c in config.channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c, 3, stride=2, padding=1), nn.BatchNorm2d(c), nn.ReLU()]
            c_in = c
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(2), nn.Flatten())
        width = 4 * c_in
        sizes = {"kind": 2, "entity": config.n_entities, **SCENE_HEADS}
        self.heads = nn.ModuleDict({k: nn.Linear(width, n) for k, n in sizes.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.features(x)
        return {k: head(h) for k, head in self.heads.items()}


class AttributeJudge:
    """The mini judge (``.model`` is the :class:`JudgeNet`)."""

    def __init__(self, model: JudgeNet, config: JudgeConfig, device="cpu"):
        self.model = model.to(device).eval()
        self.config = config
        self.device = torch.device(device)

    @classmethod
    def create(cls, config: JudgeConfig, device="cpu") -> "AttributeJudge":
        return cls(JudgeNet(config), config, device)

    def pixels(self, images) -> torch.Tensor:
        x = torch.from_numpy(as_uint8_images(images)).to(self.device)
        return x.permute(0, 3, 1, 2).float() / 127.5 - 1.0

    @torch.no_grad()
    def read(self, images, batch_size: int = 512) -> dict[str, np.ndarray]:
        """What each image shows: kind (0 common, 1 entity), entity index, and the scene
        attributes (indices into ``world.SHAPES`` etc.; -1 where the kind makes them moot)."""
        images = as_uint8_images(images)
        outs = {k: [] for k in JUDGED}
        for i in range(0, len(images), batch_size):
            logits = self.model(self.pixels(images[i : i + batch_size]))
            for k in JUDGED:
                outs[k].append(logits[k].argmax(-1).cpu().numpy())
        pred = {k: np.concatenate(v).astype(np.int64) for k, v in outs.items()}
        entity = pred["kind"] == W.KIND_ENTITY
        pred["entity"][~entity] = -1
        for k in W.ATTRIBUTES:
            pred[k][entity] = -1
        return pred


def train_judge(world, config: JudgeConfig, seed: int, device="cpu") -> tuple[AttributeJudge, dict]:
    """Cross-entropy per head on fresh world batches of every kind; a head is trained only on the
    images it applies to (the entity head on entity photos, the scene heads on scenes)."""
    from tqdm.auto import tqdm

    if config.n_entities != world.config.n_entities:
        raise TigerError(f"JudgeConfig.n_entities={config.n_entities} but the world has {world.config.n_entities}: pass JudgeConfig(n_entities={world.config.n_entities})")
    torch.manual_seed(seed)
    judge = AttributeJudge.create(config, device)
    model = judge.model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = warmup_cosine(opt, config.warmup, config.steps)
    t0 = time.perf_counter()
    ph = Phases()
    for step in (bar := tqdm(range(config.steps), desc="judge", leave=False)):
        batch = world.generator.sample(config.batch_size, seed=seed * 1_000_003 + step, creative="include", entity_share=config.entity_share)
        ph.mark("data")
        logits = model(judge.pixels(batch.images))
        target = {k: torch.as_tensor(batch.attributes[k].astype(np.int64), device=device) for k in JUDGED}
        loss = F.cross_entropy(logits["kind"], target["kind"])
        for k in ("entity",) + W.ATTRIBUTES:
            rows = target[k] >= 0
            if rows.any():
                loss = loss + F.cross_entropy(logits[k][rows], target[k][rows])
        ph.mark("forward")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        ph.mark("backward")
        opt.step()
        sched.step()
        ph.mark("optimizer")
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return judge, {"train_seconds": round(time.perf_counter() - t0, 1), "final_loss": round(float(loss.item()), 4), "phases": ph.summary()}


def held_out_images(world, n: int, creative: str = "include", entity_share: float = 0.3):
    """Fresh world images from a stream the judge never trained on (creative pairs included)."""
    return world.generator.sample(n, seed=EVAL_SEED, creative=creative, entity_share=entity_share)


class ClipJudge:
    """The full profile's judge: an open_clip model (``DualEncoder``) that reads the world's
    attributes zero-shot (one prompt per value, the best cosine wins) and scores CLIP-T / CLIP-I."""

    PROMPTS = {
        "shape": "a photo of a {}",
        "color": "a photo of something {}",
        "size": "a photo of a {} object",
        "pos": "a photo of an object {}",
        "bg": "a photo of an object on a {} background",
    }
    VALUES = {"shape": W.SHAPES, "color": W.COLOR_NAMES, "size": W.SIZES, "pos": tuple(W.POSITION_WORDS[p][0] for p in W.POSITIONS), "bg": W.BACKGROUND_NAMES}

    def __init__(self, dual_encoder):
        self.encoder = dual_encoder
        self._text = {k: dual_encoder.encode_text([self.PROMPTS[k].format(v) for v in vals]) for k, vals in self.VALUES.items()}

    @classmethod
    def from_pretrained(cls, spec: str, device="cpu") -> "ClipJudge":
        from .dual_encoder import DualEncoder

        return cls(DualEncoder.from_pretrained(spec, device))

    @torch.no_grad()
    def read(self, images) -> dict[str, np.ndarray]:
        emb = self.encoder.encode_images(as_uint8_images(images))
        n = len(emb)
        out = {"kind": np.zeros(n, np.int64), "entity": np.full(n, -1, np.int64)}
        for k, text in self._text.items():
            out[k] = (emb @ text.T).argmax(-1).cpu().numpy().astype(np.int64)
        return out

    def clip_score(self, texts, images) -> np.ndarray:
        return self.encoder.clip_score(texts, images)
