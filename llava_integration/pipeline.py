"""The LLaVA part of ``genhancer run``: for each tower (original, enhanced),
build LLaVA-1.5, run the pretraining and instruction-tuning phases, score the
benchmarks, and compare the towers side by side (the paper's Table 2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from genhancer_plugins.errors import RunError


def run_llava(settings: Any, towers: dict[str, str], output_dir: Path, evaluators: list[tuple[Any, Any]], seed: int,
              resume: bool, log: Callable[[str], None], is_main: bool = True) -> dict[str, Any]:
    """``towers``: label -> tower directory. Returns the ``llava`` part of run.json."""
    import torch

    from genhancer_plugins.evaluation import evaluate_one, read_result, write_comparison

    from .build import build_llava, load_llava
    from .data import LlavaDataset
    from .scoring import LikelihoodScorer
    from .train import train_phase

    summary: dict[str, Any] = {"towers": {}, "eval": {}}
    results: dict[str, dict[str, Any]] = {}
    for label, tower in towers.items():
        if Path(tower).exists() and not (Path(tower) / "config.json").is_file():
            raise RunError(f"llava: the {label} tower {tower} is not a model directory (no config.json)")
        root = output_dir / "llava" / label
        phases = [(name, getattr(settings, name)) for name in ("pretrain", "finetune") if getattr(settings, name)]
        done = [name for name, _ in phases if (root / name / "final" / "phase.json").is_file()]
        if done:
            model, processor = load_llava(root / done[-1] / "final")
        else:
            torch.manual_seed(seed)
            model, processor = build_llava(tower, settings)
        vision = model.config.vision_config
        image_tokens = (vision.image_size // vision.patch_size) ** 2
        phase_summaries = {}
        for name, phase in phases:
            if name in done:
                phase_summaries[name] = json.loads((root / name / "final" / "phase.json").read_text())
                continue
            log(f"llava ({label} tower): {name} phase")
            dataset = LlavaDataset(phase.data, phase.image_folder, processor, model.config.image_token_index, image_tokens,
                                   settings.max_length)
            if dataset.skipped:
                log(f"llava ({label} tower): {name}: skipped records {dict(dataset.skipped)}")
            phase = phase.model_copy(update={"deepspeed": phase.deepspeed or settings.deepspeed})
            phase_summaries[name] = train_phase(model, processor, dataset, name, phase, root / name, settings, seed, resume)
        summary["towers"][label] = {"tower": tower, "phases": phase_summaries}
        if not is_main or not evaluators:
            continue
        scorer = LikelihoodScorer(model, processor, name=f"llava-{label}")
        for spec, evaluator in evaluators:
            folder = output_dir / "llava" / "eval" / evaluator.name
            result = read_result(folder, label) if resume else None
            if result is None:
                log(f"llava ({label} tower): {evaluator.name}")
                result = evaluate_one(evaluator, scorer, label, folder)
            results.setdefault(evaluator.name, {})[label] = result
    for name, by_tower in results.items():
        folder = output_dir / "llava" / "eval" / name
        evaluator = next(e for _, e in evaluators if e.name == name)
        reference = "original" if "original" in by_tower else None
        table = write_comparison(evaluator, by_tower, folder, reference)
        log(f"llava {name} (LLaVA-1.5 with each tower):\n{table}")
        summary["eval"][name] = {label: r.metrics for label, r in by_tower.items()}
    if summary["eval"] and is_main:
        table = table_2(summary["eval"], list(towers))
        (output_dir / "llava" / "eval" / "table.md").write_text(table)
        log(f"llava: every benchmark, original vs enhanced tower, in {output_dir / 'llava' / 'eval' / 'table.md'}")
    return summary


def table_2(results: dict[str, dict[str, dict[str, float]]], towers: list[str]) -> str:
    """One markdown table of every benchmark metric per tower (the paper's Table 2 view),
    with the enhanced tower's difference to the original when both ran."""
    compare = "original" in towers and "enhanced" in towers
    header = ["benchmark", "metric", *towers] + (["difference"] if compare else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, by_tower in results.items():
        metrics = list(dict.fromkeys(key for label in towers for key in by_tower.get(label, {})))
        for key in metrics:
            values = [by_tower.get(label, {}).get(key) for label in towers]
            cells = [name, key, *("-" if v is None else f"{v:.2f}" for v in values)]
            if compare:
                a, b = by_tower.get("original", {}).get(key), by_tower.get("enhanced", {}).get(key)
                cells.append("-" if a is None or b is None else f"{b - a:+.2f}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
