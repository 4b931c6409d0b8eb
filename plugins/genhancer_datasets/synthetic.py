"""Dataset ``synthetic``: procedurally drawn images, no download needed.

Each index always renders the same image for a given seed (coloured circles,
squares and triangles on a coloured background), so runs are reproducible
and resumable, and any image size can be asked for.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from .common import sample, to_tensor
from .params import SyntheticParams


def render(rng: np.random.Generator, size: int, max_shapes: int) -> Image.Image:
    background = tuple(int(c) for c in rng.integers(0, 256, 3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        radius = size * rng.uniform(0.1, 0.3)
        cx, cy = rng.uniform(radius, size - radius, 2)
        kind = int(rng.integers(0, 3))
        box = [cx - radius, cy - radius, cx + radius, cy + radius]
        if kind == 0:
            draw.ellipse(box, fill=colour)
        elif kind == 1:
            draw.rectangle(box, fill=colour)
        else:
            angle = rng.uniform(0, 2 * np.pi)
            points = [
                (cx + radius * np.cos(angle + k * 2 * np.pi / 3), cy + radius * np.sin(angle + k * 2 * np.pi / 3))
                for k in range(3)
            ]
            draw.polygon(points, fill=colour)
    return image


class SyntheticImages(torch.utils.data.Dataset):
    def __init__(self, params: SyntheticParams, image_size: int, seed: int = 0):
        self.params = params
        self.image_size = image_size
        self.seed = seed

    def __len__(self) -> int:
        return self.params.num_images

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, index])
        image = render(rng, self.image_size, self.params.max_shapes)
        return sample(to_tensor(image), f"synthetic-{index:06d}", [])
