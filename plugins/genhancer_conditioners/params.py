"""Recipe parameters of the built-in conditioners (light: no torch import)."""

from __future__ import annotations

from pydantic import Field, PositiveInt

from genhancer_plugins.components import Params


class ClsParams(Params):
    hidden_dim: PositiveInt | None = Field(None, description="projector hidden width per stream; default: its output width")
