"""Shared image handling for the real-image datasets."""

from __future__ import annotations

import io
import math
import random
from typing import Any

import torch
from PIL import Image

from genhancer_plugins import first_line, to_rgb, to_tensor  # noqa: F401  (to_tensor: re-exported for the datasets)

CROP_RATIO = (3 / 4, 4 / 3)
CROP_ATTEMPTS = 10


def crop_box(
    width: int, height: int, scale: tuple[float, float], rng: random.Random, ratio: tuple[float, float] = CROP_RATIO
) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of a random resized crop, as the release samples it.

    Up to ten draws of an area share in ``scale`` and a log-uniform aspect in
    ``ratio``; the first box that fits is placed uniformly (row first, then
    column). If none fits (a 16:9 photo at scale >= 0.9 never does), the
    fallback is a centred crop whose aspect is clipped to ``ratio``, so wide
    and tall images are cropped, not squashed.
    """
    area = width * height
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(CROP_ATTEMPTS):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(log_low, log_high))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = rng.randint(0, height - h)
            left = rng.randint(0, width - w)
            return left, top, left + w, top + h
    image_aspect = width / height
    if image_aspect < ratio[0]:  # too tall: full width, height clipped to the tallest allowed aspect
        w, h = width, int(round(width / ratio[0]))
    elif image_aspect > ratio[1]:  # too wide: full height, width clipped to the widest allowed aspect
        w, h = int(round(height * ratio[1])), height
    else:
        w, h = width, height
    top, left = (height - h) // 2, (width - w) // 2
    return left, top, left + w, top + h


def random_resized_crop(
    image: Image.Image, size: int, scale: tuple[float, float], rng: random.Random, ratio: tuple[float, float] = CROP_RATIO
) -> Image.Image:
    """A :func:`crop_box` crop resized bicubic to size x size."""
    return image.resize((size, size), Image.BICUBIC, box=crop_box(*image.size, scale, rng, ratio))


def load_image(data: bytes | str, min_side: int | None = None, max_pixels: int | None = None) -> Image.Image:
    """Decode fully (truncated files fail here, not later) and convert to RGB.

    A JPEG far larger than needed is decoded at 1/2, 1/4 or 1/8 scale (PIL's
    ``draft``) with both sides kept at least ``min_side``; any other image with more
    than ``max_pixels`` pixels is refused (the caller skips and reports it) instead of
    decoding hundreds of megabytes."""
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    with Image.open(source) as image:
        if image.format == "JPEG" and min_side:
            image.draft("RGB", (min_side, min_side))
        elif max_pixels and image.width * image.height > max_pixels:
            raise ValueError(f"{image.width}x{image.height} pixels, above data.params.max_pixels ({max_pixels})")
        image.load()
        return to_rgb(image, copy=False)  # this image is ours: no full-size copy


def skip_entry(key: str, exc: BaseException | None = None, reason: str = "") -> str:
    """What a skipped sample is reported as: its key and why (PIL's own words, one line)."""
    if exc is not None:
        text = first_line(exc)
        reason = type(exc).__name__ if text == type(exc).__name__ else f"{type(exc).__name__}: {text}"
    return f"{key} ({reason[:160]})" if reason else key


def sample(pixel_values: torch.Tensor, key: str, skipped: list[str], **extra: Any) -> dict[str, Any]:
    """A dataset item. ``skipped`` carries the keys of unreadable samples met on
    the way, so the engine can count and report them without crashing."""
    return {"pixel_values": pixel_values, "key": key, "skipped": skipped, **extra}


def process_rank() -> tuple[int, int]:
    """(rank, world size) of this process in a launched job; (0, 1) alone (streams split by it)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1
