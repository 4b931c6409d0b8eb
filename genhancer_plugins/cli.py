"""The ``genhancer`` command line.

Heavy libraries (torch, transformers, diffusers, peft) are imported only by
the commands that need them, so ``--help``, ``plugins`` and ``validate``
answer quickly.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Sequence

EPILOG = """examples:
  genhancer run recipes/tiny.yaml --output-dir runs/tiny
  genhancer run recipes/paper/clip_l14_224.yaml --set stage1.steps=2000 --resume
  genhancer validate recipes/paper/siglip_so400m_384.yaml --json
  genhancer eval mmvp_vlm -p root=data/MMVP_VLM -m openai/clip-vit-large-patch14 -m runs/clip/export -o eval/mmvp
  genhancer plugins
"""


def _add_recipe_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="path to a recipe YAML file")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe field by dotted path, e.g. --set stage2.mode=only (repeatable; VALUE is YAML)",
    )


def _add_comparison_args(parser: argparse.ArgumentParser, model_help: str) -> None:
    """The options shared by every command that scores models side by side."""
    parser.add_argument("--model", "-m", dest="models", action="append", required=True, metavar="MODEL", help=model_help)
    parser.add_argument("--label", dest="labels", action="append", default=[], metavar="NAME", help="names for the models, in order")
    parser.add_argument("--param", "-p", dest="params", action="append", default=[], metavar="KEY=VALUE",
                        help="evaluator parameter, e.g. -p root=/data/MMVP (repeatable; VALUE is YAML)")
    parser.add_argument("--output", "-o", required=True, help="output directory")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genhancer",
        description=(
            "Post-train vision encoders (CLIP, MetaCLIP, SigLIP) with a lightweight denoiser that reconstructs "
            "images from the encoder's class token, then export them in the Hugging Face layout."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"genhancer {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="train both stages and export the enhanced encoder",
        description="Run a recipe: stage 1 (denoiser), stage 2 (encoder LoRA), export. Works under torchrun/accelerate launch.",
    )
    _add_recipe_args(run)
    run.add_argument("--output-dir", "-o", help="where stages, checkpoints, export and run.json go (default: the recipe's output_dir)")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the run in --output-dir from its newest checkpoint")
    mode.add_argument("--overwrite", action="store_true", help="replace a previous run in --output-dir")
    run.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")

    validate = sub.add_parser(
        "validate",
        help="check a recipe and print the resolved plan (no training, no downloads)",
        description="Validate a recipe and print every component, parameter counts, trainable parameters per stage and the data source.",
    )
    _add_recipe_args(validate)
    validate.add_argument("--output-dir", "-o", help="output directory to report (default: the recipe's)")
    validate.add_argument("--json", action="store_true", help="machine-readable output")

    ev = sub.add_parser(
        "eval",
        help="run one evaluator on any number of models, side by side",
        description=(
            "Evaluate models (GenHancer exports, local Hugging Face directories or hub ids) with one evaluator "
            "and write per-model predictions, summary.json, a table and the evaluator's plot under --output."
        ),
    )
    ev.add_argument("name", help="evaluator name (see `genhancer plugins`), e.g. mmvp_vlm, zeroshot, retrieval")
    _add_comparison_args(ev, "directory or hub id; repeat to compare (the first is the reference for differences)")
    ev.add_argument("--text-from", help="text tower for vision-only models that record none")

    rec = sub.add_parser(
        "reconstruct",
        help="reconstruct images through a trained run's encoder and denoiser",
        description="Write a PNG grid (input | reconstruction, a row per image): the paper's Fig. 1/4 view of what the denoiser sees.",
    )
    rec.add_argument("--run", required=True, help="run directory (as written by `genhancer run`)")
    rec.add_argument("--images", nargs="+", required=True, help="image files")
    rec.add_argument("--stage", choices=["stage1", "stage2"], help="which finished stage (default: the newest)")
    rec.add_argument("--steps", type=int, default=20, help="sampling steps (Euler steps or decoding rounds)")
    rec.add_argument("--seed", type=int, default=0)
    rec.add_argument("--output", "-o", help="PNG to write (default: RUN/reconstructions-<stage>.png)")
    rec.add_argument("--overwrite", action="store_true", help="replace an existing output file")

    rep = sub.add_parser(
        "report",
        help="one markdown page comparing runs: recipes, evaluations, loss curves, reconstructions",
        description="Write REPORT_DIR/report.md (and losses.png) from one or more run directories.",
    )
    rep.add_argument("runs", nargs="+", help="run directories")
    rep.add_argument("--output", "-o", default="genhancer-report", help="report directory (default: genhancer-report)")

    llava = sub.add_parser("llava", help="LLaVA-1.5 utilities (the training phases run through `genhancer run`)")
    llava_sub = llava.add_subparsers(dest="llava_command", metavar="COMMAND", required=True)
    swap = llava_sub.add_parser(
        "swap",
        help="put an enhanced tower into an existing LLaVA checkpoint (no retraining)",
        description=(
            "Load a LLaVA checkpoint (e.g. llava-hf/llava-1.5-7b-hf), replace its vision tower by TOWER and save the "
            "result with a consistent processor. The projector is kept as trained for the original tower: a quick "
            "first look; the paper retrains LLaVA with the enhanced tower."
        ),
    )
    swap.add_argument("--llava", required=True, help="LLaVA checkpoint: hub id or directory")
    swap.add_argument("--tower", required=True, help="vision tower directory (a GenHancer export or any CLIP/SigLIP)")
    swap.add_argument("--output", "-o", required=True, help="directory for the new checkpoint (must not exist or be empty)")
    leval = llava_sub.add_parser(
        "eval",
        help="score LLaVA checkpoints on a benchmark by likelihood, side by side",
        description=(
            "Score LLaVA checkpoints (directories written by `genhancer run` or `genhancer llava swap`, or hub ids "
            "such as llava-hf/llava-1.5-7b-hf) with one benchmark evaluator (mmvp_mllm, naturalbench, cv_bench, pope, "
            "science_qa, hallusion_bench, multiple_choice) and write per-model predictions, summary.json and a table "
            "under --output. Each answer is the option with the lowest mean negative log-likelihood."
        ),
    )
    leval.add_argument("name", help="evaluator name (see `genhancer plugins`), e.g. mmvp_mllm")
    _add_comparison_args(leval, "LLaVA checkpoint directory or hub id; repeat to compare (the first is the reference)")
    leval.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="auto",
                       help="weights' dtype (default auto: bfloat16 on a GPU that has it, else float32)")

    plugins = sub.add_parser(
        "plugins",
        help="list registered components and where they come from",
        description="List every component by kind and name, with the plugin and distribution providing it, and any plugin that failed to load.",
    )
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _version() -> str:
    from . import __version__

    return __version__


def cmd_plugins(args: argparse.Namespace) -> int:
    from .manager import load_plugins

    manager = load_plugins()
    rows = [
        {
            "kind": kind,
            "name": name,
            "plugin": reg.source.plugin,
            "entry_point": reg.source.entry_point,
            "distribution": reg.source.distribution,
            "version": reg.source.version,
            "presets": sorted(reg.spec.presets),
            "description": reg.spec.description,
            **({"scores": reg.spec.scores} if kind == "evaluator" else {}),
        }
        for kind, entries in manager.components.items()
        for name, reg in sorted(entries.items())
    ]
    failures = [
        {"plugin": f.source.plugin, "entry_point": f.source.entry_point, "distribution": f.source.distribution, "stage": f.stage, "error": f.error}
        for f in manager.failures
    ]
    if args.json:
        print(json.dumps({"components": rows, "failures": failures, "warnings": manager.warnings}, indent=2))
        return 0
    current = None
    for row in rows:
        if row["kind"] != current:
            current = row["kind"]
            print(f"{current}s:")
        presets = f" [presets: {', '.join(row['presets'])}]" if row["presets"] else ""
        presets += " [scores LLaVA models: genhancer llava eval]" if row.get("scores") == "mllm" else ""
        print(f"  {row['name']:<16} {row['distribution']} {row['version']} ({row['plugin']}: {row['entry_point']}){presets}")
        if row["description"]:
            print(f"  {'':<16} {row['description']}")
    for warning in manager.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for failure in manager.failures:
        print(f"error: {failure.message()}", file=sys.stderr)
    return 0


def _human(n: Any) -> str:
    if not isinstance(n, int):
        return str(n)
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3f} {unit}" if unit == "B" else f"{n / size:.2f} {unit}"
    return str(n)


def cmd_validate(args: argparse.Namespace) -> int:
    from .build import make_plan
    from .manager import load_plugins
    from .recipe import load_recipe

    loaded = load_recipe(args.recipe, args.overrides)
    manager = load_plugins()
    plan = make_plan(loaded, manager, args.output_dir)
    if args.json:
        print(json.dumps(plan, indent=2))
        return 0
    print(f"recipe   {plan['recipe']}" + (f" (extends {', '.join(plan['extends'])})" if plan["extends"] else ""))
    print(f"name     {plan['name']}")
    print(f"output   {plan['output_dir'] or '(set --output-dir)'}")
    print("components:")
    for section, comp in plan["components"].items():
        preset = f" preset {comp['preset']}" if comp["preset"] else ""
        print(f"  {section:<12} {comp['name']}{preset}  ({comp['provided_by']})")
    sizes = plan["parameters"]
    if isinstance(sizes, dict):
        print("parameters:")
        for key, value in sizes.items():
            print(f"  {key:<15} {_human(value)} ({value:,})")
        print(f"image size {plan['image_size']}, denoiser target {plan['target']['kind']} {plan['target']['shape']}")
    else:
        print(f"parameters: {sizes}")
    print("stages:")
    for name, stage in plan["stages"].items():
        trainable = f"{_human(stage['trainable'])} trainable ({stage['trainable']:,}): {stage['what']}; " if "trainable" in stage else ""
        print(f"  {name}: {trainable}{stage['length']}, lr {stage['learning_rate']:g} {stage['lr_schedule']}, "
              f"AdamW betas {tuple(stage['betas'])} weight decay {stage['weight_decay']:g}, grad-norm clip {stage['max_grad_norm']}")
    train = plan["train"]
    print(f"precision {train['mixed_precision']} (master weights {train['master_weights']}, tokenizer encodes in "
          f"{train['tokenizer_encode']}); export {plan['export']['dtype']}")
    if plan.get("pretrain"):
        print(f"pretrain {plan['pretrain']['name']} (cached in {plan['pretrain']['cache']})")
    if plan.get("eval"):
        print(f"eval     {', '.join(e['name'] for e in plan['eval'])} (original encoder before training, export after)")
    if plan.get("llava"):
        llava = plan["llava"]
        print(f"llava    towers {', '.join(llava['towers'])}; language model {llava['language_model']}")
        for name, phase in llava["phases"].items():
            print(f"  {name}: {phase['trains']}, lr {phase['learning_rate']:g}, {phase['batch_size_per_device']} per device x "
                  f"{phase['gradient_accumulation_steps']} accumulation, {phase['epochs']:g} epoch(s), deepspeed {phase['deepspeed']}, "
                  f"data {phase['data']}")
        if llava["eval"]:
            print(f"  eval: {', '.join(llava['eval'])}")
    data = plan["data"]
    print(
        f"data     {data['dataset']} {json.dumps(data['params'])}, {data['batch_size_per_device']} per device "
        f"x {data['gradient_accumulation_steps']} accumulation"
    )
    print("recipe is valid")
    return 0


def _build_evaluator(manager: Any, name: str, texts: list[str], scores: str) -> Any:
    """The evaluator NAME with its parameters from KEY=VALUE texts; errors name the parameter or file at fault."""
    from pydantic import ValidationError

    from .errors import RecipeError, RunError
    from .manager import ComponentNotFound
    from .recipe import parse_override

    try:
        registered = manager.get("evaluator", name)
    except ComponentNotFound as exc:
        raise RunError(str(exc)) from None
    if registered.spec.scores != scores:
        command = "genhancer llava eval" if registered.spec.scores == "mllm" else "genhancer eval"
        raise RecipeError(f"evaluator {name} scores {'LLaVA models' if scores == 'encoder' else 'encoders'}: use `{command}`")
    values: dict[str, Any] = {}
    for text in texts:
        keys, value = parse_override(text)
        node = values
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    try:
        params = registered.spec.params.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise RecipeError(f"evaluator {name}: {problems}") from None
    try:
        return registered.spec.factory(params)
    except (FileNotFoundError, ValueError) as exc:
        raise RunError(f"evaluator {name}: {exc}") from None


def _compare(args: argparse.Namespace, manager: Any, scores: str, load: Any) -> int:
    """Score every --model (loaded by ``load(source, label, device)``) with an evaluator of
    ``scores`` (encoder or mllm) and print the side-by-side table."""
    from pathlib import Path

    from .errors import RunError
    from .evaluation import run_evaluation

    evaluator = _build_evaluator(manager, args.name, args.params, scores)
    if args.labels and len(args.labels) != len(args.models):
        raise RunError(f"{len(args.labels)} --label for {len(args.models)} --model")
    labels = args.labels or _labels(args.models)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    models = {label: load(source, label, device) for label, source in zip(labels, args.models)}
    output = Path(args.output)
    _, table = run_evaluation(evaluator, models, output, reference=labels[0])
    print(table)
    print(f"results: {output / 'summary.json'}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation import load_model
    from .manager import load_plugins

    manager = load_plugins()
    return _compare(args, manager, "encoder", lambda source, label, device: load_model(manager, source, args.text_from, device))


def _labels(sources: list[str]) -> list[str]:
    """Short, unique names: the last path part, made unique with its parent when needed."""
    from pathlib import Path

    labels = [Path(s.rstrip("/")).name or s for s in sources]
    for i, label in enumerate(labels):
        if labels.count(label) > 1:
            labels[i] = "_".join(Path(sources[i].rstrip("/")).parts[-2:])
    return labels


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .engine import load_trained_pipeline
    from .errors import RunError
    from .manager import load_plugins
    from .reconstruct import load_images, reconstruct, save_grid

    pipeline, _, stage = load_trained_pipeline(args.run, load_plugins(), args.stage)
    output = Path(args.output) if args.output else Path(args.run) / f"reconstructions-{stage}.png"
    if output.exists() and not args.overwrite:
        raise RunError(f"{output} exists; pass --overwrite to replace it or choose --output")
    missing = [p for p in args.images if not Path(p).is_file()]
    if missing:
        raise RunError(f"image not found: {missing[0]}")
    images = load_images(args.images, pipeline.encoder.spec.image_size)
    save_grid(images, reconstruct(pipeline, images, steps=args.steps, seed=args.seed), output)
    print(f"reconstructions ({stage}): {output}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .report import write_report

    path = write_report([Path(r) for r in args.runs], Path(args.output))
    print(f"report: {path}")
    return 0


def cmd_llava(args: argparse.Namespace) -> int:
    return {"swap": _llava_swap, "eval": _llava_eval}[args.llava_command](args)


def _llava_eval(args: argparse.Namespace) -> int:
    from llava_integration.build import load_llava
    from llava_integration.scoring import LikelihoodScorer

    from .manager import load_plugins

    def load(source: str, label: str, device: str) -> Any:
        import torch

        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(args.dtype)
        if dtype is None:  # auto
            dtype = torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32
        model, processor = load_llava(source, dtype=dtype)
        return LikelihoodScorer(model, processor, name=label, device=device)

    return _compare(args, load_plugins(), "mllm", load)


def _llava_swap(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .errors import RunError

    output = Path(args.output)
    if output.exists() and any(output.iterdir()):
        raise RunError(f"{output} is not empty; choose another --output")
    from llava_integration.build import load_llava
    from llava_integration.tower import TowerMismatch, swap_vision_tower

    model, processor = load_llava(args.llava)
    try:
        swap_vision_tower(model, args.tower, processor)
    except TowerMismatch as exc:
        raise RunError(str(exc)) from None
    model.save_pretrained(output)
    processor.save_pretrained(output)
    print(f"LLaVA with the tower of {args.tower}: {output}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .engine import Run
    from .manager import load_plugins
    from .recipe import load_recipe

    loaded = load_recipe(args.recipe, args.overrides)
    output_dir = args.output_dir or loaded.recipe.output_dir
    if not output_dir:
        raise SystemExit(f"genhancer: error: {args.recipe}: no output_dir in the recipe; pass --output-dir")
    manager = load_plugins()
    for failure in manager.failures:
        print(f"warning: {failure.message()}", file=sys.stderr)
    run = Run(loaded, manager, output_dir, resume=args.resume, overwrite=args.overwrite, show_progress=not args.no_progress)
    summary = run.execute()
    if run.accelerator.is_main_process:
        print(f"[genhancer] run summary: {os.path.join(output_dir, 'run.json')}")
        if summary.get("export"):
            print(f"[genhancer] enhanced encoder: {summary['export']['directory']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from .errors import RecipeError, RunError

    handlers = {"run": cmd_run, "validate": cmd_validate, "plugins": cmd_plugins, "eval": cmd_eval,
                "reconstruct": cmd_reconstruct, "report": cmd_report, "llava": cmd_llava}
    try:
        return handlers[args.command](args)
    except RecipeError as exc:
        print(f"genhancer: error: {exc}", file=sys.stderr)
        return 2
    except RunError as exc:
        print(f"genhancer: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
