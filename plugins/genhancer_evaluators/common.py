"""Helpers shared by the image-text evaluators."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from PIL import Image

from genhancer_plugins import to_rgb


def open_rgb(path: Path) -> Image.Image:
    """A benchmark image as RGB; an unreadable one is an error naming the file."""
    try:
        with Image.open(path) as image:
            return to_rgb(image)
    except OSError as exc:  # PIL's UnidentifiedImageError and truncated files are OSErrors
        raise ValueError(f"{path}: not a readable image ({exc})") from None


def embed_in_batches(items: Sequence[Any], encode: Callable[[Sequence[Any]], torch.Tensor], batch_size: int,
                     load: Callable[[Any], Any] = lambda x: x) -> torch.Tensor:
    from tqdm.auto import tqdm

    chunks = []
    for start in tqdm(range(0, len(items), batch_size), desc="embedding", leave=False, disable=True if len(items) <= batch_size else None):
        chunks.append(encode([load(x) for x in items[start : start + batch_size]]))
    return torch.cat(chunks)
