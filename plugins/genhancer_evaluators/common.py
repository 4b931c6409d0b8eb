"""Helpers shared by the image-text evaluators."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from PIL import Image


def open_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def embed_in_batches(items: Sequence[Any], encode: Callable[[Sequence[Any]], torch.Tensor], batch_size: int,
                     load: Callable[[Any], Any] = lambda x: x) -> torch.Tensor:
    from tqdm.auto import tqdm

    chunks = []
    for start in tqdm(range(0, len(items), batch_size), desc="embedding", leave=False, disable=True if len(items) <= batch_size else None):
        chunks.append(encode([load(x) for x in items[start : start + batch_size]]))
    return torch.cat(chunks)
