"""``genhancer report``: one markdown page comparing runs.

Sections: the runs (steps, losses, wall time), the recipes' differences, the
evaluation tables side by side, the loss curves (PNG) and the reconstruction
grids each run wrote.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from genhancer_plugins.recipe.files import flatten
from genhancer_plugins.recipe.schema import STAGES
from genhancer_plugins.util.errors import RunError
from genhancer_plugins.util.tables import markdown_table


def recipe_differences(recipes: dict[str, dict[str, Any]]) -> list[tuple[str, list[Any]]]:
    flat = {label: flatten(r) for label, r in recipes.items()}
    keys = sorted({k for f in flat.values() for k in f})
    return [(k, [f.get(k, "-") for f in flat.values()]) for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flat.values()}) > 1]


def plot_losses(runs: dict[str, dict[str, Any]], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [s for s in STAGES if any(s in r.get("stages", {}) for r in runs.values())]
    if not stages:
        return None
    fig, axes = plt.subplots(1, len(stages), figsize=(6 * len(stages), 4), squeeze=False)
    for ax, stage in zip(axes[0], stages):
        for label, run in runs.items():
            losses = run.get("stages", {}).get(stage, {}).get("losses", [])
            if losses:
                ax.plot([s for s, _ in losses], [loss for _, loss in losses], label=label)
        ax.set_title(f"{stage} loss")
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(run_dirs: list[Path], output: Path) -> Path:
    runs: dict[str, dict[str, Any]] = {}
    for run_dir in run_dirs:
        summary = run_dir / "run.json"
        if not summary.is_file():
            raise RunError(f"{run_dir}: no run.json (not a finished run directory?)")
        label = run_dir.name if run_dir.name not in runs else str(run_dir)
        runs[label] = json.loads(summary.read_text()) | {"_dir": run_dir}
    output.mkdir(parents=True, exist_ok=True)
    page = ["# GenHancer report", ""]
    rows = []
    for label, run in runs.items():
        stages = run.get("stages", {})
        rows.append([label, run.get("recipe"), *[f"{stages[s]['steps']} / {stages[s]['final_loss']:.4f}" if s in stages else "-" for s in STAGES],
                     run.get("wall_time_s"), "yes" if run.get("completed") else "no"])
    page += ["## Runs", "", markdown_table(["run", "recipe", "stage1 steps / loss", "stage2 steps / loss", "wall time (s)", "completed"], rows), ""]
    if len(runs) > 1:
        diffs = recipe_differences({label: run.get("resolved_recipe", {}) for label, run in runs.items()})
        page += ["## Recipe differences", ""]
        page += [markdown_table(["field", *runs], [[k, *v] for k, v in diffs]) if diffs else "The resolved recipes are identical.", ""]
    evaluators = sorted({name for run in runs.values() for name in run.get("eval", {})})
    if evaluators:
        page += ["## Evaluation", ""]
        for name in evaluators:
            metrics: list[str] = []
            for run in runs.values():
                for phase in ("original", "enhanced"):
                    for key in run.get("eval", {}).get(name, {}).get(phase, {}):
                        if key not in metrics:
                            metrics.append(key)
            header = ["metric"] + [f"{label} {col}" for label in runs for col in ("original", "enhanced", "diff")]
            table_rows = []
            for key in metrics:
                row: list[Any] = [key]
                for run in runs.values():
                    entry = run.get("eval", {}).get(name, {})
                    row += [entry.get("original", {}).get(key, "-"), entry.get("enhanced", {}).get(key, "-"), entry.get("difference", {}).get(key, "-")]
                table_rows.append(row)
            page += [f"### {name}", "", markdown_table(header, table_rows), ""]
    curves = plot_losses(runs, output / "losses.png")
    if curves:
        page += ["## Loss curves", "", f"![loss curves]({curves.name})", ""]
    grids = []
    for label, run in runs.items():
        for stage in STAGES:
            grid = run["_dir"] / stage / "reconstructions.png"
            if grid.is_file():
                grids.append(f"**{label}, {stage}** (input | reconstruction)\n\n![{label} {stage}]({os.path.relpath(grid, output)})\n")
    if grids:
        page += ["## Reconstructions", "", *grids]
    path = output / "report.md"
    path.write_text("\n".join(page))
    return path
