"""Dataset ``image_folder``: every image under a directory, or a JSONL/CSV list.

Training preprocessing as the paper's release does it: a random resized crop
covering 90-100 % of the image (bicubic) at the encoder's resolution; each
component applies its own normalisation afterwards. An unreadable image is
skipped (the next one is used) and reported, never a crash mid-run.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

import torch

from .common import load_image, random_resized_crop, sample, skip_entry, to_tensor
from .params import ImageFolderParams

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
MAX_CONSECUTIVE_FAILURES = 50


def read_list_file(path: Path, allow_outside: bool = False) -> list[Path]:
    if not path.is_file():
        raise FileNotFoundError(f"image_folder: data.params.list_file {path} not found")
    base = path.parent
    entries: list[str] = []
    if path.suffix.lower() == ".jsonl":
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                entries.append(record["image"] if "image" in record else record["path"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(f"{path}:{number}: expected a JSON object with an `image` (or `path`) field") from None
    elif path.suffix.lower() == ".csv":
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            column = next((c for c in ("image", "path") if c in (reader.fieldnames or [])), None)
            if column is None:
                raise ValueError(f"{path}: CSV needs an `image` or `path` column, found {reader.fieldnames}")
            entries = [row[column] for row in reader]
    else:
        raise ValueError(f"{path}: list files are .jsonl or .csv")
    files = [Path(e) if Path(e).is_absolute() else base / e for e in entries]
    if not allow_outside:
        root = base.resolve()
        for entry, file in zip(entries, files):
            if not file.resolve().is_relative_to(root):
                raise ValueError(f"{path}: entry {entry!r} lies outside {root}; list files name images below their own folder "
                                 "(set data.params.allow_outside_paths: true to allow absolute and ../ paths)")
    return files


class ImageFolder(torch.utils.data.Dataset):
    def __init__(self, params: ImageFolderParams, image_size: int, seed: int = 0):
        if params.root is not None:
            root = Path(params.root).expanduser()
            if not root.is_dir():
                raise FileNotFoundError(f"image_folder: data.params.root {root} is not a directory")
            self.files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            self.base = root
        else:
            list_file = Path(params.list_file).expanduser()
            self.files = read_list_file(list_file, params.allow_outside_paths)
            self.base = list_file.parent
        if not self.files:
            raise FileNotFoundError(f"image_folder: no images found ({params.root or params.list_file})")
        self.params = params
        self.image_size = image_size
        self.seed, self.epoch = seed, 0

    def __len__(self) -> int:
        return len(self.files)

    def set_epoch(self, epoch: int) -> None:
        """Crops are keyed by (seed, epoch, index): a sample is cropped alike on any number of processes or
        loader workers, and anew each epoch."""
        self.epoch = epoch

    def _key(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.base))
        except ValueError:
            return str(path)

    def __getitem__(self, index: int) -> dict[str, Any]:
        skipped: list[str] = []
        for attempt in range(MAX_CONSECUTIVE_FAILURES):
            path = self.files[(index + attempt) % len(self.files)]
            try:
                image = load_image(str(path), self.params.decode_side or 2 * self.image_size, self.params.max_pixels)
            except Exception as exc:  # unreadable, truncated, not an image, a decompression bomb: skip and say why
                skipped.append(skip_entry(self._key(path), exc))
                continue
            rng = random.Random(f"{self.seed}-{self.epoch}-{index}")  # see set_epoch
            crop = random_resized_crop(image, self.image_size, self.params.crop_scale, rng, self.params.crop_ratio)
            return sample(to_tensor(crop), self._key(path), skipped)
        if len(set(skipped)) == len(self.files):
            raise ValueError(f"image_folder: no readable image among the {len(self.files)} file(s) ({', '.join(skipped[:3])}, ...)")
        raise ValueError(f"image_folder: {MAX_CONSECUTIVE_FAILURES} unreadable images in a row from {skipped[0]}; is this an image collection?")
