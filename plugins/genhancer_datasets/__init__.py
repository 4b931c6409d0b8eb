"""Built-in datasets: ``synthetic``, ``image_folder`` and ``webdataset``."""

from __future__ import annotations

from typing import Any

from genhancer_plugins import ComponentSpec, hookimpl

from .params import ImageFolderParams, SyntheticParams, WebDatasetParams


def _build_synthetic(params: SyntheticParams, image_size: int, seed: int = 0) -> Any:
    from .synthetic import SyntheticImages

    return SyntheticImages(params, image_size, seed)


def _build_image_folder(params: ImageFolderParams, image_size: int, seed: int = 0) -> Any:
    from .image_folder import ImageFolder

    return ImageFolder(params, image_size, seed)


def _build_webdataset(params: WebDatasetParams, image_size: int, seed: int = 0) -> Any:
    from .webdataset import WebDataset

    return WebDataset(params, image_size, seed)


@hookimpl
def genhancer_components() -> list[ComponentSpec]:
    return [
        ComponentSpec(
            kind="dataset",
            name="synthetic",
            factory=_build_synthetic,
            params=SyntheticParams,
            description="procedurally drawn shapes at any resolution; deterministic, no download",
        ),
        ComponentSpec(
            kind="dataset",
            name="image_folder",
            factory=_build_image_folder,
            params=ImageFolderParams,
            description="every image under a directory (recursive) or in a JSONL/CSV list; random resized crop 0.9-1.0",
        ),
        ComponentSpec(
            kind="dataset",
            name="webdataset",
            factory=_build_webdataset,
            params=WebDatasetParams,
            description="img2dataset tar shards (CC3M's usual form); streaming, sharded per process and worker",
        ),
    ]
