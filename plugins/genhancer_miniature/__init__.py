"""The miniature world: GenHancer's claims at laptop scale.

Dataset ``shapes``, pretrainer ``shapes_classifier`` (the "original CLIP"),
tokenizers ``pixels`` (continuous) and ``palette`` (discrete), evaluator
``shapes_probe``.
"""

from __future__ import annotations

from typing import Any

from genhancer_plugins import ComponentSpec, hookimpl

from .params import PaletteParams, PixelParams, ProbeParams, ShapesClassifierParams, ShapesDataParams


def _dataset(params: ShapesDataParams, image_size: int, seed: int = 0) -> Any:
    from .components import ShapesDataset

    return ShapesDataset(params, image_size, seed)


def _pretrainer(params: ShapesClassifierParams, seed: int = 0) -> Any:
    from .components import ShapesClassifier

    return ShapesClassifier(params)


def _pixels(params: PixelParams, meta: bool = False) -> Any:
    from .components import PixelTokenizer

    return PixelTokenizer(params)


def _palette(params: PaletteParams, meta: bool = False) -> Any:
    from .components import PaletteTokenizer

    return PaletteTokenizer(params)


def _probe(params: ProbeParams) -> Any:
    from .probes import ShapesProbeEvaluator

    return ShapesProbeEvaluator(params)


def _in_memory(params: Any, directory: Any, image_size: int) -> Any:
    return params  # drawn in memory: nothing to write


def _small_probe(params: Any, directory: Any) -> Any:
    return params.model_copy(update={"train_images": 64, "test_images": 32, "pairs": 8})  # drawn in memory; a few scenes


@hookimpl
def genhancer_components() -> list[ComponentSpec]:
    return [
        ComponentSpec(kind="dataset", name="shapes", factory=_dataset, params=ShapesDataParams, rehearsal=_in_memory,
                      description="drawn shapes with a coarse label and fine attributes (colour, count, position, ...)"),
        ComponentSpec(kind="pretrainer", name="shapes_classifier", factory=_pretrainer, params=ShapesClassifierParams,
                      description="trains a tiny CLIP vision tower on the coarse label only (cached per machine)"),
        ComponentSpec(kind="tokenizer", name="pixels", factory=_pixels, params=PixelParams,
                      description="continuous: pixels in [-1, 1], pixel-unshuffled into channels"),
        ComponentSpec(kind="tokenizer", name="palette", factory=_palette, params=PaletteParams,
                      description="discrete: pooled pixels quantised to a levels^3 colour palette"),
        ComponentSpec(kind="evaluator", name="shapes_probe", factory=_probe, params=ProbeParams, rehearsal=_small_probe,
                      description="per-attribute linear probes, pair tests, coarse-label guards on the global token"),
    ]
