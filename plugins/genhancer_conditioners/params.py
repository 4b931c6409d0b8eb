"""Recipe parameters of the built-in conditioners (light: no torch import)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from genhancer_plugins import Params


class ClsParams(Params):
    hidden_dim: PositiveInt | None = Field(None, description="projector hidden width per stream; default: its output width")


class ClsLocalParams(ClsParams):
    fraction: float = Field(0.1, ge=0.0, le=1.0, description="share n of the local patch tokens added as condition tokens")
    selection: Literal["random", "even"] = Field("random", description="random per sample, or evenly spaced")
    local_positions: bool = Field(
        True, description="give each local token its patch row/column (FLUX: as txt ids for RoPE); off: no position, as the global token"
    )
