"""Shared fixtures: tiny recipes and a helper that runs them in-process."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

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


def write_recipe(directory: Path, data: dict[str, Any], name: str = "recipe.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def tiny_recipe(tmp_path: Path) -> Path:
    return write_recipe(tmp_path, TINY)


def run_recipe(recipe: Path, output_dir: Path, overrides: Iterable[str] = (), plugins: Iterable[tuple[Any, str]] = (), **kwargs: Any) -> dict[str, Any]:
    """Run a recipe in this process, as ``genhancer run`` would."""
    from genhancer_plugins.engine import Run
    from genhancer_plugins.manager import load_plugins
    from genhancer_plugins.recipe import load_recipe

    loaded = load_recipe(recipe, list(overrides))
    manager = load_plugins(extra=plugins)
    return Run(loaded, manager, output_dir, show_progress=False, **kwargs).execute()
