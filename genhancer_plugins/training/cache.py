"""Frozen work computed once: fixed crops per image, and a cache of what the frozen
modules make of them.

With ``data.fixed_crops: K`` each image gets K random resized crops, drawn once
(crop k of image i always comes from the same seed), and an epoch visits every
crop of every image once: the dataset is N x K items long. That makes the frozen
work a function of (image, crop), so ``cache.enabled`` can keep it:

- the tokenizer's target parameters (a VAE's latent mean and log-variance, so the
  latent is still drawn afresh every step), in both stages;
- the encoder's global token in stage 1, where the encoder is frozen (and only
  when the conditioner reads no local tokens).

Entries are computed the first time a crop is met and written as safetensors
shards at each checkpoint and stage end, under ``cache.directory`` (default
``<run>/cache``) in a folder keyed by everything that decides them (components,
parameters, image size, data, seed, K), so runs that share it reuse each other's
work. A run with the cache trains on exactly the targets of the same run without
it (same crops, same noise): the cache only skips recomputation.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import torch

from genhancer_plugins.util.files import save_tensors, write_json
from genhancer_plugins.util.locks import shared_lock
from genhancer_plugins.util.seeds import step_seed

KINDS = ("targets", "global_token")


def crop_seed(seed: int, index: int, crop: int) -> int:
    return step_seed(seed, 7919, index, crop)  # a stream apart from the training steps'


class FixedCrops(torch.utils.data.Dataset):
    """A map-style dataset seen as ``len(dataset) x crops`` items: item ``j`` is crop
    ``j // N`` of image ``j % N``: for a dataset that keys its crops by epoch (``set_epoch``,
    the shipped ones), its crop of that epoch; for one that draws from torch's RNG, a draw
    with the crop's own seed."""

    def __init__(self, dataset: Any, crops: int, seed: int, image_size: int):
        self.dataset, self.crops, self.seed, self.image_size = dataset, crops, seed, image_size
        #: key -> True when every input of this stage is cached: the image is then not decoded at all
        #: (set by the stage; loader workers see the cache as it was when they started)
        self.fully_cached: Callable[[str], bool] | None = None

    def __len__(self) -> int:
        return len(self.dataset) * self.crops

    def __getitem__(self, item: int) -> dict[str, Any]:
        index, crop = item % len(self.dataset), item // len(self.dataset)
        key = f"{index}.{crop}"
        if self.fully_cached is not None and self.fully_cached(key):
            # never read: the model takes the cached inputs for this row
            return {"pixel_values": torch.zeros(3, self.image_size, self.image_size), "key": key, "skipped": [], "cache_key": key}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(crop_seed(self.seed, index, crop))
            if hasattr(self.dataset, "set_epoch"):
                self.dataset.set_epoch(crop)
            sample = dict(self.dataset[index])
        sample["cache_key"] = key
        return sample


#: a precomputed shard: one tensor ``rows`` [end - start, ...], the entries of items [start, end) of one kind
RANGE_SHARD = re.compile(r"^(?P<kind>[a-z_]+)-items-(?P<start>\d{10})-(?P<end>\d{10})\.safetensors$")
#: precomputed shards open at once (a file descriptor and the offset of its rows each)
OPEN_SHARDS = 256
STORED = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def range_shard_name(kind: str, start: int, end: int) -> str:
    return f"{kind}-items-{start:010d}-{end:010d}.safetensors"


class _Rows:
    """A precomputed shard read row by row with ``pread``: no memory map, so what was read is
    no part of the process's memory once copied out (the OS's page cache keeps the file)."""

    def __init__(self, path: Path):
        self.fd = os.open(path, os.O_RDONLY)
        length = int.from_bytes(os.pread(self.fd, 8, 0), "little")  # the safetensors layout: header size, JSON header, data
        info = json.loads(os.pread(self.fd, length, 8))["rows"]
        self.dtype, self.shape = STORED[info["dtype"]], info["shape"]
        begin, end = info["data_offsets"]
        self.offset, self.row_bytes = 8 + length + begin, (end - begin) // self.shape[0]

    def row(self, index: int) -> torch.Tensor:
        data = bytearray(os.pread(self.fd, self.row_bytes, self.offset + index * self.row_bytes))
        return torch.frombuffer(data, dtype=self.dtype).reshape(self.shape[1:])

    def close(self) -> None:
        os.close(self.fd)


