"""The ``llava`` downstream phase of ``genhancer run``: for each tower (original, enhanced),
build LLaVA-1.5, run the pretraining and instruction-tuning phases, score the
benchmarks, and compare the towers side by side (the paper's Table 2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from genhancer_plugins import DownstreamPhase, PhaseContext, RunError, difference, markdown_table, model_source_problem

from .params import LlavaSettings


class LlavaPhase(DownstreamPhase):
    """LLaVA-1.5 with each tower: build, pretrain the projector, instruction-tune, score."""

    def __init__(self, settings: LlavaSettings):
        self.settings = settings

    def plan(self) -> dict[str, Any]:
        s = self.settings
        return {
            "towers": s.towers,
            "enhanced_tower": s.tower or "this run's export",
            "language_model": s.language_model or "random Llama (language_model_config)",
            "phases": {
                name: {"data": phase.data, "learning_rate": phase.learning_rate, "batch_size_per_device": phase.batch_size,
                       "gradient_accumulation_steps": phase.gradient_accumulation_steps, "epochs": phase.epochs,
                       "deepspeed": phase.deepspeed or s.deepspeed,
                       "trains": "projector" if name == "pretrain" else "projector + language model"}
                for name, phase in (("pretrain", s.pretrain), ("finetune", s.finetune)) if phase
            },
            "eval": [ref.name for ref in s.eval],
        }

    def check(self, context: PhaseContext) -> list[str]:
        """Before the run: the data files and image folders of both phases, DeepSpeed configs, the
        language model and the towers the recipe names, and every benchmark of ``llava.eval``."""
        from .train import DEEPSPEED

        s, problems = self.settings, []
        for name in ("pretrain", "finetune"):
            phase = getattr(s, name)
            if phase is None:
                continue
            data = Path(phase.data).expanduser()
            if not data.is_file():
                problems.append(f"{name}.data: LLaVA data file {data} not found")
            folder = Path(phase.image_folder).expanduser() if phase.image_folder else data.parent
            if data.is_file() or phase.image_folder:
                if not folder.is_dir():
                    problems.append(f"{name}.image_folder: image folder {folder} not found")
            config = phase.deepspeed or s.deepspeed
            if config and config not in DEEPSPEED and not Path(config).is_file():
                problems.append(f"{name}.deepspeed: {config} is neither zero2, zero3 nor a DeepSpeed config file")
        for field in ("language_model", "tower", "original_tower"):
            source = getattr(s, field)
            problem = model_source_problem(source) if source else None
            if problem:
                problems.append(f"{field}: {problem}")
        problems += [f"tokenizer_corpus: {path} not found" for path in s.tokenizer_corpus if not Path(path).is_file()]
        try:
            context.build_evaluators("llava.eval", s.eval, "mllm")
        except (FileNotFoundError, ValueError, RunError) as exc:
            problems.append(f"eval: {exc}")
        return problems

    def forecast(self, gpus: int, encoder: Any, encoder_parameters: int) -> list[dict[str, Any]]:
        from .rehearsal import forecast_rows

        return forecast_rows(self.settings, gpus, encoder, encoder_parameters)

    def run(self, context: PhaseContext) -> dict[str, Any]:
        settings = self.settings
        towers = {}
        for label in settings.towers:
            if label == "enhanced":
                tower = settings.tower or context.enhanced_encoder
                if tower is None:
                    raise RunError("llava: no enhanced tower: this run exported none; set llava.tower")
                towers[label] = str(tower)
            else:
                towers[label] = settings.original_tower or context.original_encoder()
        evaluators = context.build_evaluators("llava.eval", settings.eval, "mllm")
        return run_llava(settings, towers, context.output_dir, evaluators, context.seed, context.resume, context.log,
                         context.plugins, context.is_main_process, context.show_progress)


def run_llava(settings: Any, towers: dict[str, str], output_dir: Path, evaluators: list[Any], seed: int,
              resume: bool, log: Callable[[str], None], plugins: Any, is_main: bool = True, show_progress: bool = True) -> dict[str, Any]:
    """``towers``: label -> tower directory (loaded by ``plugins``' encoder plugins). Returns the
    ``llava`` part of run.json."""
    import torch

    from genhancer_plugins import evaluate_or_resume, write_comparison

    from .build import build_llava, load_llava
    from .data import LlavaDataset
    from .scoring import LikelihoodScorer
    from .tower import image_tokens
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
            model, processor = build_llava(tower, settings, plugins)
        tokens_per_image = image_tokens(processor, model.config.vision_config)
        phase_summaries = {}
        for name, phase in phases:
            if name in done:
                phase_summaries[name] = json.loads((root / name / "final" / "phase.json").read_text())
                continue
            log(f"llava ({label} tower): {name} phase")
            dataset = LlavaDataset(phase.data, phase.image_folder, processor, model.config.image_token_index, tokens_per_image,
                                   settings.max_length)
            if dataset.skipped:
                log(f"llava ({label} tower): {name}: skipped records {dict(dataset.skipped)}")
            phase = phase.model_copy(update={"deepspeed": phase.deepspeed or settings.deepspeed})
            phase_summaries[name] = train_phase(model, processor, dataset, name, phase, root / name, settings, seed, resume,
                                                show_progress=show_progress, log=lambda m, label=label: log(f"llava ({label} tower): {m}"))
        summary["towers"][label] = {"tower": tower, "phases": phase_summaries}
        if not is_main or not evaluators:
            continue
        scorer = LikelihoodScorer(model, processor, name=f"llava-{label}")
        for evaluator in evaluators:
            folder = output_dir / "llava" / "eval" / evaluator.name
            result = evaluate_or_resume(evaluator, lambda scorer=scorer: scorer, label, folder, resume,
                                        lambda m, label=label: log(f"llava ({label} tower): {m}"))
            results.setdefault(evaluator.name, {})[label] = result
    for name, by_tower in results.items():
        folder = output_dir / "llava" / "eval" / name
        evaluator = next(e for e in evaluators if e.name == name)
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
    rows = []
    for name, by_tower in results.items():
        delta = difference(by_tower.get("original", {}), by_tower.get("enhanced", {})) if compare else {}
        for key in dict.fromkeys(key for label in towers for key in by_tower.get(label, {})):
            row = [name, key, *(by_tower.get(label, {}).get(key) for label in towers)]
            rows.append(row + ([f"{delta[key]:+.2f}" if key in delta else "-"] if compare else []))
    return markdown_table(header, rows)
