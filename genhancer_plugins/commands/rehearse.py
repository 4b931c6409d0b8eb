"""``genhancer rehearse``: a dress rehearsal of a whole recipe at its real widths, before a
cluster job.

The recipe is rewritten for the rehearsal and then run by the ordinary engine, so every
phase runs its real code: random weights at the presets' widths (``source: null``, the
convention of ``bench``), every stack of repeated blocks shortened to at most ``--depth``
(each component names its stacks: ``ComponentSpec.depth_fields``), and every input a small
synthetic copy in the layout its reader expects (``ComponentSpec.rehearsal`` of the
dataset, of each evaluator and of each downstream phase). Each stage runs ``--steps``
steps and a checkpoint, is interrupted one step later, and must finish from that
checkpoint through ``--resume``; then the export with its reload check, the evaluators
and the downstream phases. Nothing is downloaded and nothing outside the output
directory is written (the pretrainer cache included).

The report gives, per phase, status, seconds per step, peak memory (device memory on a
GPU, process RSS on a CPU), trained and total parameters and files written, and a
forecast of the real job: FLOPs per step counted on the meta device at full depth, and
GPU-hours at a stated MFU on a named GPU, beside validate's per-GPU memory estimate.
"""

from __future__ import annotations

import copy
import json
import os
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from genhancer_plugins.commands.phases import Interrupted, MemoryWatch, Monitor
from genhancer_plugins.util.errors import RecipeError, first_line
from genhancer_plugins.util.files import write_json, write_text
from genhancer_plugins.util.tables import text_table

#: The MFU the forecast assumes when none is given: no full-size GPU run has measured ours yet
#: (docs/performance.md); 40 % is what bf16 transformer training of this size commonly reaches on H100s.
DEFAULT_MFU = 0.40
COMPONENT_SECTIONS = ("encoder", "tokenizer", "denoiser", "conditioner")


def _component_of(exc: BaseException, components: dict[str, Any]) -> str:
    """The recipe component whose code raised (the innermost frame in a plugin's package), or the core.
    ``components``: label -> registered component."""
    packages = {}
    for label, registered in components.items():
        factory = registered.spec.factory
        module = getattr(factory, "__module__", None) or getattr(getattr(factory, "func", None), "__module__", "")
        packages.setdefault(module.split(".")[0], f"{label} ({registered.source.distribution})")
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        for package, label in packages.items():
            if package and package != "genhancer_plugins" and (f"/{package}/" in frame.filename or frame.filename.endswith(f"/{package}.py")):
                return label
    return "the engine (genhancer_plugins)"


def _shorten(params: dict[str, Any], fields: tuple[str, ...], depth: int, section: str) -> list[str]:
    notes = []
    for dotted in fields:
        node: Any = params
        keys = dotted.split(".")
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(keys[-1]), int) and node[keys[-1]] > depth:
            notes.append(f"{section}.{dotted} {node[keys[-1]]} -> {depth}")
            node[keys[-1]] = depth
    return notes


