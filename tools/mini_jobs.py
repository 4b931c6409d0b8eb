"""The reproduction's runs and measurements: jobs trained a few at a time in worker processes, each
waiting for the runs it starts from; probes and reconstruction quality likewise. Used by
``reproduce_mini.py`` (an application beside the package, like it)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from fig1 import reconstruction_quality


@dataclass
class Job:
    """One training run of the reproduction; it starts once every run in ``after`` has finished."""

    label: str
    recipe: Path
    sets: list[str]
    out: Path
    after: tuple[Path, ...] = ()
    #: main's run whose stage-1 checkpoint at this recipe's stage-1 length starts its stage 2 (see STAGE1_PREFIX);
    #: resolved when the job starts, because the checkpoint exists only once main has run
    prefix_of: Path | None = None


def finished(out: Path) -> bool:
    summary = out / "run.json"
    return summary.is_file() and bool(json.loads(summary.read_text()).get("completed"))


def train_job(recipe: Path, sets: list[str], out: Path) -> float:
    """Train one run (in this process or a worker's); its wall time in seconds."""
    from genhancer_plugins.recipe.schema import load_recipe
    from genhancer_plugins.registry.manager import load_plugins
    from genhancer_plugins.training.engine import Run

    start = time.perf_counter()
    manager = load_plugins()
    Run(load_recipe(recipe, sets, manager), manager, out, overwrite=True, show_progress=False).execute()
    return time.perf_counter() - start


def _main_stage1_prefix(job: Job, log: Callable[[str], None]) -> list[str]:
    """The overrides that start the job's stage 2 from main's stage-1 checkpoint at the job's stage-1 length;
    none (it trains its own stage 1) when main did not keep that checkpoint."""
    from genhancer_plugins.recipe.schema import load_recipe

    steps = load_recipe(job.recipe, job.sets).recipe.stage1.steps
    weights = job.prefix_of / "stage1" / "checkpoints" / f"checkpoint-{steps}" / "model.safetensors"
    if not weights.is_file():
        log(f"{job.label}: main kept no stage-1 checkpoint at step {steps} ({weights}); training its stage 1")
        return []
    return ["stage1.enabled=false", f"stage2.init_from={weights}"]


def pretrain_original(job: Job, log: Callable[[str], None]) -> str:
    """Train (or find cached) the original encoder the experiments start from, before any worker starts;
    its directory (the encoder's source)."""
    from genhancer_plugins.recipe.build import cache_root, resolve_pretrainer
    from genhancer_plugins.recipe.schema import load_recipe
    from genhancer_plugins.registry.manager import load_plugins

    manager = load_plugins()
    loaded = load_recipe(job.recipe, job.sets, manager)
    pretrainer = resolve_pretrainer(loaded, manager)
    if pretrainer is None:
        raise ValueError(f"{job.recipe}: the reproduction starts from a pretrained original tower (`pretrain:`), and this recipe has none")
    return str(pretrainer.build(seed=loaded.recipe.train.seed).encoder_params(cache_root(), log)["source"])


def run_jobs(jobs: list[Job], workers: int, log: Callable[[str], None]) -> int:
    """Every unfinished job, ``workers`` at a time (each worker a process with its share of the cores), in list
    order as far as ``after`` allows; a failed job stops the reproduction once the running ones end.
    Returns how many it trained."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from multiprocessing import get_context

    pending = []
    for job in jobs:
        if finished(job.out):
            log(f"{job.label}: finished earlier, kept")
        else:
            pending.append(job)

    def start(job: Job) -> list[str]:
        log(f"{job.label}: training")
        return job.sets + (_main_stage1_prefix(job, log) if job.prefix_of else [])

    if workers <= 1:
        for job in pending:  # the list is in dependency order
            log(f"{job.label}: trained in {train_job(job.recipe, start(job), job.out):.0f} s")
        return len(pending)
    trained = len(pending)
    # spawn, not fork: a forked child of a process that has run torch's thread pools can hang
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        running: dict[Any, Job] = {}
        while pending or running:
            for job in [j for j in pending if all(finished(a) for a in j.after)][: workers - len(running)]:
                pending.remove(job)
                running[pool.submit(train_job, job.recipe, start(job), job.out)] = job
            if not running:
                raise RuntimeError(f"{pending[0].label}: waits for {', '.join(str(a) for a in pending[0].after if not finished(a))}, "
                                   "which did not finish")
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                job = running.pop(future)
                try:
                    log(f"{job.label}: trained in {future.result():.0f} s")
                except Exception as exc:
                    raise RuntimeError(f"{job.label} failed ({job.out}): {exc}") from exc
    return trained


def measure(run: Path | None, source: str, target: Path, probe_params: dict[str, Any]) -> tuple[dict[str, float], dict[str, float] | None]:
    """An encoder's probe metrics and, for a run, its final denoiser's reconstruction quality (both cached in files)."""
    from genhancer_plugins.util.threads import set_cpu_threads

    set_cpu_threads()  # a worker beside others takes its share of the cores
    return probe(source, target, probe_params), (reconstruction_quality(run) if run is not None else None)


def measure_all(items: list[tuple[str, Path | None, str, Path]], probe_params: dict[str, Any], workers: int,
                log: Callable[[str], None]) -> list[tuple[dict[str, float], dict[str, float] | None]]:
    """:func:`measure` for each (label, run or None, encoder, probe file), ``workers`` at a time; in order.
    A failure names the encoder."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    log(f"probing {len(items)} encoders ({sum(not target.is_file() for *_, target in items)} not probed yet), {workers} at a time")
    if workers <= 1:
        return [measure(run, source, target, probe_params) for _, run, source, target in items]
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = [(label_, pool.submit(measure, run, source, target, probe_params)) for label_, run, source, target in items]
        return [_result(label_, future) for label_, future in futures]


def _result(label_: str, future: Any) -> Any:
    try:
        return future.result()
    except Exception as exc:
        raise RuntimeError(f"probing {label_} failed: {exc}") from exc


def probe(source: str, target: Path, probe_params: dict[str, Any]) -> dict[str, float]:
    """Probe metrics of one encoder, cached in ``target``."""
    from genhancer_miniature.params import ProbeParams
    from genhancer_miniature.probes import ShapesProbeEvaluator

    from genhancer_plugins import load_image_text_model
    from genhancer_plugins.registry.manager import load_plugins

    if target.is_file():
        return json.loads(target.read_text())["metrics"]
    start = time.perf_counter()
    evaluator = ShapesProbeEvaluator(ProbeParams(**probe_params))
    result = evaluator.evaluate(load_image_text_model(load_plugins(), source))
    target.write_text(json.dumps({"source": source, "metrics": result.metrics, "rows": result.rows,
                                  "wall_time_s": round(time.perf_counter() - start, 1)}, indent=2))
    return result.metrics
