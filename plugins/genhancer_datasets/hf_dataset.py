"""Dataset ``hf_dataset``: a Hugging Face ``datasets`` dataset, as most image sets are published now.

``path`` is a directory written by ``save_to_disk``, parquet or arrow files (a file, a
directory of them or a glob), or a hub id (cached, or downloaded when online). The image
column is read undecoded (``Image(decode=False)``) and decoded here like every other
reader (the JPEG draft path, ``max_pixels``, EXIF orientation, 16-bit scaling), with the
release's random resized crop. A row that does not decode is skipped and reported, the
next one used.

Map-style by default (indexable: fixed crops, the frozen-work cache and the engine's
sampler work as for a folder). ``streaming: true`` reads it as a stream: shuffled in a
buffer per epoch, split across processes and loader workers (by the dataset's own shards
when it has enough, else every n-th row), repeated if a slot runs short; the epoch is
``num_samples`` long (default: the split's size in the dataset's info).
"""

from __future__ import annotations

import glob
import random
from pathlib import Path
from typing import Any, Iterator

import torch

from genhancer_plugins import first_line

from .common import load_image, process_rank, random_resized_crop, sample, skip_entry, to_tensor
from .params import HFDatasetParams

MAX_CONSECUTIVE_FAILURES = 50
FILE_FORMATS = {".parquet": "parquet", ".arrow": "arrow"}


def _files(path: str) -> tuple[str, list[str]] | None:
    """(format, files) when ``path`` names parquet or arrow files; None otherwise."""
    local = Path(path).expanduser()
    if local.is_dir():
        found = sorted(str(p) for p in local.rglob("*") if p.suffix in FILE_FORMATS)
    else:
        found = sorted(glob.glob(str(local))) if any(c in path for c in "*?[") else ([str(local)] if local.is_file() else [])
    formats = {FILE_FORMATS.get(Path(f).suffix) for f in found}
    if not found or None in formats:
        return None
    if len(formats) > 1:
        raise ValueError(f"hf_dataset: data.params.path {path} mixes parquet and arrow files")
    return formats.pop(), found  # type: ignore[return-value]


