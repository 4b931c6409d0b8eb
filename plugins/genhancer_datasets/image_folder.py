"""Dataset ``image_folder``: every image under a directory, recursively.

Training preprocessing as the paper's release does it: a random resized crop
covering 90-100 % of the image (bicubic) at the encoder's resolution; each
component applies its own normalisation afterwards.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from .params import ImageFolderParams
from .synthetic import to_tensor

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


def random_resized_crop(image: Image.Image, size: int, scale: tuple[float, float], rng: random.Random) -> Image.Image:
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


class ImageFolder(torch.utils.data.Dataset):
    def __init__(self, params: ImageFolderParams, image_size: int, seed: int = 0):
        root = Path(params.root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"image_folder: data.params.root {root} is not a directory")
        self.files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise FileNotFoundError(f"image_folder: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}")
        self.root = root
        self.params = params
        self.image_size = image_size
        self.seed = seed

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.files[index]
        # torch's RNG: seeded per step by the engine (and per worker by the DataLoader).
        rng = random.Random(int(torch.randint(0, 2**31 - 1, (1,))) ^ index)
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
        except OSError as exc:
            raise OSError(f"image_folder: cannot read {path}: {exc}") from None
        crop = random_resized_crop(image, self.image_size, self.params.crop_scale, rng)
        return {"pixel_values": to_tensor(crop), "key": str(path.relative_to(self.root))}
