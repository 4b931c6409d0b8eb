"""Small synthetic copies of the real-image layouts, for ``genhancer rehearse``: photo-like
JPEGs a little larger than the encoder's resolution (so the crop and resize run as on CC3M),
as an image folder or as img2dataset webdataset shards."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

SAMPLES = 8


def _photo(size: int, index: int) -> Image.Image:
    """A 4:3 image with smooth gradients and a few blocks (what JPEG decoding and cropping see)."""
    rng = np.random.default_rng(index)
    width, height = int(size * 1.5), int(size * 1.125)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    base = np.stack([np.sin(6 * x + rng.uniform(0, 6)), np.cos(5 * y + rng.uniform(0, 6)), np.sin(4 * (x + y))], axis=-1)
    array = ((base * 0.5 + 0.5) * 255).astype(np.uint8)
    for _ in range(3):
        top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
        array[top:top + height // 4, left:left + width // 4] = rng.integers(0, 255, 3)
    return Image.fromarray(array)


def _jpeg(size: int, index: int) -> bytes:
    buffer = io.BytesIO()
    _photo(size, index).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_sample_images(root: Path, image_size: int, count: int = SAMPLES) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        (root / f"{index:06d}.jpg").write_bytes(_jpeg(image_size, index))
    return root


def write_sample_shards(root: Path, image_size: int, count: int = SAMPLES, per_shard: int = 4) -> list[str]:
    """img2dataset's layout: ``00000.tar`` with ``<key>.jpg/.txt/.json`` and ``00000_stats.json``."""
    root.mkdir(parents=True, exist_ok=True)
    shards = []
    for shard in range(0, count, per_shard):
        path = root / f"{shard // per_shard:05d}.tar"
        with tarfile.open(path, "w") as tar:
            for index in range(shard, min(shard + per_shard, count)):
                key = f"{index:09d}"
                for suffix, data in (("jpg", _jpeg(image_size, index)), ("txt", b"a synthetic photo"), ("json", b"{}")):
                    info = tarfile.TarInfo(f"{key}.{suffix}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        (root / f"{shard // per_shard:05d}_stats.json").write_text(json.dumps({"successes": min(per_shard, count - shard)}))
        shards.append(str(path))
    return shards


def write_sample_dataset(root: Path, image_size: int, count: int = SAMPLES) -> Path:
    """A Hugging Face dataset saved with ``save_to_disk``: an ``image`` column of JPEGs (and a caption)."""
    import datasets

    rows = {"image": [{"bytes": _jpeg(image_size, index), "path": None} for index in range(count)],
            "caption": [f"sample {index}" for index in range(count)]}
    features = datasets.Features({"image": datasets.Image(), "caption": datasets.Value("string")})
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(root))
    return root