def rehearsal_recipe(loaded: Any, manager: Any, directory: Path, steps: int, depth: int | None, batch_size: int) -> tuple[dict[str, Any], list[str]]:
    """The recipe a rehearsal runs, and what it changed (shortened stacks, synthetic inputs)."""
    from genhancer_plugins.recipe.build import resolve_components, resolve_evaluators

    raw = copy.deepcopy(loaded.raw)
    notes: list[str] = []
    components = resolve_components(loaded, manager)
    for section in COMPONENT_SECTIONS:
        component = components[section]
        params = component.params.model_dump(mode="json")
        if params.get("source") is not None:
            if params.get("config") is None and "config" in params:
                raise RecipeError(f"{section} ({component.ref.name}): a rehearsal builds random weights from `config`, and this "
                                  f"component names only a source ({params['source']}); give its architecture as {section}.params.config")
            params["source"] = None
            notes.append(f"{section}: random weights (source null)")
        if depth is not None:
            notes += _shorten(params, component.registered.spec.depth_fields, depth, section)
        raw[section] = {"name": component.ref.name, "params": params}
    data = components["data"]
    hook = data.registered.spec.rehearsal
    if hook is None:
        raise RecipeError(f"data ({data.ref.name}): this dataset offers no rehearsal copy (ComponentSpec.rehearsal)")
    from genhancer_plugins.recipe.build import build_models

    image_size = build_models(components, meta=True)["image_sizes"]["data"]
    raw["data"] = {**raw["data"], "params": hook(data.params, directory / "inputs" / "data", image_size).model_dump(mode="json"),
                   "batch_size": batch_size, "num_workers": 0}
    notes.append(f"data: {data.ref.name} sample copy at {image_size} px, batch {batch_size} per device (recipe: {loaded.recipe.data.batch_size})")
    evaluators = []
    for index, evaluator in enumerate(resolve_evaluators(loaded, manager)):
        hook = evaluator.registered.spec.rehearsal
        if hook is None:
            raise RecipeError(f"eval.{index} ({evaluator.ref.name}): this evaluator offers no rehearsal copy (ComponentSpec.rehearsal)")
        evaluators.append({"name": evaluator.ref.name, "params": hook(evaluator.params, directory / "inputs" / f"eval-{evaluator.ref.name}").model_dump(mode="json")})
    raw["eval"] = evaluators
    for phase, params in loaded.recipe.phases().items():
        spec = manager.get("phase", phase).spec
        if spec.rehearsal is None:
            raise RecipeError(f"{phase}: this downstream phase offers no rehearsal (ComponentSpec.rehearsal)")
        rehearsed, phase_notes = spec.rehearsal(params, directory / "inputs" / phase, depth)
        raw[phase] = rehearsed.model_dump(mode="json", exclude_unset=False)
        notes += [f"{phase}: {n}" for n in phase_notes]
    for stage in ("stage1", "stage2"):  # N steps, a checkpoint at N, and one more step: the interruption
        raw[stage] = {**raw.get(stage, {}), "steps": steps + 1}
        raw[stage].pop("epochs", None)
    # one checkpoint kept (the resume needs the newest only): at real widths each holds the optimiser's states, gigabytes
    raw["train"] = {**raw.get("train", {}), "checkpoint_every": steps, "keep_checkpoints": 1, "report_to": [], "log_every": 1}
    import torch

    precision = raw["train"].get("mixed_precision", "auto")
    if not torch.cuda.is_available() and precision in ("fp16", "auto"):  # a CPU has no fp16 autocast; auto rehearses bf16
        raw["train"]["mixed_precision"] = "no" if precision == "fp16" else "bf16"
        notes.append(f"train.mixed_precision {precision} -> {raw['train']['mixed_precision']} on this CPU")
    raw["preview"] = {**raw.get("preview", {}), "images": 1, "sampling_steps": 2}
    raw["cache"] = {**raw.get("cache", {}), "directory": None}
    raw["output_dir"] = str(directory / "run")
    return raw, notes


def forecast(loaded: Any, manager: Any, gpus: int, peak_tflops: float, mfu: float) -> list[dict[str, Any]]:
    """Per GenHancer stage of the real recipe: steps, FLOPs per step (counted on the meta device at
    full depth), GPU-hours at ``mfu`` of ``peak_tflops``, and validate's per-GPU memory estimate."""
    import torch

    from genhancer_plugins.commands.bench import count_flops, random_weight_components
    from genhancer_plugins.commands.plan import make_plan
    from genhancer_plugins.registry.components import construction_device
    from genhancer_plugins.training.model import build_model
    from genhancer_plugins.training.stage import enter_stage

    recipe = loaded.recipe
    plan = make_plan(loaded, manager, None)
    memory = plan.get("memory_per_gpu_gb", {})
    model = build_model(loaded, manager, random_weight_components(loaded, manager), run_pretrainer=False, meta=True)
    rows = []
    global_batch = recipe.data.batch_size * gpus * recipe.train.gradient_accumulation_steps
    for stage in recipe.active_stages():
        with construction_device(True):
            enter_stage(model, recipe, stage, torch.device("meta"))
        per_image = count_flops(model, 2, "meta") / 2
        settings = recipe.stage_settings(stage)
        steps = settings.steps
        flops_per_step = per_image * global_batch
        hours = steps * flops_per_step / (peak_tflops * 1e12 * mfu) / 3600 if steps else None
        sharding = "fsdp" if recipe.train.sharding == "fsdp" else "ddp"
        estimate = memory.get(stage, {})
        rows.append({"phase": stage, "steps": steps, "epochs": None if steps else settings.epochs, "global_batch": global_batch,
                     "flops_per_step": flops_per_step, "gpu_hours": hours, "wall_hours": hours / gpus if hours else None,
                     "memory_per_gpu_gb": estimate.get("zero3" if sharding == "fsdp" else "ddp"), "parallelism": sharding,
                     "note": "per-GPU batch x GPUs x accumulation"})
    vision = sum(p.numel() for p in model.encoder.vision_parameters())
    for name, params in recipe.phases().items():  # downstream phases forecast themselves (DownstreamPhase.forecast)
        for row in manager.get("phase", name).spec.factory(params).forecast(gpus, model.encoder.spec, vision):
            steps = row.get("steps")
            hours = steps * row["flops_per_step"] / (peak_tflops * 1e12 * mfu) / 3600 if steps else None
            rows.append({"epochs": None, "note": "", "gpu_hours": hours, "wall_hours": hours / gpus if hours else None, **row})
    return rows


