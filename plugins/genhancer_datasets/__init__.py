"""Built-in datasets: ``synthetic``, ``image_folder``, ``webdataset`` and ``hf_dataset``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genhancer_plugins import ComponentSpec, hookimpl

from .params import HFDatasetParams, ImageFolderParams, SyntheticParams, WebDatasetParams


def _build_synthetic(params: SyntheticParams, image_size: int, seed: int = 0) -> Any:
    from .synthetic import SyntheticImages

    return SyntheticImages(params, image_size, seed)


def _build_image_folder(params: ImageFolderParams, image_size: int, seed: int = 0) -> Any:
    from .image_folder import ImageFolder

    return ImageFolder(params, image_size, seed)


def _check_image_folder(params: ImageFolderParams) -> list[str]:
    path = Path(params.root or params.list_file).expanduser()
    field = "data.params.root" if params.root else "data.params.list_file"
    if not path.exists():
        return [f"{field} {path} does not exist"]
    if params.root and not path.is_dir():
        return [f"{field} {path} is not a directory"]
    return [] if params.root or path.is_file() else [f"{field} {path} is not a file"]


def _check_webdataset(params: WebDatasetParams) -> list[str]:
    from .webdataset import expand_shards

    missing = [s for s in expand_shards(params.shards) if "://" not in s and not Path(s).expanduser().is_file()]
    return [f"data.params.shards: {len(missing)} shard(s) not found, first {missing[0]}"] if missing else []


def _build_webdataset(params: WebDatasetParams, image_size: int, seed: int = 0) -> Any:
    from .webdataset import WebDataset

    return WebDataset(params, image_size, seed)


def _build_hf_dataset(params: HFDatasetParams, image_size: int, seed: int = 0) -> Any:
    from .hf_dataset import HFImageDataset, StreamingHFImageDataset

    return (StreamingHFImageDataset if params.streaming else HFImageDataset)(params, image_size, seed)


def _check_hf_dataset(params: HFDatasetParams) -> list[str]:
    import importlib.util

    problems = [] if importlib.util.find_spec("datasets") else ["the `datasets` library is not installed: `pip install 'genhancer[hf]'`"]
    path = params.path
    if path.startswith(("/", ".", "~")) and not any(c in path for c in "*?[") and not Path(path).expanduser().exists():
        problems.append(f"data.params.path {path} does not exist")  # a hub id is checked when it loads
    return problems


def _rehearse_hf_dataset(params: HFDatasetParams, directory: Path, image_size: int) -> HFDatasetParams:
    from .samples import write_sample_dataset

    return params.model_copy(update={"path": str(write_sample_dataset(directory / "hf_dataset", image_size)), "split": "train",
                                     "image_column": "image", "num_samples": None, "revision": None})


def _rehearse_image_folder(params: ImageFolderParams, directory: Path, image_size: int) -> ImageFolderParams:
    from .samples import write_sample_images

    return params.model_copy(update={"root": str(write_sample_images(directory / "images", image_size)), "list_file": None})


def _rehearse_webdataset(params: WebDatasetParams, directory: Path, image_size: int) -> WebDatasetParams:
    from .samples import write_sample_shards

    return params.model_copy(update={"shards": write_sample_shards(directory / "shards", image_size), "num_samples": None})


@hookimpl
def genhancer_components() -> list[ComponentSpec]:
    return [
        ComponentSpec(
            kind="dataset",
            name="synthetic",
            factory=_build_synthetic,
            params=SyntheticParams,
            rehearsal=lambda params, directory, image_size: params,  # drawn in memory: nothing to write
            description="procedurally drawn shapes at any resolution; deterministic, no download",
        ),
        ComponentSpec(
            kind="dataset",
            name="image_folder",
            factory=_build_image_folder,
            params=ImageFolderParams,
            check=_check_image_folder,
            rehearsal=_rehearse_image_folder,
            description="every image under a directory (recursive) or in a JSONL/CSV list; random resized crop 0.9-1.0",
        ),
        ComponentSpec(
            kind="dataset",
            name="webdataset",
            factory=_build_webdataset,
            params=WebDatasetParams,
            check=_check_webdataset,
            rehearsal=_rehearse_webdataset,
            description="img2dataset tar shards (CC3M's usual form); streaming, sharded per process and worker",
        ),
        ComponentSpec(
            kind="dataset",
            name="hf_dataset",
            factory=_build_hf_dataset,
            params=HFDatasetParams,
            check=_check_hf_dataset,
            rehearsal=_rehearse_hf_dataset,
            description="a Hugging Face `datasets` set (save_to_disk directory, parquet/arrow files, hub id), map-style or streamed",
        ),
    ]
