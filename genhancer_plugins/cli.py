"""The ``genhancer`` command line: the parser, the core commands, and the
commands plugins add through ``genhancer_add_commands`` (``genhancer llava ...``).

Heavy libraries (torch, transformers, diffusers, peft) are imported only by
the commands that need them, so ``--help``, ``plugins`` and ``validate``
answer quickly.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

EPILOG = """examples:
  genhancer run recipes/tiny.yaml --output-dir runs/tiny
  genhancer run recipes/paper/clip_l14_224.yaml --set stage1.steps=2000 --resume
  genhancer validate recipes/paper/siglip_so400m_384.yaml --json
  torchrun --nproc_per_node 8 -m genhancer_plugins.cli cache recipes/paper/clip_l14_224.yaml --set cache.enabled=true --set data.fixed_crops=4
  genhancer rehearse recipes/llava_vicuna7b.yaml --steps 1 --depth 1   # every phase at real widths, before a cluster job
  genhancer eval mmvp_vlm -p root=data/MMVP_VLM -m openai/clip-vit-large-patch14 -m runs/clip/export -o eval/mmvp
  genhancer plugins
  genhancer --disable-plugin llava validate recipes/tiny.yaml   # leave one plugin out (or GENHANCER_DISABLE_PLUGINS=llava)
