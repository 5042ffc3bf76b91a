"""The GILLMapper: [IMG] token states of a frozen LLM -> a diffusion model's text conditioning.

(Koh et al., "Generating Images with Multimodal Language Models", NeurIPS 2023.) The LLM's last
hidden states at its [IMG] positions, plus those tokens' input embeddings, are projected to the
mapper's width; a small encoder-decoder transformer (``torch.nn.Transformer``) encodes them and its
decoder reads one learned query per position of the diffusion model's text-conditioning sequence;
a last projection gives that sequence's width. The output is passed to the diffusion model as
``prompt_embeds``. Shapes at full scale (OPT-6.7B -> Stable Diffusion v1.5): [n, 8, 4096] ->
[n, 77, 768] through width 512 with 4 + 4 layers and 4 heads.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import TigerError


@dataclass(frozen=True)
class GILLMapperConfig:
    llm_width: int = 576  # the frozen LLM's hidden size (SmolLM2-135M: 576; OPT-6.7B: 4096)
    width: int = 128  # the mapper's model width (paper: 512)
    encoder_layers: int = 2  # paper: 4
    decoder_layers: int = 2  # paper: 4
    heads: int = 4
    queries: int = 24  # one per conditioning position (the mini dual encoder's 24; SD: 77)
    out_width: int = 128  # the conditioning width (the mini dual encoder's 128; SD: 768)
    img_tokens: int = 8
    dropout: float = 0.0


FULL_MAPPER = GILLMapperConfig(llm_width=4096, width=512, encoder_layers=4, decoder_layers=4, heads=4, queries=77, out_width=768)
TINY_MAPPER = GILLMapperConfig(llm_width=32, width=16, encoder_layers=1, decoder_layers=1, heads=2, queries=6, out_width=16)


class GILLMapper(nn.Module):
    """``forward(hidden [n, T, D], embeds [n, T, D]) -> [n, queries, out_width]``."""

    def __init__(self, config: GILLMapperConfig):
        super().__init__()
        if config.width % config.heads:
            raise TigerError(f"GILLMapperConfig: width {config.width} must be a multiple of heads {config.heads}")
        self.config = config
        self.project_in = nn.Linear(config.llm_width, config.width)
        self.transformer = nn.Transformer(
            d_model=config.width,
            nhead=config.heads,
            num_encoder_layers=config.encoder_layers,
            num_decoder_layers=config.decoder_layers,
            dim_feedforward=4 * config.width,
            dropout=config.dropout,
            batch_first=True,
        )
        self.queries = nn.Parameter(torch.randn(config.queries, config.width) * 0.02)
        self.project_out = nn.Linear(config.width, config.out_width)

    def forward(self, hidden: torch.Tensor, embeds: torch.Tensor) -> torch.Tensor:
        if hidden.ndim != 3 or hidden.shape[-1] != self.config.llm_width or hidden.shape != embeds.shape:
            raise TigerError(f"GILLMapper takes [n, tokens, {self.config.llm_width}] hidden states and input embeddings of one shape, got {tuple(hidden.shape)} and {tuple(embeds.shape)}")
        x = self.project_in(hidden + embeds)
        queries = self.queries[None].expand(len(x), -1, -1)
        return self.project_out(self.transformer(x, queries))
