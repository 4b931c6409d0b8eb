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


def fake_distribution(site: Path, name: str, entry_points: dict[str, str], modules: dict[str, str]) -> Path:
    """An installed distribution ``name`` 1.0 in ``site`` (a folder to put on PYTHONPATH) whose
    ``genhancer`` entry points (name -> module) point at ``modules`` (module -> source)."""
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[genhancer]\n" + "".join(f"{ep} = {module}\n" for ep, module in entry_points.items()))
    for module, source in modules.items():
        (site / f"{module}.py").write_text(source)
    return site


def genhancer(*args: Any, extra_path: Path | None = None, env_extra: dict[str, str] | None = None) -> Any:
    """``genhancer ARGS`` in a subprocess (``extra_path`` first on PYTHONPATH); the CompletedProcess."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, **(env_extra or {}))
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "genhancer_plugins.cli", *map(str, args)], capture_output=True, text=True, env=env)


def interrupted_then_resumed(recipe: Path, output_dir: Path, stage: str = "stage1", step: int = 3) -> dict[str, Any]:
    """Run ``recipe`` into ``output_dir``, interrupted (Ctrl-C) after ``step`` of ``stage``, then resumed to
    its end; returns the resumed run's run.json."""
    import pytest

    from genhancer_plugins import hookimpl

    class Interrupt:
        @hookimpl
        def genhancer_step_end(self, step: Any) -> None:
            if step.stage == stage and step.step == at:
                raise KeyboardInterrupt

    at = step
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe, output_dir, plugins=[(Interrupt(), "interrupt")])
    return run_recipe(recipe, output_dir, resume=True)


def train_and_score_mmvp(tmp_path: Path, encoder: dict[str, Any], **sections: Any) -> dict[str, Any]:
    """The tiny recipe with ``encoder``, one step of each stage, MMVP-VLM (synthetic copy) on the
    original and the export; returns run.json (the export is in ``tmp_path / "out" / "export"``)."""
    from genhancer_evaluators.synthetic_mmvp import write_synthetic_mmvp

    bench = write_synthetic_mmvp(tmp_path / "bench", pairs_per_pattern=1)
    recipe = write_recipe(tmp_path, {**TINY, "encoder": encoder, "stage1": {"steps": 1}, "stage2": {"steps": 1},
                                     "eval": [{"name": "mmvp_vlm", "params": {"root": str(bench)}}], **sections})
    summary = run_recipe(recipe, tmp_path / "out")
    assert summary["stages"]["stage1"]["steps"] == 1 and summary["stages"]["stage2"]["steps"] == 1
    assert 0 <= summary["eval"]["mmvp_vlm"]["enhanced"]["average"] <= 100
    return summary



def write_colour_questions(folder: Path, size: tuple[int, int] = (12, 12)) -> tuple[Path, list[dict[str, Any]]]:
    """A red and a blue image and a `multiple_choice` JSONL asking each one's colour; the file and its items."""
    import json

    from PIL import Image

    for colour, name in (((255, 0, 0), "red"), ((0, 0, 255), "blue")):
        Image.new("RGB", size, colour).save(folder / f"{name}.png")
    items = [{"image": f"{name}.png", "question": "What colour is it ?", "options": ["red", "blue", "green"], "answer": name}
             for name in ("red", "blue")]
    (folder / "mc.jsonl").write_text("\n".join(json.dumps(i) for i in items))
    return folder / "mc.jsonl", items
