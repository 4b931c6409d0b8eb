"""Dataset ``webdataset``: image-text tar shards in the img2dataset layout.

``00000.tar`` holds ``000000000.jpg`` / ``.txt`` / ``.json`` per sample (the
form CC3M is usually downloaded in). Streaming, sharded across processes and
dataloader workers, with a shuffle buffer. Captions are not used by the method
but ride along as ``caption`` for plugins.

Each epoch is a deterministic stream for a given (seed, epoch, process,
worker): the shard order is shuffled per epoch, split across processes (then
workers), and the stream repeats its shards if it runs short, so every process
yields the same number of batches. The engine ends an epoch after
``num_samples // (batch_size * processes)`` batches.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Iterator

import torch

from .common import load_image, process_rank, random_resized_crop, sample, skip_entry, to_tensor
from .params import WebDatasetParams


def expand_shards(spec: str | list[str]) -> list[str]:
    import braceexpand

    patterns = [spec] if isinstance(spec, str) else list(spec)
    return [shard for pattern in patterns for shard in braceexpand.braceexpand(pattern)]


def _is_local(shard: str) -> bool:
    return "://" not in shard and not shard.startswith("pipe:")


def count_from_stats(shards: list[str]) -> int | None:
    """img2dataset writes ``00000_stats.json`` beside ``00000.tar`` with a ``successes`` count."""
    total = 0
    for shard in shards:
        stats = Path(shard[: -len(".tar")] + "_stats.json") if shard.endswith(".tar") else None
        if stats is None or not stats.is_file():
            return None
        total += int(json.loads(stats.read_text())["successes"])
    return total


class WebDataset(torch.utils.data.IterableDataset):
    def __init__(self, params: WebDatasetParams, image_size: int, seed: int = 0):
        self.shards = expand_shards(params.shards)
        if not self.shards:
            raise FileNotFoundError(f"webdataset: data.params.shards {params.shards!r} names no shard")
        missing = [s for s in self.shards if _is_local(s) and not Path(s).is_file()]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise FileNotFoundError(f"webdataset: shard {missing[0]} not found{more}")
        self.num_samples = params.num_samples or count_from_stats(self.shards)
        if self.num_samples is None:
            raise ValueError(
                "webdataset: epoch length unknown: set data.params.num_samples (no *_stats.json beside the shards)"
            )
        self.params = params
        self.image_size = image_size
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def slot_shards(self, rank: int, world: int, worker: int, workers: int) -> tuple[list[str], int, int]:
        """(shards, stride, offset) that process ``rank`` of ``world``, loader worker ``worker`` of
        ``workers``, reads this epoch: a disjoint share of the shuffled shards; with fewer shards
        than slots, every slot reads them all and keeps every ``stride``-th sample from ``offset``."""
        order = list(self.shards)
        random.Random(f"{self.seed}-{self.epoch}").shuffle(order)
        slots, slot = world * workers, rank * workers + worker
        if len(order) >= slots:
            return order[slot::slots], 1, 0
        return order, slots, slot

    def _raw_samples(self, shards: list[str], skipped: list[str]) -> Iterator[dict[str, Any]]:
        import webdataset as wds

        def note(exc: Exception) -> bool:  # a broken shard or member: record, keep streaming
            skipped.append(f"{type(exc).__name__}: {exc}")
            return True

        yield from wds.tarfile_samples(({"url": s} for s in shards), handler=note)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        rank, world = process_rank()
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        shards, stride, offset = self.slot_shards(rank, world, worker, workers)
        rng = random.Random(f"{self.seed}-{self.epoch}-{rank}-{worker}")
        skipped: list[str] = []
        buffer: list[dict[str, Any]] = []
        while True:  # repeat the shards if this slot runs short; the engine ends the epoch
            seen = 0
            for position, raw in enumerate(self._raw_samples(shards, skipped)):
                if position % stride != offset:
                    continue
                item = self._decode(raw, skipped, rng)
                if item is None:
                    continue
                seen += 1
                if len(buffer) < self.params.shuffle_buffer:
                    buffer.append(item)
                    continue
                pick = rng.randrange(len(buffer))
                buffer[pick], item = item, buffer[pick]
                yield self._finish(item, skipped)
            while buffer:
                yield self._finish(buffer.pop(rng.randrange(len(buffer))), skipped)
            if seen == 0:
                raise ValueError(f"webdataset: no readable sample in {len(shards)} shard(s) (first: {shards[0]}); skipped: {skipped[:3]}")

    @staticmethod
    def _finish(item: dict[str, Any], skipped: list[str]) -> dict[str, Any]:
        item["skipped"] = list(skipped)
        skipped.clear()
        return item

    def _decode(self, raw: dict[str, Any], skipped: list[str], rng: random.Random) -> dict[str, Any] | None:
        key = f"{Path(str(raw.get('__url__', ''))).name}/{raw.get('__key__', '?')}"
        data = next((raw[k] for k in self.params.image_keys if k in raw), None)
        if data is None:
            skipped.append(skip_entry(key, reason=f"no image under {', '.join(self.params.image_keys)}"))
            return None
        try:
            image = load_image(data, self.params.decode_side or 2 * self.image_size, self.params.max_pixels)
        except Exception as exc:  # truncated, not an image, a decompression bomb: skip and say why
            skipped.append(skip_entry(key, exc))
            return None
        crop = random_resized_crop(image, self.image_size, self.params.crop_scale, rng, self.params.crop_ratio)
        caption = raw["txt"].decode("utf-8", "replace") if isinstance(raw.get("txt"), bytes) else ""
        return sample(to_tensor(crop), key, [], caption=caption)
