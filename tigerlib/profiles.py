"""The two scales of the course, and every checkpoint name, in one file.

``mini`` trains small models from scratch on the mini world (CPU, offline). ``full`` loads
pretrained checkpoints by name through the ordinary ``from_pretrained`` / open_clip calls. The
model classes are the same at both scales; only the weights differ.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    # role -> checkpoint name (full) or zoo model name (mini)
    checkpoints: dict[str, str] = field(default_factory=dict)
    wants_gpu: bool = False


MINI = Profile(
    name="mini",
    description="mini world + small models trained from scratch here (CPU, offline, minutes)",
    checkpoints={
        "dual_encoder": "zoo:dual_encoder",
        "evaluator": "zoo:judge",
        "visual_tokenizer": "zoo:visual_tokenizer",
        "lmm": "zoo:lmm",
        "text_to_image": "zoo:diffusion",
        "text_llm": "zoo:text_llm",
    },
)

FULL = Profile(
    name="full",
    description="pretrained checkpoints and real data (GPU kernel recommended)",
    checkpoints={
        # open_clip "model/pretrained" pairs
        "dual_encoder": "ViT-L-14/openai",
        "evaluator": "ViT-H-14/laion2b_s32b_b79k",
        # the unified LMM's own VQ (Janus-Pro's image tokenizer)
        "visual_tokenizer": "deepseek-community/Janus-Pro-1B",
        # a transformers-native unified LMM with discrete image tokens (TIGeR, GRACE)
        "lmm": "deepseek-community/Janus-Pro-1B",
        # GILL: Stable Diffusion v1.5 (77 x 768 text states) and the frozen LLM of the paper
        "text_to_image": "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "text_llm": "facebook/opt-6.7b",
    },
    wants_gpu=True,
)

PROFILES: dict[str, Profile] = {p.name: p for p in (MINI, FULL)}