def cache_fingerprint(loaded: Any, model: Any, precision: str) -> dict[str, Any]:
    """Everything that decides the cached values: a folder per fingerprint, shared by the runs that agree."""
    raw = loaded.raw
    fingerprint = {section: raw.get(section) for section in ("encoder", "tokenizer", "data", "pretrain")}
    sizes = model.image_sizes
    if sizes["tokenizer"] != sizes["encoder"]:  # only then: the caches of same-size recipes keep their folders
        fingerprint["image_sizes"] = sizes
    # scheme 2: a dataset with set_epoch gives crop c as its epoch-c crop (FixedCrops), no longer a draw from
    # torch's RNG; a folder of scheme 1 holds other crops of the same images, so it is not reused
    return fingerprint | {"encoder_source": model.encoder.pretrained_source(), "image_size": sizes["encoder"],
                          "seed": loaded.recipe.train.seed, "precision": precision, "scheme": 2}


def open_cache(loaded: Any, model: Any, precision: str, output_dir: Path, images: int, rank: int = 0) -> "FrozenCache":
    """The recipe's cache (``cache.directory``, default ``<run>/cache``) for a dataset of ``images`` images."""
    from genhancer_plugins.util.dtypes import torch_dtype

    settings = loaded.recipe.cache
    root = Path(settings.directory).expanduser() if settings.directory else Path(output_dir) / "cache"
    return FrozenCache(root, cache_fingerprint(loaded, model, precision), torch_dtype(settings.dtype), rank, images)


