"""Recipe parameters of the built-in encoders (light: no torch import)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from genhancer_plugins import Params


class HFEncoderParams(Params):
    source: str | None = Field(None, description="hub id or local directory of a transformers checkpoint")
    revision: str | None = None
    config: dict[str, Any] | None = Field(
        None,
        description=(
            "architecture: {vision: {...}, text: {...} or null, projection_dim: int}. Random weights when `source` "
            "is empty; with a hub `source` it only lets `genhancer validate` count parameters offline"
        ),
    )
    trust_remote_code: bool = False

    @model_validator(mode="after")
    def _needs_weights_or_config(self) -> "HFEncoderParams":
        if self.source is None and self.config is None:
            raise ValueError("set `source` (hub id or directory) or `config` (random initialisation)")
        if self.config is not None and "vision" not in self.config:
            raise ValueError("`config` needs a `vision` mapping (text and projection_dim are optional)")
        return self