"""


def add_recipe_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="path to a recipe YAML file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe field by dotted path, e.g. --set stage2.mode=only (repeatable; VALUE is YAML)")


def add_comparison_args(parser: argparse.ArgumentParser, model_help: str) -> None:
    """The options shared by every command that scores models side by side."""
    parser.add_argument("--model", "-m", dest="models", action="append", required=True, metavar="MODEL", help=model_help)
    parser.add_argument("--label", dest="labels", action="append", default=[], metavar="NAME", help="names for the models, in order")
    parser.add_argument("--param", "-p", dest="params", action="append", default=[], metavar="KEY=VALUE",
                        help="evaluator parameter, e.g. -p root=/data/MMVP (repeatable; VALUE is YAML)")
    parser.add_argument("--output", "-o", required=True, help="output directory (must be new or empty, unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace the results already in --output")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")


def build_parser(manager: Any = None) -> argparse.ArgumentParser:
    from genhancer_plugins.recipe.schema import STAGES

    parser = argparse.ArgumentParser(
        prog="genhancer",
        description=("Post-train vision encoders (CLIP, MetaCLIP, SigLIP) with a lightweight denoiser that reconstructs "
                     "images from the encoder's class token, then export them in the Hugging Face layout."),
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"genhancer {_version()}")
    parser.add_argument("--disable-plugin", dest="disable", action="append", default=[], metavar="NAME",
                        help="leave the plugin NAME (its entry-point name, see `genhancer plugins`) out; repeatable")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="train both stages and export the enhanced encoder",
                         description="Run a recipe: stage 1 (denoiser), stage 2 (encoder LoRA), export, then any downstream "
                                     "phase the recipe selects. Works under torchrun/accelerate launch.")
    add_recipe_args(run)
    run.add_argument("--output-dir", "-o", help="where stages, checkpoints, export and run.json go (default: the recipe's output_dir)")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the run in --output-dir from its newest checkpoint")
    mode.add_argument("--overwrite", action="store_true", help="replace a previous run in --output-dir")
    run.add_argument("--no-progress", action="store_true", help="no progress bars: plain log lines instead")
    run.set_defaults(handler=cmd_run)

    validate = sub.add_parser("validate", help="check a recipe and its inputs, and print the resolved plan (no training, no downloads)",
                              description="Validate a recipe and print every component, parameter counts, trainable parameters "
                                          "per stage, schedule, precision, data and downstream phases; then check every phase's "
                                          "inputs (data, image folders, benchmarks, models, output and cache locations) as "
                                          "`genhancer run` does before it starts. Exit status: 0 ready, 1 inputs not ready, "
                                          "2 the recipe is wrong.")
    add_recipe_args(validate)
    validate.add_argument("--output-dir", "-o", help="output directory to report (default: the recipe's)")
    validate.add_argument("--json", action="store_true", help="machine-readable output")
    validate.add_argument("--recipe-only", action="store_true",
                          help="check the recipe alone, not its inputs (data, benchmarks, models; exit 1 when one is not ready)")
    validate.set_defaults(handler=cmd_validate)

    ev = sub.add_parser("eval", help="run one evaluator on any number of models, side by side",
                        description=("Evaluate models (GenHancer exports, local Hugging Face directories or hub ids) with one "
                                     "evaluator and write per-model predictions, summary.json, a table and the evaluator's plot "
                                     "under --output."))
    ev.add_argument("name", help="evaluator name (see `genhancer plugins`), e.g. mmvp_vlm, zeroshot, retrieval")
    add_comparison_args(ev, "directory or hub id; repeat to compare (the first is the reference for differences)")
    ev.add_argument("--text-from", help="text tower for vision-only models that record none")
    ev.set_defaults(handler=cmd_eval)

    rec = sub.add_parser("reconstruct", help="reconstruct images through a trained run's encoder and denoiser",
                         description="Write a PNG grid (input | reconstruction, a row per image): the paper's Fig. 1/4 view of what the denoiser sees.")
    rec.add_argument("--run", required=True, help="run directory (as written by `genhancer run`)")
    rec.add_argument("--images", nargs="+", required=True, help="image files")
    rec.add_argument("--stage", choices=list(STAGES), help="which finished stage (default: the newest)")
    rec.add_argument("--steps", type=int, default=20, help="sampling steps (Euler steps or decoding rounds)")
    rec.add_argument("--seed", type=int, default=0)
    rec.add_argument("--output", "-o", help="PNG to write (default: RUN/reconstructions-<stage>.png)")
    rec.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    rec.set_defaults(handler=cmd_reconstruct)

    rep = sub.add_parser("report", help="one markdown page comparing runs: recipes, evaluations, loss curves, reconstructions",
                         description="Write REPORT_DIR/report.md (and losses.png) from one or more run directories.")
    rep.add_argument("runs", nargs="+", help="run directories")
    rep.add_argument("--output", "-o", default="genhancer-report", help="report directory (default: genhancer-report)")
    rep.add_argument("--overwrite", action="store_true", help="replace a report already in --output")
    rep.set_defaults(handler=cmd_report)

    bench = sub.add_parser(
        "bench", help="time and size a recipe's training steps with random weights (no data, no download)",
        description=("Build every component at the recipe's sizes with random weights, run warm-up and timed steps of each stage "
                     "on random images, and print images/s, the step split by component, peak memory, training FLOPs per image "
                     "(counted from the model), achieved TFLOP/s and MFU. --dry counts FLOPs on the meta device without "
                     "running or allocating anything."))
    add_recipe_args(bench)
    bench.add_argument("--batch-sizes", default="2", help="comma-separated per-device batch sizes to sweep, e.g. 2,8,16,32")
    bench.add_argument("--stages", default=",".join(STAGES), help="which stages (default: both)")
    bench.add_argument("--steps", type=int, default=3, help="timed steps per point (default 3)")
    bench.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    bench.add_argument("--dry", action="store_true", help="count FLOPs only (meta device): any size, no memory")
    bench.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    bench.add_argument("--peak-tflops", type=float, help="the device's peak for MFU (known GPUs are looked up)")
    bench.add_argument("--json", action="store_true", help="machine-readable output")
    bench.set_defaults(handler=cmd_bench)

    cache = sub.add_parser(
        "cache", help="precompute the frozen work (tokenizer targets, stage 1's global token) of every fixed crop",
        description=("Compute what the frozen tokenizer and encoder make of every image and fixed crop of the recipe's data, "
                     "once, into the recipe's cache (cache.directory, default OUTPUT_DIR/cache): shards of --shard-items items "
                     "that training reads from memory maps. Under torchrun/accelerate launch each process builds its own "
                     "shards on its own device; a killed build resumes at the first shard it had not written. Needs "
                     "cache.enabled: true and data.fixed_crops."))
    add_recipe_args(cache)
    cache.add_argument("--output-dir", "-o", help="the run directory whose cache/ it fills when cache.directory is unset (default: the recipe's output_dir)")
    cache.add_argument("--shard-items", type=int, default=4096, help="items per shard (default 4096)")
    cache.add_argument("--no-progress", action="store_true", help="no progress bar: a log line per shard instead")
    cache.set_defaults(handler=cmd_cache)

    rehearse = sub.add_parser(
        "rehearse", help="a dress rehearsal of every phase at the recipe's real widths, with random weights, on this machine",
        description=("Run every phase the recipe would run (pretrain, stage 1 and 2 with a checkpoint, an interruption and a "
                     "resume, the export and its reload check, every evaluator, every downstream phase) on the real component "
                     "classes at the recipe's widths with random weights and small synthetic inputs in the layouts the phases "
                     "read. Nothing is downloaded; nothing outside --output is written. Prints a table per phase and a forecast "
                     "of the real job (FLOPs per step, GPU-hours, memory per GPU). Exit status 1 when a phase fails."))
    add_recipe_args(rehearse)
    rehearse.add_argument("--steps", type=int, default=1, help="steps per stage before the checkpoint (default 1)")
    rehearse.add_argument("--depth", type=int, help="shorten every stack of repeated blocks to at most D (widths stay); default: full depth")
    rehearse.add_argument("--batch-size", type=int, default=1, help="per-device batch of the rehearsal (default 1; the forecast uses the recipe's)")
    rehearse.add_argument("--output", "-o", help="where the rehearsal writes (default: a new temporary directory, kept)")
    rehearse.add_argument("--gpu", default="H100", help="the GPU the forecast is for (known: H200, H100, A100, L40S, A10G, L4)")
    rehearse.add_argument("--gpus", type=int, default=8, help="GPUs of the real job (default 8, the paper's)")
    rehearse.add_argument("--mfu", type=float, help="model FLOPs utilisation the forecast assumes (default 0.40, stated in the report)")
    rehearse.add_argument("--json", action="store_true", help="machine-readable output")
    rehearse.set_defaults(handler=cmd_rehearse)

    push = sub.add_parser("push", help="publish a finished run's export on the Hugging Face Hub, with a model card",
                          description=("Upload RUN/export (and with --with-denoiser the stage-2 denoiser) as one commit, with a "
                                       "model card carrying the recipe, the data, the evaluations before and after (model-index "
                                       "metadata), the seed, hardware and time, and which MLLM families it is a drop-in for. "
                                       "Refuses an unfinished run, a run in use, or an export older than its last stage. The "
                                       "token is huggingface_hub's (HF_TOKEN or `hf auth login`)."))
    push.add_argument("run", help="run directory (as written by `genhancer run`)")
    push.add_argument("--repo-id", required=True, help="ORG/NAME on the Hub (created if missing)")
    push.add_argument("--private", action="store_true", help="create the repository private")
    push.add_argument("--revision", help="a branch to commit to (created if missing; default: main)")
    push.add_argument("--with-denoiser", action="store_true", help="also upload stage2/final/denoiser under denoiser/")
    push.add_argument("--dry-run", action="store_true", help="print the files and the model card; upload nothing")
    push.set_defaults(handler=cmd_push)

    plugins = sub.add_parser("plugins", help="list registered components and where they come from",
                             description="List every component by kind and name, with the plugin and distribution providing it, "
                                         "and any plugin that failed to load.")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    plugins.set_defaults(handler=cmd_plugins)
    if manager is not None:
        manager.add_commands(sub)  # one plugin at a time: a broken one loses only its own commands
    return parser


def _version() -> str:
    from genhancer_plugins import __version__

    return __version__


def cmd_plugins(args: argparse.Namespace) -> int:
    from genhancer_plugins.commands.listing import list_plugins

    return list_plugins(args.manager, args.json)


def cmd_push(args: argparse.Namespace) -> int:
    from genhancer_plugins.commands.push import push

    result = push(Path(args.run), args.repo_id, private=args.private, revision=args.revision, with_denoiser=args.with_denoiser,
                  dry_run=args.dry_run)
    if args.dry_run:
        print("files: " + ", ".join(result["files"]) + "\n\n" + result["card"])
    else:
        print(f"[genhancer] pushed {len(result['files'])} files to {result['url']}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from genhancer_plugins.commands.plan import make_plan, render_plan
    from genhancer_plugins.recipe.schema import load_recipe

    manager = args.manager
    loaded = load_recipe(args.recipe, args.overrides, manager=manager)
    plan = make_plan(loaded, manager, args.output_dir, check_inputs=not args.recipe_only)
    print(json.dumps(plan, indent=2) if args.json else render_plan(plan))
    return 1 if plan.get("input_problems") else 0


def cmd_bench(args: argparse.Namespace) -> int:
    from genhancer_plugins.commands.bench import render_bench, run_bench
    from genhancer_plugins.recipe.schema import STAGES, load_recipe
    from genhancer_plugins.util.devices import resolve_device
    from genhancer_plugins.util.errors import RecipeError

    manager = args.manager
    loaded = load_recipe(args.recipe, args.overrides, manager=manager)
    try:
        batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
        stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    except ValueError:
        raise RecipeError(f"--batch-sizes {args.batch_sizes!r}: expected comma-separated integers such as 2,8,16") from None
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not batch_sizes or min(batch_sizes) < 1:
        raise RecipeError(f"--stages takes {', '.join(STAGES)} and --batch-sizes positive integers")
    log = (lambda message: None) if args.json else (lambda message: print(f"[genhancer] {message}", flush=True))
    result = run_bench(loaded, manager, batch_sizes, stages, steps=args.steps, warmup=args.warmup, dry=args.dry,
                       device=None if args.dry else resolve_device(args.device), peak_tflops=args.peak_tflops, log=log)
    print(json.dumps(result, indent=2) if args.json else render_bench(result))
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from genhancer_plugins.commands.cache import precompute
    from genhancer_plugins.recipe.schema import load_recipe
    from genhancer_plugins.util.errors import RecipeError

    loaded = load_recipe(args.recipe, args.overrides, manager=args.manager)
    output_dir = args.output_dir or loaded.recipe.output_dir
    if args.shard_items < 1 or not (output_dir or loaded.recipe.cache.directory):
        raise RecipeError("--shard-items takes a positive integer; the cache needs cache.directory or an --output-dir")
    result = precompute(loaded, args.manager, output_dir or ".", args.shard_items, show_progress=not args.no_progress,
                        log=lambda message: print(f"[genhancer] {message}", flush=True))
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"[genhancer] cache: {json.dumps(result['entries'])} entries in {result['directory']}")
    return 0


def cmd_rehearse(args: argparse.Namespace) -> int:
    import tempfile

    from genhancer_plugins.commands.rehearse import DEFAULT_MFU, rehearse, render_rehearsal
    from genhancer_plugins.util.errors import RecipeError

    if args.steps < 1 or (args.depth is not None and args.depth < 1) or args.batch_size < 1 or args.gpus < 1:
        raise RecipeError("--steps, --depth, --batch-size and --gpus take positive integers")
    if args.mfu is not None and not 0 < args.mfu <= 1:
        raise RecipeError(f"--mfu {args.mfu}: a share between 0 and 1, e.g. 0.4")
    first = int(os.environ.get("RANK", "0")) == 0  # under a launcher: the first process checks and reports
    if not args.output and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise RecipeError("under a launcher, name the rehearsal's directory with --output (every process writes there)")
    output = Path(args.output) if args.output else Path(tempfile.mkdtemp(prefix="genhancer-rehearsal-"))
    if first and output.is_dir() and any(output.iterdir()):
        raise RecipeError(f"--output {output} is not empty; a rehearsal starts in an empty directory")
    import contextlib

    log = (lambda message: None) if args.json else (lambda message: print(f"[genhancer] {message}", flush=True))
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():  # --json: stdout holds the report alone
        result = rehearse(args.recipe, args.overrides, args.manager, output, steps=args.steps, depth=args.depth, batch_size=args.batch_size,
                          gpus=args.gpus, gpu=args.gpu, mfu=args.mfu if args.mfu is not None else DEFAULT_MFU, log=log)
    if first:
        print(json.dumps(result, indent=2) if args.json else render_rehearsal(result))
    return 1 if result["failure"] else 0


def compare_models(args: argparse.Namespace, scores: str, load: Callable[[str, str, str], Any]) -> int:
    """Score every --model (loaded by ``load(source, label, device)``) with an evaluator of
    ``scores`` models and print the side-by-side table."""
    from genhancer_plugins.evaluation.runner import build_evaluator, model_labels, run_evaluation
    from genhancer_plugins.util.devices import resolve_device
    from genhancer_plugins.util.errors import RunError

    device = resolve_device(args.device)
    evaluator = build_evaluator(args.manager, args.name, args.params, scores)
    output = Path(args.output)
    if output.is_dir() and any(output.iterdir()) and not args.overwrite:
        raise RunError(f"{output} holds earlier results; pass --overwrite to replace them or choose another --output")
    if args.labels and len(args.labels) != len(args.models):
        raise RunError(f"{len(args.labels)} --label for {len(args.models)} --model")
    labels = args.labels or model_labels(args.models)
    models = {label: load(source, label, device) for label, source in zip(labels, args.models)}
    _, table = run_evaluation(evaluator, models, output, reference=labels[0])
    print(table)
    print(f"results: {output / 'summary.json'}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from genhancer_plugins.registry.loaders import load_image_text_model

    return compare_models(args, "encoder", lambda source, label, device: load_image_text_model(args.manager, source, args.text_from, device))


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from genhancer_plugins.training.model import load_trained_model
    from genhancer_plugins.training.reconstruct import check_images, load_images, reconstruct, save_grid
    from genhancer_plugins.util.errors import RecipeError, RunError

    if args.steps < 1:
        raise RecipeError(f"--steps {args.steps}: sampling needs at least 1 step (default 20)")
    missing = [p for p in args.images if not Path(p).is_file()]
    if missing:
        raise RunError(f"image not found: {missing[0]}")
    check_images(args.images)  # before minutes of model loading
    if args.output and Path(args.output).suffix.lower() not in IMAGE_OUTPUTS:
        raise RunError(f"--output {args.output}: name the image file to write, ending in {' or '.join(IMAGE_OUTPUTS)}")
    model, _, stage = load_trained_model(args.run, args.manager, args.stage, train_missing=False)
    output = Path(args.output) if args.output else Path(args.run) / f"reconstructions-{stage}.png"
    if output.exists() and not args.overwrite:
        raise RunError(f"{output} exists; pass --overwrite to replace it or choose --output")
    images = load_images(args.images, model.image_size)
    save_grid(images, reconstruct(model.parts(), images, steps=args.steps, seed=args.seed), output)
    print(f"reconstructions ({stage}): {output}")
    return 0


IMAGE_OUTPUTS = (".png", ".jpg", ".jpeg", ".webp")


def cmd_report(args: argparse.Namespace) -> int:
    from genhancer_plugins.commands.report import write_report
    from genhancer_plugins.util.errors import RunError

    if (Path(args.output) / "report.md").exists() and not args.overwrite:
        raise RunError(f"{Path(args.output) / 'report.md'} exists; pass --overwrite to replace it or choose another --output")
    path = write_report([Path(r) for r in args.runs], Path(args.output))
    print(f"report: {path}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from genhancer_plugins.recipe.schema import load_recipe
    from genhancer_plugins.training.engine import Run

    manager = args.manager
    if args.no_progress:  # every bar, also those of libraries and plugins (tqdm reads it for its defaults)
        os.environ["TQDM_DISABLE"] = "1"
    loaded = load_recipe(args.recipe, args.overrides, manager=manager)
    output_dir = args.output_dir or loaded.recipe.output_dir
    if not output_dir:
        raise SystemExit(f"genhancer: error: {args.recipe}: no output_dir in the recipe; pass --output-dir")
    if args.resume and not Path(output_dir).is_dir():
        from genhancer_plugins.util.errors import RunError

        raise RunError(f"--resume: {output_dir} does not exist, so there is no run to continue; leave out --resume to start one there")
    for failure in manager.failures:
        print(f"warning: {failure.message()}", file=sys.stderr)
    for warning in manager.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    run = Run(loaded, manager, output_dir, resume=args.resume, overwrite=args.overwrite, show_progress=not args.no_progress)
    import signal

    def terminated(signum: int, frame: Any) -> None:  # a scheduler's SIGTERM ends the run as Ctrl-C does
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        summary = run.execute()
    except KeyboardInterrupt:  # Ctrl-C: one line saying where it stopped and how to go on, not a traceback
        if run.accelerator is None or run.accelerator.is_main_process:
            print(f"\ngenhancer: interrupted {run.where()}; continue with: {resume_command(args, output_dir)}", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    if run.accelerator.is_main_process:
        print(f"[genhancer] run summary: {os.path.join(output_dir, 'run.json')}")
        if summary.get("export"):
            print(f"[genhancer] enhanced encoder: {summary['export']['directory']}")
    return 0


def resume_command(args: argparse.Namespace, output_dir: str) -> str:
    """The command that continues an interrupted run (``GENHANCER_RESUME_HINT``, set by ``make demo``, names its own)."""
    import shlex

    command = ["genhancer", *(f"--disable-plugin={name}" for name in args.disable), "run", args.recipe,
               *(part for text in args.overrides for part in ("--set", text)), "--output-dir", str(output_dir), "--resume",
               *(["--no-progress"] if args.no_progress else [])]
    hint = os.environ.get("GENHANCER_RESUME_HINT")
    return shlex.join(command) + (f" (or: {hint})" if hint else "")


def main(argv: Sequence[str] | None = None) -> int:
    from genhancer_plugins.registry.manager import load_plugins

    argv = list(sys.argv[1:] if argv is None else argv)
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--disable-plugin", dest="disable", action="append", default=[])
    known, _ = early.parse_known_args(argv)
    from genhancer_plugins.util.errors import RecipeError, RunError

    try:
        manager = load_plugins(disable=known.disable)  # before parsing: plugins add commands
    except RecipeError as exc:  # e.g. --disable-plugin with a name no plugin has
        print(f"genhancer: error: {exc}", file=sys.stderr)
        return 2
    parser = build_parser(manager)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    args.manager = manager
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        return args.handler(args)
    except (RecipeError, RunError) as exc:  # the user's input, missing files, offline models: one message, no traceback
        print(f"genhancer: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C in any other command: one line, no traceback
        print(f"\ngenhancer: {args.command} interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a read-only or full disk, a missing permission
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"genhancer: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if type(exc).__name__ != "SafetensorError":  # what safetensors raises when it cannot write (a full disk)
            raise
        print(f"genhancer: error: writing weights failed: {exc} (is the disk full or read-only?)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
