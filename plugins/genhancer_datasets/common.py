"""Shared image handling for the real-image datasets."""

from __future__ import annotations

import io
import math
import random
from typing import Any

import numpy as np
import torch
from PIL import Image


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB -> float tensor [3, H, W] in [0, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def random_resized_crop(image: Image.Image, size: int, scale: tuple[float, float], rng: random.Random) -> Image.Image:
    """A crop covering ``scale`` of the area (aspect 3/4..4/3), resized bicubic to size x size."""
    width, height = image.size
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(*scale)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w = int(round(math.sqrt(target * ratio)))
        h = int(round(math.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            left, top = rng.randint(0, width - w), rng.randint(0, height - h)
            return image.resize((size, size), Image.BICUBIC, box=(left, top, left + w, top + h))
    return image.resize((size, size), Image.BICUBIC)


def load_image(data: bytes | str) -> Image.Image:
    """Decode fully (truncated files fail here, not later) and convert to RGB."""
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    with Image.open(source) as image:
        image.load()
        return image.convert("RGB")


def sample(pixel_values: torch.Tensor, key: str, skipped: list[str], **extra: Any) -> dict[str, Any]:
    """A dataset item. ``skipped`` carries the keys of unreadable samples met on
    the way, so the engine can count and report them without crashing."""
    return {"pixel_values": pixel_values, "key": key, "skipped": skipped, **extra}
