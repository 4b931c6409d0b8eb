"""Recipe parameters of the built-in datasets (light: no torch import)."""

from __future__ import annotations

from pydantic import Field, PositiveInt

from genhancer_plugins.components import Params


class SyntheticParams(Params):
    num_images: PositiveInt = Field(512, description="epoch length")
    max_shapes: PositiveInt = Field(3, description="shapes drawn per image: 1..max_shapes")


class ImageFolderParams(Params):
    root: str = Field(..., description="directory searched recursively for images (.jpg, .jpeg, .png, .webp, .bmp)")
    crop_scale: tuple[float, float] = Field((0.9, 1.0), description="random resized crop area range (1, 1: plain resize)")
