"""A synthetic benchmark in MMVP-VLM's exact on-disk layout.

Each of the nine patterns gets pairs of drawn images that differ in one
attribute (colour, count, position, ...), with one statement per image. Used
by the tests and the CPU demo; ``python -m genhancer_evaluators.synthetic_mmvp
OUT [--pairs N]`` writes one.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

from .mmvp import PATTERNS

SIZE = 96
Draw = Callable[[ImageDraw.ImageDraw, np.random.Generator, int], None]


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(60, 200, 3))


def _disc(draw: ImageDraw.ImageDraw, x: float, y: float, r: float, fill) -> None:
    draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)


def _orientation(d, rng, variant):
    x, y, r = SIZE / 2, SIZE / 2, 28
    tip = -r if variant == 0 else r
    d.polygon([(x, y + tip), (x - r, y - tip), (x + r, y - tip)], fill=_colour(rng))


def _presence(d, rng, variant):
    _disc(d, SIZE / 2, SIZE / 2, 30, _colour(rng))
    if variant == 0:
        _disc(d, SIZE / 2, SIZE / 2, 8, (255, 255, 255))


def _state(d, rng, variant):
    box = [24, 24, 72, 72]
    if variant == 0:
        d.rectangle(box, fill=_colour(rng))
    else:
        d.rectangle(box, outline=_colour(rng), width=3)


def _quantity(d, rng, variant):
    colour = _colour(rng)
    for k in range(2 if variant == 0 else 3):
        _disc(d, 20 + 28 * k, SIZE / 2, 10, colour)


def _position(d, rng, variant):
    left, right = (28, 68) if variant == 0 else (68, 28)
    _disc(d, left, SIZE / 2, 14, _colour(rng))
    d.rectangle([right - 14, SIZE / 2 - 14, right + 14, SIZE / 2 + 14], fill=_colour(rng))


def _color(d, rng, variant):
    _disc(d, SIZE / 2, SIZE / 2, 28, (220, 30, 30) if variant == 0 else (30, 30, 220))


def _structure(d, rng, variant):
    if variant == 0:
        d.rectangle([22, 22, 74, 74], fill=_colour(rng))
    else:
        _disc(d, SIZE / 2, SIZE / 2, 26, _colour(rng))


def _text(d, rng, variant):
    d.text((SIZE / 2 - 4, SIZE / 2 - 6), "A" if variant == 0 else "B", fill=(0, 0, 0))


def _viewpoint(d, rng, variant):
    _disc(d, SIZE / 2, SIZE / 2, 36 if variant == 0 else 10, _colour(rng))


SCENES: dict[str, tuple[Draw, tuple[str, str]]] = {
    "Orientation and Direction": (_orientation, ("the triangle points up", "the triangle points down")),
    "Presence of Specific Features": (_presence, ("the circle has a white dot", "the circle has no dot")),
    "State and Condition": (_state, ("the square is filled", "the square is empty")),
    "Quantity and Count": (_quantity, ("there are two circles", "there are three circles")),
    "Positional and Relational Context": (_position, ("the circle is left of the square", "the circle is right of the square")),
    "Color and Appearance": (_color, ("the circle is red", "the circle is blue")),
    "Structural Characteristics": (_structure, ("the shape is a square", "the shape is a circle")),
    "Texts": (_text, ("the letter a", "the letter b")),
    "Viewpoint and Perspective": (_viewpoint, ("the circle is close", "the circle is far away")),
}


def write_synthetic_mmvp(root: Path, pairs_per_pattern: int = 3, seed: int = 0) -> Path:
    """Write ``Questions.csv`` and ``MLLM_VLM Images/<Type>/<id>.jpg``; return ``root``."""
    root = Path(root)
    images = root / "MLLM_VLM Images"
    rng = np.random.default_rng(seed)
    rows = []
    qid = 1
    for pattern, (draw_scene, statements) in SCENES.items():
        folder_name = PATTERNS[pattern][0]
        folder = images / folder_name
        folder.mkdir(parents=True, exist_ok=True)
        for _ in range(pairs_per_pattern):
            background = tuple(int(c) for c in rng.integers(200, 256, 3))
            order = [0, 1] if rng.random() < 0.5 else [1, 0]  # which variant comes first varies
            for variant in order:
                image = Image.new("RGB", (SIZE, SIZE), background)
                draw_scene(ImageDraw.Draw(image), rng, variant)
                image.save(folder / f"{qid}.jpg", quality=95)
                rows.append({"Question ID": qid, "Type": folder_name, "Statement": statements[variant]})
                qid += 1
    with (root / "Questions.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["Question ID", "Type", "Statement"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def _scenes(count: int, seed: int) -> list[tuple[str, Image.Image]]:
    """``count`` drawn scenes (pattern name, image) from the MMVP patterns' drawings."""
    rng = np.random.default_rng(seed)
    out = []
    for index in range(count):
        pattern, (draw_scene, statements) = list(SCENES.items())[index % len(SCENES)]
        image = Image.new("RGB", (SIZE, SIZE), tuple(int(c) for c in rng.integers(200, 256, 3)))
        draw_scene(ImageDraw.Draw(image), rng, index % 2)
        out.append((statements[index % 2], image))
    return out


def write_sample_classes(root: Path, classes: int = 2, per_class: int = 2) -> Path:
    """An ImageFolder (``root/<class>/*.jpg``) for the zero-shot evaluator's rehearsal."""
    for index, (_, image) in enumerate(_scenes(classes * per_class, seed=1)):
        folder = Path(root) / f"class{index % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{index}.jpg", quality=95)
    return Path(root)


def write_sample_pairs(root: Path, count: int = 4) -> Path:
    """A retrieval JSONL (``{"image", "caption"}`` per line, paths relative to it) and its images."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for index, (caption, image) in enumerate(_scenes(count, seed=2)):
        image.save(root / f"{index}.jpg", quality=95)
        lines.append(json.dumps({"image": f"{index}.jpg", "caption": caption}))
    (root / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    return root / "pairs.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output")
    parser.add_argument("--pairs", type=int, default=3, help="pairs per pattern")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(write_synthetic_mmvp(Path(args.output), args.pairs, args.seed))


if __name__ == "__main__":
    main()
