"""The shapes world: drawn images with one coarse label and fine attributes.

Coarse label: the kind of shape (what a CLIP-like encoder learns first).
Fine attributes, the kind MMVP shows CLIP missing: colour, count,
position, orientation (the side a notch marks), size and fill. Nuisance factors (background tint,
placement jitter, size jitter) vary independently. Everything is a pure
function of (seed, index), so any image can be redrawn exactly, and a pair
that differs in one attribute shares every other factor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "cross")  # distinct silhouettes: the coarse label
COLOURS = {
    "red": (215, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 215),
    "yellow": (230, 200, 30), "purple": (140, 50, 170), "orange": (240, 130, 20),
}
ORIENTATIONS = ("up", "right", "down", "left")
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "colour": tuple(COLOURS),
    "count": ("one", "two"),
    "position": ("left", "right"),
    "orientation": ORIENTATIONS,
    "size": ("small", "large"),
    "fill": ("filled", "outline"),
}
FINE = tuple(a for a in ATTRIBUTES if a != "shape")


@dataclass(frozen=True)
class Scene:
    shape: int
    colour: int
    count: int
    position: int
    orientation: int
    size: int
    fill: int
    nuisance: int  #: seed of background tint and jitter

    def labels(self) -> dict[str, int]:
        return {a: getattr(self, a) for a in ATTRIBUTES}

    def words(self) -> dict[str, str]:
        return {a: ATTRIBUTES[a][getattr(self, a)] for a in ATTRIBUTES}


def random_scene(rng: np.random.Generator) -> Scene:
    values = {a: int(rng.integers(len(v))) for a, v in ATTRIBUTES.items()}
    return Scene(**values, nuisance=int(rng.integers(2**31)))


def scene_at(seed: int, index: int) -> Scene:
    return random_scene(np.random.default_rng([seed, index]))


def changed(scene: Scene, attribute: str, rng: np.random.Generator) -> Scene:
    """The same scene with ``attribute`` set to another value (everything else kept)."""
    current = getattr(scene, attribute)
    options = [v for v in range(len(ATTRIBUTES[attribute])) if v != current]
    return replace(scene, **{attribute: int(rng.choice(options))})


def _outline(kind: str) -> list[tuple[float, float]]:
    """Unit outline centred on the origin (y grows downwards)."""
    if kind == "circle":
        return [(math.cos(a), math.sin(a)) for a in np.linspace(0, 2 * math.pi, 24, endpoint=False)]
    if kind == "square":
        return [(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)]
    if kind == "triangle":
        return [(0, -1), (0.95, 0.8), (-0.95, 0.8)]
    w = 0.38  # cross
    return [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w), (-w, -w)]


# Orientation: a notch (a dot in the background tint) marks the side the object faces.
_FACING = {0: (0.0, -0.5), 1: (0.5, 0.0), 2: (0.0, 0.5), 3: (-0.5, 0.0)}


def render(scene: Scene, size: int = 64) -> Image.Image:
    rng = np.random.default_rng(scene.nuisance)
    tint = rng.integers(185, 250, 3)
    image = Image.new("RGB", (size, size), tuple(int(t) for t in tint))
    draw = ImageDraw.Draw(image)
    count = scene.count + 1
    radius = size * (0.11 if scene.size == 0 else 0.19) * rng.uniform(0.92, 1.08)
    # objects stacked vertically inside the left or right half
    x_centre = size * (0.27 if scene.position == 0 else 0.73) + rng.uniform(-2, 2) * size / 64
    slots = np.array([size * 0.27, size * 0.73]) if count > 1 else np.array([size * 0.5])
    colour = COLOURS[ATTRIBUTES["colour"][scene.colour]]
    outline = _outline(SHAPES[scene.shape])
    dx, dy = _FACING[scene.orientation]
    scale = radius if count == 1 else min(radius, size * 0.2)
    for y_centre in slots:
        y = y_centre + rng.uniform(-1.5, 1.5) * size / 64
        points = [(x_centre + scale * px, y + scale * py) for px, py in outline]
        if scene.fill == 0:
            draw.polygon(points, fill=colour)
            notch = tuple(int(t) for t in tint)
        else:
            draw.polygon(points, outline=colour, width=max(1, size // 40))
            notch = colour
        nx, ny, nr = x_centre + dx * scale, y + dy * scale, max(1.5, scale * 0.28)
        draw.ellipse([nx - nr, ny - nr, nx + nr, ny + nr], fill=notch)
    return image


def caption(scene: Scene) -> str:
    w = scene.words()
    plural = "" if scene.count == 0 else ("es" if w["shape"].endswith("s") else "s")
    return (f"{w['count']} {w['size']} {w['fill']} {w['colour']} {w['shape']}{plural} "
            f"facing {w['orientation']} on the {w['position']}")


def pairs(attribute: str, count: int, seed: int) -> Iterator[tuple[Scene, Scene]]:
    """``count`` scene pairs differing in ``attribute`` only."""
    rng = np.random.default_rng([seed, ATTRIBUTES_INDEX[attribute], 7])
    for _ in range(count):
        scene = random_scene(rng)
        yield scene, changed(scene, attribute, rng)


ATTRIBUTES_INDEX = {a: i for i, a in enumerate(ATTRIBUTES)}
