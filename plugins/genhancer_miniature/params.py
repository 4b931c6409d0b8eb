"""Recipe parameters of the miniature world's components (light: no torch import)."""

from __future__ import annotations

from pydantic import Field, PositiveFloat, PositiveInt

from genhancer_plugins import Params


class ShapesDataParams(Params):
    num_images: PositiveInt = Field(4096, description="epoch length")
    stream: int = Field(0, description="which stream of scenes; the probes use their own streams")


class ShapesClassifierParams(Params):
    """A tiny CLIP vision tower trained on the coarse label (shape) only: an
    encoder with CLIP-like blind spots for the fine attributes."""

    image_size: PositiveInt = 64
    patch_size: PositiveInt = 16
    hidden_size: PositiveInt = 128
    num_layers: PositiveInt = 4
    num_heads: PositiveInt = 4
    intermediate_size: PositiveInt = 512
    steps: PositiveInt = 800
    batch_size: PositiveInt = 128
    learning_rate: PositiveFloat = 1e-3
    weight_decay: float = 0.05
    seed: int = Field(0, description="the pretraining's own seed: one 'original CLIP' shared by every experiment seed")


class PixelParams(Params):
    factor: PositiveInt = Field(4, description="pixel-unshuffle factor: [3, H, W] -> [3 f^2, H/f, W/f]")


class PaletteParams(Params):
    factor: PositiveInt = Field(4, description="average-pool factor before quantising")
    levels: PositiveInt = Field(4, description="levels per channel: a levels^3 colour codebook")


class ProbeParams(Params):
    attributes: list[str] | None = Field(None, description="default: every attribute of the shapes world")
    train_images: PositiveInt = 2000
    test_images: PositiveInt = 1000
    pairs: PositiveInt = Field(200, description="pairs per attribute differing only in it")
    l2: PositiveFloat = Field(1e-3, description="fixed L2 regularisation of the logistic-regression probes")
    split_seed: int = Field(90210, description="fixed splits, separate from every training stream")
    coarse_head: str | None = Field("auto", description="'auto': the pretraining's shape head beside the original encoder; null: skip")
    batch_size: PositiveInt = 256
