"""What tests share: tiny recipes (from the components' own `tiny` presets), a
helper that runs them in-process, and the repository root. Imported as
``helpers`` (``pythonpath = ["tests"]`` in pyproject), never from conftest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genhancer_plugins.testing import TINY_RECIPE, run_recipe, write_recipe  # noqa: F401  (the suite uses the plugin authors' kit)

ROOT = Path(__file__).resolve().parents[1]

#: the kit's tiny recipe (genhancer_plugins.testing): the suite uses what plugin authors use
TINY = TINY_RECIPE


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
