"""What tests share: tiny recipes (from the components' own `tiny` presets), a
helper that runs them in-process, and the repository root. Imported as
``helpers`` (``pythonpath = ["tests"]`` in pyproject), never from conftest."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import yaml

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "name": "test-tiny",
    "encoder": {"name": "clip", "preset": "tiny"},
    "tokenizer": {"name": "vae", "preset": "tiny"},
    "denoiser": {"name": "rectified_flow", "preset": "tiny"},
    "conditioner": {"name": "cls"},
    "data": {"name": "synthetic", "params": {"num_images": 64}, "batch_size": 8},
    "train": {"seed": 0, "mixed_precision": "no"},
    "stage1": {"steps": 6, "learning_rate": 1e-3},
    "stage2": {"steps": 4, "learning_rate": 1e-3},
}


def tiny_preset(package: str, kind_name: str) -> dict[str, Any]:
    """A component's `tiny` preset, e.g. ``tiny_preset("genhancer_hf_encoders", "clip")["config"]``."""
    from genhancer_plugins import load_presets

    return load_presets(package)[kind_name]["tiny"]


def tiny_encoder_config(family: str = "clip", text: bool = True, projection_dim: int | None = None) -> dict[str, Any]:
    """The `tiny` encoder preset's config (vision, optionally text and projection)."""
    config = dict(tiny_preset("genhancer_hf_encoders", family)["config"])
    if not text:
        config.pop("text", None)
    if projection_dim is not None:
        config["projection_dim"] = projection_dim
    elif family != "clip" or not text:
        config.pop("projection_dim", None)
    return config


def write_recipe(directory: Path, data: dict[str, Any], name: str = "recipe.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_recipe(recipe: Path, output_dir: Path, overrides: Iterable[str] = (), plugins: Iterable[tuple[Any, str]] = (), **kwargs: Any) -> dict[str, Any]:
    """Run a recipe in this process, as ``genhancer run`` would."""
    from genhancer_plugins.training.engine import Run
    from genhancer_plugins.registry.manager import load_plugins
    from genhancer_plugins.recipe.schema import load_recipe

    manager = load_plugins(extra=plugins)
    loaded = load_recipe(recipe, list(overrides), manager)
    return Run(loaded, manager, output_dir, show_progress=False, **kwargs).execute()