def rehearse(recipe_path: str, overrides: list[str], manager: Any, output: Path, steps: int = 1, depth: int | None = None,
             batch_size: int = 1, gpus: int = 8, gpu: str = "H100", mfu: float = DEFAULT_MFU,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    from genhancer_plugins.commands.bench import PEAK_TFLOPS
    from genhancer_plugins.recipe.build import resolve_components, resolve_evaluators
    from genhancer_plugins.recipe.files import dump_yaml
    from genhancer_plugins.recipe.schema import load_recipe
    from genhancer_plugins.training.engine import Run

    if gpu not in PEAK_TFLOPS:
        raise RecipeError(f"--gpu {gpu}: known GPUs are {', '.join(PEAK_TFLOPS)}")
    loaded = load_recipe(recipe_path, overrides, manager=manager)
    output.mkdir(parents=True, exist_ok=True)
    cache_before = os.environ.get("GENHANCER_CACHE")
    os.environ["GENHANCER_CACHE"] = str(output / "cache")  # the pretrainer's cache too stays inside the output
    path = output / "rehearsal.yaml"
    main, wait = _processes()
    if main:  # under a launcher the first process writes the inputs and the recipe; the others read them
        raw, notes = rehearsal_recipe(loaded, manager, output, steps, depth, batch_size)
        write_text(path, dump_yaml(raw))
        write_json(output / "changes.json", notes)
        for note in notes:
            log(f"rehearse: {note}")
    wait()
    notes = json.loads((output / "changes.json").read_text())
    rehearsal = load_recipe(path, manager=manager)
    memory = MemoryWatch()
    monitor = Monitor(output / "run", memory, {stage: steps + 1 for stage in rehearsal.recipe.active_stages()})
    manager.register(monitor, _source("genhancer-rehearsal"))
    rank = int(os.environ.get("RANK", "0"))
    log_file = output / ("rehearsal.log" if not rank else f"rehearsal-rank{rank}.log")
    failure = None
    try:
        for attempt in range(3):  # the first run, and a resume after each stage's interruption
            try:
                Run(rehearsal, manager, output / "run", resume=attempt > 0, show_progress=False).execute()
                break
            except Interrupted:
                log("rehearse: interrupted one step after the checkpoint, as planned; resuming")
                monitor.resumed = True
                monitor.begin("resume (set-up)")
    except BaseException as exc:  # a phase broke: one line, the full story in the log
        if isinstance(exc, KeyboardInterrupt) and not isinstance(exc, Interrupted):
            raise
        log_file.write_text("".join(traceback.format_exception(exc)))
        registered = {f"{section} {c.ref.name!r}": c.registered for section, c in resolve_components(rehearsal, manager).items()}
        registered |= {f"phase {name!r}": manager.get("phase", name) for name in rehearsal.recipe.phases()}
        registered |= {f"evaluator {e.ref.name!r}": e.registered for e in resolve_evaluators(rehearsal, manager)}
        component = _component_of(exc, registered)
        failure = {"phase": monitor.current.phase, "component": component, "error": f"{type(exc).__name__}: {first_line(exc)}",
                   "log": str(log_file)}
        monitor.end("failed", failure["error"])
    finally:
        manager.unregister("genhancer-rehearsal")
        memory.close()
        if cache_before is None:
            os.environ.pop("GENHANCER_CACHE", None)
        else:
            os.environ["GENHANCER_CACHE"] = cache_before
    glue = ("between stages", "stage set-up (optimiser, loader)", "resume (set-up)")  # spans between phases: shown when they cost time
    records = [r for r in monitor.records if r.phase not in glue or r.seconds >= 0.05 or r.status != "ok"]
    result = {"recipe": loaded.recipe.name, "processes": int(os.environ.get("WORLD_SIZE", "1")), "steps": steps, "depth": depth, "batch_size": batch_size, "shortened": notes,
              "memory_kind": memory.kind, "phases": [asdict(r) | {"seconds_per_step": r.seconds_per_step} for r in records],
              "failure": failure, "output": str(output)}
    summary_file = output / "run" / "run.json"
    if failure is None and summary_file.is_file():
        summary = json.loads(summary_file.read_text())
        result["downstream"] = {name: summary.get(name) for name in rehearsal.recipe.phases()}
        result["eval"] = summary.get("eval")
    result["forecast"] = None if failure else {
        "gpu": gpu, "gpus": gpus, "peak_tflops": PEAK_TFLOPS[gpu], "mfu": mfu,
        "mfu_source": "--mfu" if mfu != DEFAULT_MFU else "assumed (no full-size GPU measurement yet; docs/performance.md)",
        "stages": forecast(loaded, manager, gpus, PEAK_TFLOPS[gpu], mfu)}  # what failed above would fail here too: no forecast then
    return result


def _processes() -> tuple[bool, Callable[[], None]]:
    """(whether this is the first process, a barrier) under torchrun or accelerate launch; one process: (True, no-op)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return True, lambda: None
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    # the shared state must be made as the engine's Accelerator makes it: on CPUs only with cpu=True is it distributed
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    return state.is_main_process, state.wait_for_everyone


def _source(name: str) -> Any:
    from genhancer_plugins import __version__
    from genhancer_plugins.registry.manager import PluginSource

    return PluginSource(name, __name__, "genhancer", __version__)


def _num(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def render_rehearsal(result: dict[str, Any]) -> str:
    lines = [f"rehearsal of {result['recipe']}: {result['steps']} step(s) per stage, depth "
             f"{result['depth'] if result['depth'] is not None else 'full'}, batch {result['batch_size']} per device"]
    if result["shortened"]:
        lines.append("changed for the rehearsal: " + "; ".join(result["shortened"]))
    header = ["phase", "status", "s", "steps", "s/step", f"peak GB ({result['memory_kind']})", "estimate GB", "trained", "total", "files",
              "disk GB", "note"]
    rows = [[r["phase"], r["status"], _num(r["seconds"], 1), r["steps"] or "-", _num(r["seconds_per_step"], 1), _num(r["peak_memory_gb"]),
             _num(r["estimated_memory_gb"]), _num(r["trained_parameters"]), _num(r["total_parameters"]), r["files_written"],
             _num(r["disk_gb"]), r["note"]] for r in result["phases"]]
    lines.append(text_table(header, rows))
    for name, section in (result.get("downstream") or {}).items():
        lines.append(f"{name}: {_downstream_lines(section)}")
    f = result["forecast"] or {"stages": []}
    if result["forecast"]:
        lines.append(f"\nforecast of the real job on {f['gpus']} x {f['gpu']} ({f['peak_tflops']:.0f} TFLOP/s bf16 peak) at MFU "
                     f"{100 * f['mfu']:.0f} % ({f['mfu_source']}):")
        header = ["phase", "steps", "global batch", "PFLOP/step", "GPU-hours", "wall hours", "memory/GPU GB (estimate)", "parallelism",
                  "note"]
        rows = [[s["phase"], _num(s["steps"]) if s["steps"] else (f"{s['epochs']} epochs" if s["epochs"] else "unknown"), s["global_batch"],
                 _num(s["flops_per_step"] / 1e15, 3), _num(s["gpu_hours"], 1), _num(s["wall_hours"], 1), _num(s["memory_per_gpu_gb"]),
                 s["parallelism"], s.get("note", "")] for s in f["stages"]]
        lines.append(text_table(header, rows))
        lines.append("memory estimate: weights + gradients + optimiser states before activations (validate's); the measured peaks above "
                     "are at the rehearsal's depth and batch")
    if result["failure"]:
        fail = result["failure"]
        lines.append(f"\nrehearsal FAILED in {fail['phase']} ({fail['component']}): {fail['error']} (full log: {fail['log']})")
    else:
        lines.append(f"\nevery phase ran; outputs in {result['output']}")
    return "\n".join(lines)


def _downstream_lines(section: Any) -> str:
    """The phase's own summary in one line per tower and benchmark (LLaVA-style sections), else as is."""
    if not isinstance(section, dict) or "towers" not in section:
        return str(section)
    parts = []
    for tower, info in section["towers"].items():
        for phase, summary in info.get("phases", {}).items():
            parts.append(f"{tower} {phase}: {summary.get('steps')} step(s), loss {_num(summary.get('train_loss'), 3)}")
    for benchmark, by_tower in (section.get("eval") or {}).items():
        parts.append(f"{benchmark}: " + ", ".join(f"{t} {'ok' if v else '-'}" for t, v in by_tower.items()))
    return "; ".join(parts)

