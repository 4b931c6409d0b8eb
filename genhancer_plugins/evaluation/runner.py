"""Evaluation: evaluators are plugins; models reach them as ImageTextModels (or,
for downstream benchmarks, MultipleChoiceModels; see :mod:`genhancer_plugins.interfaces`).

``run_evaluation`` applies one evaluator to any number of models and writes,
under the output directory: ``<label>/predictions.csv`` per model,
``summary.json`` (every model's metrics side by side) and whatever plots the
evaluator draws (``plot``); it returns the side-by-side table as text.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from genhancer_plugins.util.errors import RunError
from genhancer_plugins.util.files import write_json
from genhancer_plugins.util.tables import comparison_rows, difference, text_table

if TYPE_CHECKING:
    from genhancer_plugins.interfaces import ImageTextModel

from genhancer_plugins.interfaces import EvalResult, Evaluator


def safe_label(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


def write_predictions(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        if rows:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def side_by_side(results: Mapping[str, EvalResult], reference: str | None = None) -> str:
    """A plain-text table: one row per metric, one column per model (and the
    difference to ``reference`` when two models are compared)."""
    header, rows = comparison_rows({label: r.metrics for label, r in results.items()}, reference)
    return text_table(header, rows)


def evaluate_one(evaluator: Evaluator, model: ImageTextModel, label: str, output_dir: Path) -> EvalResult:
    """Score one model; write its predictions CSV and result JSON under ``output_dir/label``."""
    if evaluator.needs_text and getattr(model, "has_text", True) is False:
        raise RunError(f"{evaluator.name} compares images with text, and {getattr(model, 'name', label)} has no text tower: "
                       "pass --text-from (a model with one), or use an image-only evaluator")
    try:
        result = evaluator.evaluate(model)
    except ValueError as exc:  # the benchmark's files (a corrupt image, a bad row): named by the evaluator
        raise RunError(f"{evaluator.name} on {label}: {exc}") from None
    folder = output_dir / safe_label(label)
    write_predictions(folder / "predictions.csv", result.rows)
    write_json(folder / "result.json", {"source": getattr(model, "name", label), "metrics": result.metrics, "primary": result.primary,
                                        "info": result.info})
    return result


def read_result(output_dir: Path, label: str) -> EvalResult | None:
    """A result written by :func:`evaluate_one` (used when a run resumes)."""
    path = output_dir / safe_label(label) / "result.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return EvalResult(metrics=data["metrics"], primary=data["primary"], info=data.get("info", {}))


def write_comparison(evaluator: Evaluator, results: Mapping[str, EvalResult], output_dir: Path, reference: str | None = None) -> str:
    """``summary.json`` with every model side by side, the evaluator's plot, and the table
    with the evaluator's legend under it (returned)."""
    table = side_by_side(results, reference)
    legend = evaluator.legend(results, reference)
    if legend:
        table += "\n\n" + legend
    summary: dict[str, Any] = {
        "evaluator": evaluator.name,
        "models": {label: {"metrics": r.metrics, "primary": r.primary, "info": r.info} for label, r in results.items()},
    }
    if reference in results and len(results) == 2:
        other = next(label for label in results if label != reference)
        summary["difference"] = difference(results[reference].metrics, results[other].metrics)
    write_json(output_dir / "summary.json", summary)
    (output_dir / "table.txt").write_text(table + "\n")
    evaluator.plot(results, output_dir / f"{evaluator.name}.png")
    return table


def evaluate_or_resume(evaluator: Evaluator, load: Callable[[], Any], label: str, output_dir: Path, resume: bool,
                       log: Callable[[str], None]) -> EvalResult:
    """The result written by an earlier attempt when resuming, else score ``load()`` now."""
    result = read_result(output_dir, label) if resume else None
    if result is None:
        log(f"eval: {evaluator.name} on the {label} model")
        result = evaluate_one(evaluator, load(), label, output_dir)
    return result


def run_evaluation(evaluator: Evaluator, models: Mapping[str, ImageTextModel], output_dir: Path, reference: str | None = None) -> tuple[dict[str, EvalResult], str]:
    """Evaluate every model and write predictions, summary, plot; return results and table."""
    output_dir.mkdir(parents=True, exist_ok=True)
    results = {label: evaluate_one(evaluator, model, label, output_dir) for label, model in models.items()}
    return results, write_comparison(evaluator, results, output_dir, reference)


def build_evaluator(manager: Any, name: str, texts: list[str], scores: str) -> Any:
    """The evaluator NAME with its parameters from KEY=VALUE texts; errors name the parameter or file at fault."""
    from pydantic import ValidationError

    from genhancer_plugins.recipe.schema import apply_override, parse_override
    from genhancer_plugins.registry.manager import ComponentNotFound
    from genhancer_plugins.util.errors import RecipeError, RunError

    try:
        registered = manager.get("evaluator", name)
    except ComponentNotFound as exc:
        raise RunError(str(exc)) from None
    if registered.spec.scores != scores:
        raise RecipeError(f"evaluator {name} scores {registered.spec.scores} models; this command scores {scores} models "
                          "(see `genhancer plugins` for which command takes it)")
    values: dict[str, Any] = {}
    for text in texts:
        keys, value = parse_override(text, option="--param/-p", example="root=data/MMVP_VLM")
        apply_override(values, {}, keys, value, option="--param/-p")
    try:
        params = registered.spec.params.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise RecipeError(f"evaluator {name}: {problems}") from None
    try:
        return registered.spec.factory(params)
    except (FileNotFoundError, ValueError) as exc:
        raise RunError(f"evaluator {name}: {exc}") from None


def model_labels(sources: list[str]) -> list[str]:
    """Short, unique names: the last path part, with its parent for every source whose last part repeats."""
    names = [Path(s.rstrip("/")).name or s for s in sources]
    return ["_".join(Path(s.rstrip("/")).parts[-2:]) if names.count(n) > 1 else n for s, n in zip(sources, names)]
