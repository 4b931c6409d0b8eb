"""Recipe parameters of the built-in datasets (light: no torch import)."""

from __future__ import annotations

from pydantic import Field, PositiveInt, model_validator

from genhancer_plugins import Params


class SyntheticParams(Params):
    num_images: PositiveInt = Field(512, description="epoch length")
    max_shapes: PositiveInt = Field(3, description="shapes drawn per image: 1..max_shapes")


class CropParams(Params):
    crop_scale: tuple[float, float] = Field((0.9, 1.0), description="random resized crop: share of the image area kept")
    crop_ratio: tuple[float, float] = Field(
        (3 / 4, 4 / 3), description="random resized crop: aspect range (width/height); wider or taller images are centre-cropped to it"
    )

    decode_side: PositiveInt | None = Field(
        None, description="JPEGs decode at reduced size with both sides at least this (default: twice the encoder's image size)"
    )
    max_pixels: PositiveInt | None = Field(
        50_000_000, description="other images above this many pixels are skipped and reported instead of decoded (null: no cap)"
    )

    @model_validator(mode="after")
    def _check_crop(self) -> "CropParams":
        low, high = self.crop_scale
        if not 0 < low <= high <= 1:
            raise ValueError("crop_scale must satisfy 0 < low <= high <= 1")
        low, high = self.crop_ratio
        if not 0 < low <= high:
            raise ValueError("crop_ratio must satisfy 0 < low <= high")
        return self


class ImageFolderParams(CropParams):
    root: str | None = Field(None, description="directory searched recursively for images (.jpg, .jpeg, .png, .webp, .bmp)")
    list_file: str | None = Field(
        None, description="JSONL ({\"image\": path} per line) or CSV (column image or path) of image paths, relative to the file"
    )
    allow_outside_paths: bool = Field(
        False, description="let list-file entries be absolute or leave the list file's folder (`../`); off: such an entry is an error"
    )

    @model_validator(mode="after")
    def _one_source(self) -> "ImageFolderParams":
        if (self.root is None) == (self.list_file is None):
            raise ValueError("set exactly one of `root` (a directory) or `list_file` (JSONL/CSV of image paths)")
        return self


class WebDatasetParams(CropParams):
    shards: str | list[str] = Field(
        ..., description="tar shards in the img2dataset layout: a brace pattern (data/{00000..00331}.tar) or a list"
    )
    num_samples: PositiveInt | None = Field(
        None, description="epoch length; default: the sum of `successes` in the shards' *_stats.json files"
    )
    shuffle_buffer: int = Field(1000, ge=0, description="samples held for shuffling (0: stream order)")
    image_keys: list[str] = Field(default_factory=lambda: ["jpg", "jpeg", "png", "webp"], description="extensions tried in order")


class HFDatasetParams(CropParams):
    path: str = Field(
        ..., description="a directory written by save_to_disk, parquet/arrow files (a file, a directory of them or a glob), or a hub id"
    )
    split: str = Field("train", description="the split to read")
    image_column: str = Field("image", description="the column holding the images (an Image feature, or bytes, or paths)")
    streaming: bool = Field(False, description="read as a stream (large sets): sharded per process and worker, shuffled in a buffer")
    num_samples: PositiveInt | None = Field(None, description="streaming: epoch length; default: the split's size in the dataset's info")
    shuffle_buffer: int = Field(1000, ge=0, description="streaming: samples held for shuffling (0: stream order)")
    revision: str | None = Field(None, description="hub ids: a branch, tag or commit")
