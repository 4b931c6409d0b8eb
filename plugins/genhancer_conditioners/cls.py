"""Conditioners ``cls`` and ``cls_local``.

``cls``: the encoder's global token only, through projector h, into the
denoiser's condition inputs (the pooled modulation vector and one condition
token). ``cls_local`` adds round(n * N) of the N local patch tokens, each
through its own projector, as further condition tokens (the paper's Fig. 5
ablation); with n = 0 it builds exactly the same module as ``cls``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from genhancer_plugins import Condition, Conditioner, ConditionSpec, EncoderOutput, EncoderSpec

from .params import ClsLocalParams, ClsParams


def projector(in_dim: int, out_dim: int, hidden_dim: int | None = None) -> nn.Sequential:
    """The paper's h: LayerNorm -> Linear -> GELU -> Linear."""
    hidden = hidden_dim or out_dim
    return nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))


class ClsConditioner(Conditioner):
    """One projector stream per condition input the denoiser accepts, plus
    (for ``cls_local``) one for the selected local tokens."""

    def __init__(self, params: ClsParams, encoder: EncoderSpec, condition: ConditionSpec):
        super().__init__()
        if condition.pooled_dim is None and condition.token_dim is None:
            raise ValueError("the denoiser accepts neither a pooled vector nor condition tokens")
        d = encoder.global_dim
        self.to_pooled = projector(d, condition.pooled_dim, params.hidden_dim) if condition.pooled_dim else None
        self.to_token = projector(d, condition.token_dim, params.hidden_dim) if condition.token_dim else None
        local = isinstance(params, ClsLocalParams)
        fraction = params.fraction if local else 0.0
        self.selection = params.selection if local else "random"
        self.num_local = round(fraction * encoder.num_local_tokens)
        self.local_positions = bool(local and params.local_positions and self.num_local)
        self.grid = math.isqrt(encoder.num_local_tokens)
        if self.local_positions and self.grid * self.grid != encoder.num_local_tokens:
            raise ValueError(f"local token positions need a square patch grid; the encoder has {encoder.num_local_tokens} tokens")
        self.to_local = None
        self.uses_local_tokens = bool(self.num_local)
        if self.num_local:
            if condition.token_dim is None:
                raise ValueError("local tokens need a denoiser that accepts condition tokens")
            self.to_local = projector(encoder.local_dim, condition.token_dim, params.hidden_dim)

    def select_local(self, local: Tensor) -> Tensor:
        """Indices [B, k] of the local tokens used, in spatial order."""
        batch, n = local.shape[:2]
        if self.selection == "even":
            picked = torch.linspace(0, n - 1, self.num_local, device=local.device).round().long()
            return picked.unsqueeze(0).expand(batch, -1)
        return torch.rand(batch, n, device=local.device).argsort(dim=1)[:, : self.num_local].sort(dim=1).values

    def forward(self, encoded: EncoderOutput) -> Condition:
        g = encoded.global_token
        tokens = self.to_token(g).unsqueeze(1) if self.to_token is not None else None
        positions = None
        if self.to_local is not None:
            local = encoded.local_tokens
            index = self.select_local(local)
            picked = local.gather(1, index.unsqueeze(-1).expand(-1, -1, local.shape[-1]))
            tokens = torch.cat([tokens, self.to_local(picked)], dim=1)
            if self.local_positions:
                positions = self.patch_positions(index, global_tokens=tokens.shape[1] - index.shape[1])
        return Condition(pooled=self.to_pooled(g) if self.to_pooled is not None else None, tokens=tokens,
                         token_positions=positions)

    def patch_positions(self, index: Tensor, global_tokens: int) -> Tensor:
        """[B, global + k, 2]: NaN for the global token(s), then each picked patch's
        centre (row, column) as a share of the image side."""
        grid = self.grid
        centres = torch.stack([index // grid, index % grid], dim=-1).float().add(0.5).div(grid)
        none = torch.full((index.shape[0], global_tokens, 2), float("nan"), device=index.device)
        return torch.cat([none, centres], dim=1)
