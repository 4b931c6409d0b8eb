"""Recipe parameters of the built-in evaluators (light: no torch import)."""

from __future__ import annotations

from pydantic import Field, PositiveInt

from genhancer_plugins import Params


class MMVPParams(Params):
    root: str = Field(..., description="MMVP-VLM directory: Questions.csv and `MLLM_VLM Images/` (or `MLLM_VLM_Images/`)")
    prefix: str = Field("a photo of ", description="prepended to every statement, as published")
    batch_size: PositiveInt = 32


class ZeroShotParams(Params):
    root: str = Field(..., description="ImageFolder layout: one sub-directory of images per class")
    class_names: str | None = Field(None, description="text file, one name per line in sorted folder order; default: folder names")
    templates: str | list[str] = Field("simple", description="'simple', 'ensemble', or a list of templates with {}")
    batch_size: PositiveInt = 32


class RetrievalParams(Params):
    file: str = Field(..., description="JSONL ({image, caption | captions}) or CSV (image, caption) of image-text pairs")
    batch_size: PositiveInt = 32
