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

import hashlib
import json
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
    ``j // N`` of image ``j % N``, drawn with that crop's own seed (datasets draw their
    crops from torch's RNG, which is seeded here)."""

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
            sample = dict(self.dataset[index])
        sample["cache_key"] = key
        return sample


class FrozenCache:
    def __init__(self, root: Path, fingerprint: dict[str, Any], dtype: torch.dtype, rank: int = 0):
        key = hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()[:16]
        self.directory = Path(root) / key
        self.directory.mkdir(parents=True, exist_ok=True)
        if not (self.directory / "fingerprint.json").is_file():
            write_json(self.directory / "fingerprint.json", fingerprint)
        self.dtype, self.rank = dtype, rank
        self.entries: dict[str, dict[str, torch.Tensor]] = {kind: {} for kind in KINDS}
        self.pending: dict[str, dict[str, torch.Tensor]] = {kind: {} for kind in KINDS}
        self.hits = self.misses = 0
        from safetensors.torch import load_file

        for shard in sorted(self.directory.glob("*.safetensors")):
            kind = shard.name.split("-")[0]
            if kind in self.entries:
                self.entries[kind].update(load_file(shard))

    def lookup(self, kind: str, keys: list[str], compute: Callable[[list[int]], torch.Tensor], device: Any) -> torch.Tensor:
        """The entries of ``keys``; the missing ones computed by ``compute(positions)`` (a
        tensor with a row per position) and kept."""
        store = self.entries[kind]
        missing = [i for i, key in enumerate(keys) if key not in store]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            computed = compute(missing).detach().to("cpu", self.dtype)
            for row, position in zip(computed, missing):
                store[keys[position]] = self.pending[kind][keys[position]] = row.contiguous()
        return torch.stack([store[key] for key in keys]).to(device=device, dtype=torch.float32)

    def has(self, key: str, kinds: tuple[str, ...]) -> bool:
        return all(key in self.entries[kind] for kind in kinds)

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

    def stats(self) -> dict[str, Any]:
        return {"directory": str(self.directory), "hits": self.hits, "misses": self.misses,
                "entries": {kind: len(store) for kind, store in self.entries.items()}}


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