class FrozenCache:
    """Two kinds of shard, both safetensors keyed by ``"<image>.<crop>"``:

    - precomputed (``genhancer cache``): ``<kind>-items-<start>-<end>.safetensors`` holds the rows of
      items [start, end) (item = image + crop x images) in one tensor. Only the ranges are kept in
      memory; a row is read from its file when a batch needs it, so a process's memory does not grow
      with the cache (up to OPEN_SHARDS files stay open, least recently used closed first);
    - filled during training (``<kind>-r<rank>-<n>.safetensors``): small, read whole at start-up.
    """

    def __init__(self, root: Path, fingerprint: dict[str, Any], dtype: torch.dtype, rank: int = 0, images: int | None = None):
        key = hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()[:16]
        self.directory = Path(root) / key
        self.directory.mkdir(parents=True, exist_ok=True)
        if not (self.directory / "fingerprint.json").is_file():
            write_json(self.directory / "fingerprint.json", fingerprint)
        self.dtype, self.rank, self.images = dtype, rank, images
        self.entries: dict[str, dict[str, torch.Tensor]] = {kind: {} for kind in KINDS}
        self.pending: dict[str, dict[str, torch.Tensor]] = {kind: {} for kind in KINDS}
        self.ranges: dict[str, list[tuple[int, int, Path]]] = {}  #: kind -> (start, end, shard), by start
        self._open: OrderedDict[Path, Any] = OrderedDict()
        self.hits = self.misses = 0
        from safetensors.torch import load_file

        for shard in sorted(self.directory.glob("*.safetensors")):
            kind = shard.name.split("-")[0]
            if not RANGE_SHARD.match(shard.name) and kind in self.entries:
                self.entries[kind].update(load_file(shard))
        self.rescan()

    def rescan(self) -> None:
        """Index the precomputed shards now in the folder (names only: nothing is read)."""
        self.ranges = {kind: [] for kind in KINDS}
        for shard in sorted(self.directory.glob("*-items-*.safetensors")):
            ranged = RANGE_SHARD.match(shard.name)
            if ranged and ranged["kind"] in self.ranges:
                self.ranges[ranged["kind"]].append((int(ranged["start"]), int(ranged["end"]), shard))
        self._starts = {kind: [start for start, _, _ in ranges] for kind, ranges in self.ranges.items()}

    def __getstate__(self) -> dict[str, Any]:  # loader workers started by spawn: no open files
        return {**self.__dict__, "_open": OrderedDict()}

    def _item(self, key: str) -> int | None:
        if self.images is None:
            return None
        image, _, crop = key.partition(".")
        return int(image) + int(crop) * self.images

    def _shard_of(self, kind: str, key: str) -> tuple[Path, int] | None:
        """The precomputed shard holding ``key``, and its row there."""
        item = self._item(key)
        if item is None or not self.ranges[kind]:
            return None
        at = bisect.bisect_right(self._starts[kind], item) - 1
        if at < 0:
            return None
        start, end, path = self.ranges[kind][at]
        return (path, item - start) if start <= item < end else None

    def _read(self, path: Path, row: int) -> torch.Tensor:
        rows = self._open.pop(path, None)
        if rows is None:
            rows = _Rows(path)
            while len(self._open) >= OPEN_SHARDS:
                self._open.popitem(last=False)[1].close()
        self._open[path] = rows
        return rows.row(row)

    def _get(self, kind: str, key: str) -> torch.Tensor | None:
        found = self.entries[kind].get(key)
        if found is None:
            place = self._shard_of(kind, key)
            found = self._read(*place) if place is not None else None
        return found

    def lookup(self, kind: str, keys: list[str], compute: Callable[[list[int]], torch.Tensor], device: Any) -> torch.Tensor:
        """The entries of ``keys``; the missing ones computed by ``compute(positions)`` (a
        tensor with a row per position) and kept."""
        rows: list[torch.Tensor | None] = [self._get(kind, key) for key in keys]
        missing = [i for i, row in enumerate(rows) if row is None]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            computed = compute(missing).detach().to("cpu", self.dtype)
            for row, position in zip(computed, missing):
                rows[position] = self.entries[kind][keys[position]] = self.pending[kind][keys[position]] = row.contiguous()
        return torch.stack(rows).to(device=device, dtype=torch.float32)  # type: ignore[arg-type]

    def has(self, key: str, kinds: tuple[str, ...]) -> bool:
        return all(key in self.entries[kind] or self._shard_of(kind, key) is not None for kind in kinds)

    def flush(self) -> None:
        """Write what was computed since the last flush as new shards (one set per process; runs
        sharing the directory take turns, so no two pick the same shard number)."""
        if not any(self.pending.values()):
            return
        with shared_lock(self.directory / f"shards-r{self.rank}"):
            for kind, tensors in self.pending.items():
                if tensors:
                    number = len(list(self.directory.glob(f"{kind}-r{self.rank}-*.safetensors")))
                    save_tensors(dict(tensors), self.directory / f"{kind}-r{self.rank}-{number:05d}.safetensors")
                    tensors.clear()

    def count(self, kind: str) -> int:
        return len(self.entries[kind]) + sum(end - start for start, end, _ in self.ranges[kind])

    def stats(self) -> dict[str, Any]:
        return {"directory": str(self.directory), "hits": self.hits, "misses": self.misses,
                "entries": {kind: self.count(kind) for kind in KINDS}}


def cached_inputs(cache: FrozenCache, model: Any, batch: dict[str, Any], images: torch.Tensor, with_encoder: bool,
                  autocast: Callable[[], Any]) -> dict[str, torch.Tensor]:
    """Keyword inputs of :meth:`GenHancerModel.forward` from the cache, computing what is
    missing with the model's own methods (the same work an uncached step does)."""
    keys = batch["cache_keys"]
    inputs = {"target_parameters": cache.lookup("targets", keys, lambda rows: model.target_parameters(images[rows]), images.device)}
    if with_encoder:
        def global_token(rows: list[int]) -> torch.Tensor:
            with autocast():
                return model.frozen_global_token(images[rows])

        inputs["global_token"] = cache.lookup("global_token", keys, global_token, images.device)
    return inputs
