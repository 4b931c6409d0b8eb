"""Conditioner ``cls``: the encoder's global token only, through projector h."""

from __future__ import annotations

from torch import nn

from genhancer_plugins.interfaces import Condition, ConditionSpec, Conditioner, EncoderOutput, EncoderSpec

from .params import ClsParams


def projector(in_dim: int, out_dim: int, hidden_dim: int | None = None) -> nn.Sequential:
    """The paper's h: LayerNorm -> Linear -> GELU -> Linear."""
    hidden = hidden_dim or out_dim
    return nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))


class ClsConditioner(Conditioner):
    """One projector stream per condition input the denoiser accepts: the
    pooled modulation vector and a single condition token."""

    def __init__(self, params: ClsParams, encoder: EncoderSpec, condition: ConditionSpec):
        super().__init__()
        if condition.pooled_dim is None and condition.token_dim is None:
            raise ValueError("the denoiser accepts neither a pooled vector nor condition tokens")
        d = encoder.global_dim
        self.to_pooled = projector(d, condition.pooled_dim, params.hidden_dim) if condition.pooled_dim else None
        self.to_token = projector(d, condition.token_dim, params.hidden_dim) if condition.token_dim else None

    def forward(self, encoded: EncoderOutput) -> Condition:
        g = encoded.global_token
        return Condition(
            pooled=self.to_pooled(g) if self.to_pooled is not None else None,
            tokens=self.to_token(g).unsqueeze(1) if self.to_token is not None else None,
        )
