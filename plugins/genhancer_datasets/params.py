"""Recipe parameters of the built-in datasets (light: no torch import)."""

from __future__ import annotations

from pydantic import Field, PositiveInt

from genhancer_plugins.components import Params


class SyntheticParams(Params):
    num_images: PositiveInt = Field(512, description="epoch length")
    max_shapes: PositiveInt = Field(3, description="shapes drawn per image: 1..max_shapes")
