"""Recipe parameters of the discrete path (light: no torch import)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, PositiveInt, model_validator

from genhancer_plugins import Params


class VQParams(Params):
    source: str | None = Field(None, description="hub id or local diffusers directory holding a VQModel (with `subfolder`)")
    subfolder: str | None = "vqvae"
    revision: str | None = None
    config: dict[str, Any] | None = Field(None, description="diffusers VQModel config: random weights when `source` is empty")

    @model_validator(mode="after")
    def _needs_weights_or_config(self) -> "VQParams":
        if self.source is None and self.config is None:
            raise ValueError("set `source` (hub id or directory) or `config` (random initialisation)")
        return self


class PerceiverParams(Params):
    num_layers: PositiveInt = Field(6, description="cross-attention layers (paper Table 5: 2/4/6/8)")
    width: PositiveInt = 768
    num_heads: PositiveInt = 12
    mlp_ratio: float = Field(4.0, gt=0)
    mask_ratio_min: float = Field(0.5, gt=0, le=1, description="mask ratio drawn per sample from [min, max]")
    mask_ratio_max: float = Field(0.9, gt=0, le=1, description="equal to min: a fixed ratio")

    @model_validator(mode="after")
    def _check(self) -> "PerceiverParams":
        if self.mask_ratio_min > self.mask_ratio_max:
            raise ValueError("mask_ratio_min must not exceed mask_ratio_max")
        if self.width % self.num_heads:
            raise ValueError(f"width {self.width} must be divisible by num_heads {self.num_heads}")
        return self