def open_dataset(params: HFDatasetParams) -> Any:
    """The split, with its image column undecoded."""
    import datasets

    local = Path(params.path).expanduser()
    saved = local.is_dir() and any((local / name).is_file() for name in ("dataset_dict.json", "state.json"))
    files = None if saved else _files(params.path)
    if saved:  # save_to_disk's layout
        loaded = datasets.load_from_disk(str(local))
        if isinstance(loaded, datasets.DatasetDict):
            if params.split not in loaded:
                raise ValueError(f"hf_dataset: {local} has no split {params.split!r} (splits: {', '.join(loaded)})")
            loaded = loaded[params.split]
        if params.streaming:
            loaded = loaded.to_iterable_dataset(num_shards=max(1, min(64, len(loaded) // 1000)))
    elif files is not None:
        kind, found = files
        loaded = datasets.load_dataset(kind, data_files={params.split: found}, split=params.split, streaming=params.streaming)
    elif local.exists() or params.path.startswith(("/", ".", "~")):
        raise FileNotFoundError(f"hf_dataset: data.params.path {params.path} holds neither a saved dataset nor parquet/arrow files")
    else:
        try:
            loaded = datasets.load_dataset(params.path, split=params.split, revision=params.revision, streaming=params.streaming)
        except (OSError, ValueError, ConnectionError) as exc:  # offline, a hub id that does not exist, no such split
            raise FileNotFoundError(f"hf_dataset: data.params.path {params.path!r} is neither a local dataset nor a hub "
                                    f"dataset that loads ({first_line(exc)})") from None
    columns = loaded.column_names or list((loaded.features or {}).keys())
    if params.image_column not in columns:
        raise ValueError(f"hf_dataset: data.params.image_column {params.image_column!r} is not a column of {params.path} "
                         f"(columns: {', '.join(columns)})")
    if isinstance(loaded.features[params.image_column], datasets.Image):
        loaded = loaded.cast_column(params.image_column, datasets.Image(decode=False))
    return loaded


def _image_source(value: Any) -> bytes | str:
    """An undecoded Image value ({bytes, path}), raw bytes, or a path."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return value["bytes"]
        if value.get("path"):
            return str(value["path"])
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str) and value:
        return value
    raise ValueError(f"no image in the row ({type(value).__name__})")


class _Decoder:
    def __init__(self, params: HFDatasetParams, image_size: int):
        self.params, self.image_size = params, image_size

    def decode(self, row: dict[str, Any], rng: random.Random) -> torch.Tensor:
        source = _image_source(row[self.params.image_column])
        image = load_image(source, self.params.decode_side or 2 * self.image_size, self.params.max_pixels)
        crop = random_resized_crop(image, self.image_size, self.params.crop_scale, rng, self.params.crop_ratio)
        return to_tensor(crop)


class HFImageDataset(torch.utils.data.Dataset):
    """Map-style: row ``index`` (the next readable one when it does not decode)."""

    def __init__(self, params: HFDatasetParams, image_size: int, seed: int = 0):
        self.rows = open_dataset(params)
        self.decoder, self.params, self.seed, self.epoch = _Decoder(params, image_size), params, seed, 0

    def __len__(self) -> int:
        return len(self.rows)

    def set_epoch(self, epoch: int) -> None:
        """Crops are keyed by (seed, epoch, row): alike on any number of processes or loader workers, anew
        each epoch."""
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict[str, Any]:
        skipped: list[str] = []
        for attempt in range(MAX_CONSECUTIVE_FAILURES):
            position = (index + attempt) % len(self.rows)
            key = f"{self.params.split}/{position}"
            rng = random.Random(f"{self.seed}-{self.epoch}-{position}")  # see set_epoch
            try:
                pixels = self.decoder.decode(self.rows[position], rng)
            except Exception as exc:  # corrupt bytes, a missing file, not an image: skip and say why
                skipped.append(skip_entry(key, exc))
                continue
            return sample(pixels, key, skipped)
        raise ValueError(f"hf_dataset: {MAX_CONSECUTIVE_FAILURES} rows in a row do not decode, from {skipped[0]}")


class StreamingHFImageDataset(torch.utils.data.IterableDataset):
    def __init__(self, params: HFDatasetParams, image_size: int, seed: int = 0):
        self.rows = open_dataset(params)
        self.num_samples = params.num_samples or self._info_size(params)
        if self.num_samples is None:
            raise ValueError("hf_dataset: epoch length unknown for this stream: set data.params.num_samples")
        self.decoder, self.params, self.seed, self.epoch = _Decoder(params, image_size), params, seed, 0

    def _info_size(self, params: HFDatasetParams) -> int | None:
        splits = getattr(self.rows.info, "splits", None) or {}
        split = splits.get(params.split) if hasattr(splits, "get") else None
        return int(split.num_examples) if split is not None and split.num_examples else None

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _slot(self) -> tuple[Any, int, int, str]:
        """This process and loader worker's rows: (stream, stride, offset, slot name)."""
        rank, world = process_rank()
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        slots, slot = world * workers, rank * workers + worker
        rows = self.rows
        if self.params.shuffle_buffer:
            rows = rows.shuffle(seed=self.seed * 1000 + self.epoch, buffer_size=self.params.shuffle_buffer)
        if rows.num_shards >= slots:
            return rows.shard(num_shards=slots, index=slot), 1, 0, f"{rank}.{worker}"
        return rows, slots, slot, f"{rank}.{worker}"

    def __iter__(self) -> Iterator[dict[str, Any]]:
        rows, stride, offset, name = self._slot()
        rng = random.Random(f"{self.seed}-{self.epoch}-{name}")
        skipped: list[str] = []
        while True:  # repeat if this slot runs short; the engine ends the epoch
            seen = 0
            for position, row in enumerate(rows):
                if position % stride != offset:
                    continue
                key = f"{self.params.split}/{name}/{position}"
                try:
                    pixels = self.decoder.decode(row, rng)
                except Exception as exc:  # corrupt row: skip and say why
                    skipped.append(skip_entry(key, exc))
                    continue
                seen += 1
                yield sample(pixels, key, skipped)
                skipped = []
            if seen == 0:
                raise ValueError(f"hf_dataset: no readable row in {self.params.path} for slot {name}; skipped: {skipped[:3]}")
