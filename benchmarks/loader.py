"""Does the loader keep a GPU fed? Images/s per loader worker on CC3M-like JPEGs, and the
read rate of precomputed cache shards.

CC3M-like: photo-like JPEGs (gradients, blocks and sensor-like noise, so they compress
like photos, about 0.3-0.6 bytes per pixel) at CC3M's typical sizes, 500x375 to 1000x750,
quality 90. Each configuration (an image folder or webdataset shards; 224 or 336 px;
0, 1 or 2 workers) reads one epoch through the dataset plugin and a DataLoader (batch
32, the engine's collate), timed after the first 8 batches (what workers prefetch and
shuffle buffers hold would otherwise count as free); rounds are interleaved
(the machine is shared and noisy). Also timed, in this process: the decode path alone
(open, draft, decode, RGB, crop and bicubic resize, tensor) against the path before
this benchmark's changes, and random row reads from a cache shard of FLUX-VAE-sized
entries at 224 px (the OS's page cache warm, as during an epoch after the first).

    python benchmarks/loader.py                  # 3 rounds, 768 images, about 6 min on 2 cores
    python benchmarks/loader.py --rounds 5 --images 512
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

SIZES = (224, 336)
WORKERS = (0, 1, 2)
BATCH = 32
#: batches read before timing: more than 2 workers x 2 prefetched batches plus a shuffle buffer hold
WARM_BATCHES = 8


def cc3m_like(index: int) -> bytes:
    rng = np.random.default_rng(index)
    width = int(rng.integers(500, 1001))
    height = int(round(width * 0.75))
    y, x = np.mgrid[0:height, 0:width] / width
    base = np.stack([np.sin(7 * x + rng.uniform(0, 6)), np.cos(5 * y + rng.uniform(0, 6)), np.sin(4 * (x + y))], axis=-1)
    array = (base * 0.5 + 0.5) * 200 + rng.normal(0, 12, (height, width, 3))  # texture, so it compresses like a photo
    for _ in range(6):
        top, left = rng.integers(0, height - height // 5), rng.integers(0, width - width // 5)
        array[top:top + height // 5, left:left + width // 5] += rng.normal(0, 40, 3)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(array, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_data(root: Path, count: int) -> tuple[Path, str, float]:
    folder, shards = root / "folder", root / "shards"
    folder.mkdir(parents=True)
    shards.mkdir()
    per_shard, total = max(1, count // 4), 0
    for shard in range(0, count, per_shard):
        with tarfile.open(shards / f"{shard // per_shard:05d}.tar", "w") as tar:
            members = range(shard, min(shard + per_shard, count))
            for index in members:
                data = cc3m_like(index)
                total += len(data)
                (folder / f"{index:06d}.jpg").write_bytes(data)
                info = tarfile.TarInfo(f"{index:09d}.jpg")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        (shards / f"{shard // per_shard:05d}_stats.json").write_text(json.dumps({"successes": len(members)}))
    last = (count - 1) // per_shard
    return folder, str(shards / f"{{00000..{last:05d}}}.tar"), total / count


def epoch_rate(kind: str, source: str, size: int, workers: int, count: int) -> float:
    from genhancer_datasets.image_folder import ImageFolder
    from genhancer_datasets.params import ImageFolderParams, WebDatasetParams
    from genhancer_datasets.webdataset import WebDataset

    from genhancer_plugins.training.model import collate

    if kind == "folder":
        dataset = ImageFolder(ImageFolderParams(root=source), size)
        loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers, collate_fn=collate)
    else:
        dataset = WebDataset(WebDatasetParams(shards=source, shuffle_buffer=64), size)
        loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, num_workers=workers, collate_fn=collate)
    batches = iter(loader)
    for _ in range(WARM_BATCHES):  # workers started, prefetched batches and shuffle buffers drained: not timed
        next(batches)
    start, seen = time.perf_counter(), 0
    for _ in range(count // BATCH - WARM_BATCHES):
        seen += len(next(batches)["keys"])
    return seen / (time.perf_counter() - start)


def decode_before(data: bytes, size: int, rng: random.Random) -> torch.Tensor:
    """The decode path as it was before this benchmark (full-size RGB copy, a second conversion in to_tensor)."""
    from genhancer_datasets.common import crop_box

    from genhancer_plugins.util.images import to_rgb

    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", (2 * size, 2 * size))
        image.load()
        image = to_rgb(image)
    crop = image.resize((size, size), Image.BICUBIC, box=crop_box(*image.size, (0.9, 1.0), rng, (3 / 4, 4 / 3)))
    array = np.asarray(to_rgb(crop), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def decode_now(data: bytes, size: int, rng: random.Random) -> torch.Tensor:
    from genhancer_datasets.common import load_image, random_resized_crop

    from genhancer_plugins.util.images import to_tensor

    return to_tensor(random_resized_crop(load_image(data, 2 * size, 50_000_000), size, (0.9, 1.0), rng))


def decode_ms(decode: object, jpegs: list[bytes], size: int) -> float:
    start = time.perf_counter()
    for index, data in enumerate(jpegs):
        decode(data, size, random.Random(index))  # type: ignore[operator]
    return 1000 * (time.perf_counter() - start) / len(jpegs)


def cache_read_rate(root: Path, rows: int = 1024) -> tuple[float, float]:
    """(rows/s, MB/s) reading batches of 16 random rows from one precomputed shard."""
    from genhancer_plugins.training.cache import FrozenCache, range_shard_name
    from genhancer_plugins.util.files import save_tensors

    cache = FrozenCache(root / "cache", {"benchmark": 1}, torch.float32, 0, images=rows)
    entry = (32, 28, 28)  # FLUX VAE latent mean and log-variance at 224 px
    save_tensors({"rows": torch.randn(rows, *entry)}, cache.directory / range_shard_name("targets", 0, rows))
    cache = FrozenCache(root / "cache", {"benchmark": 1}, torch.float32, 0, images=rows)
    rng, reads, start = random.Random(0), 0, time.perf_counter()
    while time.perf_counter() - start < 3.0:
        keys = [f"{rng.randrange(rows)}.0" for _ in range(16)]
        cache.lookup("targets", keys, lambda missing: torch.zeros(0), "cpu")
        reads += 16
    seconds = time.perf_counter() - start
    return reads / seconds, reads * 4 * int(np.prod(entry)) / seconds / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=768)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="genhancer-loader-") as tmp:
        root = Path(tmp)
        folder, shards, mean_bytes = write_data(root, args.images)
        jpegs = [p.read_bytes() for p in sorted(folder.iterdir())[:64]]
        rates: dict[tuple[str, int, int], list[float]] = {}
        decode: dict[tuple[str, int], list[float]] = {}
        for _ in range(args.rounds):
            for size in SIZES:
                for name, path in (("before", decode_before), ("now", decode_now)):
                    decode.setdefault((name, size), []).append(decode_ms(path, jpegs, size))
                for kind, source in (("folder", str(folder)), ("webdataset", shards)):
                    for workers in WORKERS:
                        rates.setdefault((kind, size, workers), []).append(epoch_rate(kind, source, size, workers, args.images))
        read_rows, read_mb = cache_read_rate(root)
    print(f"{args.images} CC3M-like JPEGs, 500x375 to 1000x750, quality 90, {mean_bytes / 1024:.0f} KB on average; "
          f"{args.rounds} interleaved rounds; 1 torch thread per process")
    print(f"\n{'source':<11} {'size':>4} {'workers':>7} {'images/s (min / median / max)':>32} {'per worker':>10}")
    for (kind, size, workers), values in rates.items():
        median = statistics.median(values)
        print(f"{kind:<11} {size:>4} {workers:>7} {min(values):>10.1f} / {median:>7.1f} / {max(values):>7.1f} {median / max(workers, 1):>10.1f}")
    print(f"\n{'decode path':<11} {'size':>4} {'ms per image (min / median / max)':>36} {'before / now':>12}")
    for size in SIZES:
        for name in ("before", "now"):
            values = decode[(name, size)]
            ratio = statistics.median(decode[("before", size)]) / statistics.median(values)
            print(f"{name:<11} {size:>4} {min(values):>12.2f} / {statistics.median(values):>6.2f} / {max(values):>6.2f} {ratio:>14.2f}")
    print(f"\ncache shard reads (FLUX-VAE-sized rows, 98 KB, page cache warm): {read_rows:,.0f} rows/s, {read_mb:,.0f} MB/s")
    print(f"(command: python benchmarks/loader.py --rounds {args.rounds} --images {args.images})")


if __name__ == "__main__":
    main()
