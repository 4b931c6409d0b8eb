"""The run lifecycle: every encoder, denoiser and schedule runs through it.

0. ``check_inputs``: every phase's inputs, at once (:mod:`~genhancer_plugins.recipe.preflight`).
1. ``prepare_output``: refuse a non-empty directory unless resuming or
   overwriting; write the resolved recipe.
2. ``setup``: accelerate (devices, precision, processes), the model built from
   the recipe (:mod:`~genhancer_plugins.training.model`), the dataset, the evaluators,
   the engine's own callbacks (:mod:`~genhancer_plugins.training.callbacks`); hook
   ``genhancer_run_start``.
3. Evaluation of the original encoder, then each stage
   (:mod:`~genhancer_plugins.training.stage`).
4. The export (:mod:`~genhancer_plugins.training.export`) and its evaluation.
5. Downstream phases the recipe selects (component kind ``phase``, e.g. LLaVA).
6. ``run.json``: recipe, versions, steps, losses, wall time, evaluations.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from genhancer_plugins import __version__
from genhancer_plugins.events import ExportInfo, RunInfo
from genhancer_plugins.interfaces import PhaseContext, count_parameters
from genhancer_plugins.recipe.build import resolve_components, resolve_evaluators
from genhancer_plugins.recipe.schema import STAGES, LoadedRecipe, dump_yaml
from genhancer_plugins.registry.manager import PluginManager, PluginSource
from genhancer_plugins.training.callbacks import PLUGIN_NAME, EngineCallbacks
from genhancer_plugins.training.context import TrainingContext, probe_images
from genhancer_plugins.training.model import GenHancerModel, build_model
from genhancer_plugins.training.rundir import (
    HISTORY_DIR,
    LOCK_FILE,
    RunLock,
    earlier_invocations,
    hardware,
    latest_recipe,
    library_versions,
    recipe_changes,
    record_recipe,
)
from genhancer_plugins.training.stage import StageResult, StageTrainer
from genhancer_plugins.util.errors import RunError
from genhancer_plugins.util.files import write_json
from genhancer_plugins.util.tables import difference

OUTPUT_ENTRIES = (*STAGES, "cache", "export", "export.tmp", "original", "eval", "logs", "run.json", "recipe.yaml", HISTORY_DIR)


class Run:
    """One execution of a recipe (see the module docstring for the phases)."""

    def __init__(self, loaded: LoadedRecipe, manager: PluginManager, output_dir: str | Path, resume: bool = False,
                 overwrite: bool = False, show_progress: bool = True):
        self.loaded = loaded
        self.recipe = loaded.recipe
        self.manager = manager
        self.output_dir = Path(output_dir)
        self.resume = resume
        self.overwrite = overwrite
        self.show_progress = show_progress
        self.components = resolve_components(loaded, manager)
        self.evaluator_specs = resolve_evaluators(loaded, manager)
        self.results: dict[str, StageResult] = {}
        self.export_info: dict[str, Any] | None = None
        self.eval_results: dict[str, dict[str, Any]] = {}
        self.phase_results: dict[str, Any] = {}
        self.recipe_changes: list[str] = []
        self.lock = RunLock(self.output_dir)
        # set up by the phases below (None until then)
        self.accelerator: Any = None
        self.model: GenHancerModel | None = None
        self.dataset: Any = None
        self.probe_dataset: Any = None
        self.cache: Any = None
        self.evaluators: list[Any] = []
        self.context: TrainingContext | None = None  #: what the stages and the hook payloads see
        self._created = self._fresh = False  #: whether this run created the output directory / found it empty
        self._checked_evaluators: dict[str, Any] = {}  #: section -> evaluator built by the input check
        self._earlier_invocations: list[float] = []  #: wall times of the earlier invocations of a resumed run
        self.threads = ""  #: the CPU threads this process computes with, in words
        self.doing = "while starting up"  #: what the run is doing now, for the line an interruption prints

    # -- 1 -------------------------------------------------------------------
    def prepare_output(self) -> None:
        """Lock the directory, then check it: empty, or ``--resume`` with a compatible
        recipe, or ``--overwrite`` of what a run writes. Nothing is written yet, so a
        start-up failure leaves the directory as it was (see :meth:`_undo_fresh_start`)."""
        out, acc = self.output_dir, self.accelerator
        if out.exists() and not out.is_dir():
            raise RunError(f"output directory {out} exists and is not a directory")
        self._created = not out.exists()
        if acc.is_main_process:
            out.mkdir(parents=True, exist_ok=True)
            self.lock.acquire(self.log)
        # a cache/ alone (`genhancer cache` before the run) is no earlier run; --overwrite keeps it (fingerprinted folders)
        others = [p for p in out.iterdir() if p.name not in (LOCK_FILE, "cache")] if out.is_dir() else []
        self._fresh = not others
        try:
            if others and not (self.resume or self.overwrite):
                raise RunError(f"output directory {out} is not empty; pass --resume to continue that run or --overwrite to replace it")
            if self.overwrite and not self.resume and acc.is_main_process:
                ours = [out / e for e in (*OUTPUT_ENTRIES, *self.recipe.phases())]
                foreign = [p.name for p in others if p not in ours]
                if foreign:
                    raise RunError(f"--overwrite would leave files it did not write in {out}: {', '.join(sorted(foreign))}; use another directory")
                for path in others:
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
                self._fresh = True
            if self.resume:
                self._check_resumable()
                self._earlier_invocations = earlier_invocations(out / "run.json")
        except BaseException:
            self._undo_fresh_start()
            raise
        acc.wait_for_everyone()

    def _check_resumable(self) -> None:
        """Refuse a resume whose recipe would train a different model or data; note the rest."""
        from genhancer_plugins.recipe.schema import load_yaml

        saved = latest_recipe(self.output_dir)
        if saved is None:
            return
        refused, allowed = recipe_changes(load_yaml(saved.read_text()), self.loaded.raw)
        if refused:
            raise RunError(f"--resume: the recipe differs from the one {self.output_dir} ran with ({saved}) in what shapes the "
                           "model or the data:\n  " + "\n  ".join(refused) + "\nuse a new output directory, or undo these changes")
        grown = [s for s in STAGES[:-1] if any(line.startswith(f"{s}.") for line in allowed)
                 and any((self.output_dir / later).exists() for later in STAGES[STAGES.index(s) + 1:])]
        if grown:
            raise RunError(f"--resume: {grown[0]} would train longer, but {STAGES[STAGES.index(grown[0]) + 1]} already started from it; "
                           "use a new output directory (or stage2.init_from)")
        self.recipe_changes = allowed
        if allowed:
            self.log("resuming with these changes (recorded in recipe-history/): " + "; ".join(allowed))

    def _undo_fresh_start(self) -> None:
        """After a failure before anything was trained or written: the directory as it was."""
        if not self.accelerator.is_main_process:
            return
        self.lock.release()
        out = self.output_dir
        if self._fresh and out.is_dir() and self._created and not any(out.iterdir()):
            out.rmdir()

    def check_inputs(self) -> None:
        """Every phase's inputs (genhancer_plugins.recipe.preflight), before anything starts or is written."""
        from genhancer_plugins.recipe.preflight import require_inputs

        require_inputs(self.loaded, self.manager, self.output_dir, environment=True, built=self._checked_evaluators.__setitem__)

    # -- 2 -------------------------------------------------------------------
    def setup_accelerator(self) -> None:
        from accelerate import Accelerator
        from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration

        from genhancer_plugins.util.dtypes import resolve_precision
        from genhancer_plugins.util.threads import set_cpu_threads

        train = self.recipe.train
        self.threads = set_cpu_threads(train.num_threads)  # before any model is built or data loaded
        self.accelerator = Accelerator(
            mixed_precision=resolve_precision(train.mixed_precision),
            gradient_accumulation_steps=train.gradient_accumulation_steps,
            log_with=list(train.report_to) or None,
            project_config=ProjectConfiguration(project_dir=str(self.output_dir), logging_dir=str(self.output_dir / "logs")),
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=train.seed),
        )

    def setup_models(self) -> None:
        acc = self.accelerator
        self.model = build_model(self.loaded, self.manager, self.components, self.log, acc.is_main_process, acc.wait_for_everyone)
        self.model.to(acc.device)
        train = self.recipe.train
        if train.gradient_checkpointing:
            done = [name for name in ("encoder", "denoiser") if getattr(self.model, name).enable_gradient_checkpointing()]
            self.log(f"gradient checkpointing: {', '.join(done) or 'no component supports it'}")
        if train.compile:  # in place: parameter names (checkpoints, exports) stay as they are
            self.model.encoder.compile()
            self.log("torch.compile: encoder" + (", denoiser" if self.model.denoiser.compile_network() else " (the denoiser cannot)"))
        try:
            self.dataset = self.components["data"].build(image_size=self.model.image_size, seed=self.recipe.train.seed)
        except (FileNotFoundError, ValueError) as exc:  # a missing shard or directory: fail at start-up, clearly
            raise RunError(f"data ({self.recipe.data.name}): {exc}") from None
        if len(self.dataset) == 0:
            raise RunError(f"dataset {self.recipe.data.name!r} is empty")
        self.probe_dataset = self.dataset  # previews and the export check read real images, never cached rows
        try:  # one item now: a collection without a single readable image fails here, in one line
            probe_images(self.dataset, 1)
        except ValueError as exc:
            raise RunError(f"data ({self.recipe.data.name}): {exc}") from None
        self._setup_frozen_work()
        self.evaluators = [self._checked_evaluators.get(spec.section) or self._build_evaluator(spec) for spec in self.evaluator_specs]
        if self.recipe.train.report_to:
            acc.init_trackers(self.recipe.name, config=self._tracker_config())
        self.context = TrainingContext(self.recipe, self.output_dir, acc, self.model, self.dataset, self.probe_dataset, self.cache,
                                       self.manager.notify, self.log, self.resume, self.show_progress)
        self.manager.notify("genhancer_run_start", run=self.context.info())
        self.log(
            f"components: encoder {self.recipe.encoder.name} ({count_parameters(self.model.encoder):,} params), "
            f"denoiser {self.recipe.denoiser.name} ({count_parameters(self.model.denoiser):,}), "
            f"projector ({count_parameters(self.model.conditioner):,}); dataset {len(self.dataset):,} images; "
            f"{acc.num_processes} process(es) on {acc.device}, precision {acc.mixed_precision}, {self.threads}"
        )

    def _setup_frozen_work(self) -> None:
        """Fixed crops per image and the cache of the frozen modules' work (genhancer_plugins.training.cache)."""
        from genhancer_plugins.training.cache import KINDS, FixedCrops, open_cache

        self.cache = None
        crops = self.recipe.data.fixed_crops
        if not crops:
            return
        if isinstance(self.dataset, torch.utils.data.IterableDataset):
            raise RunError(f"data.fixed_crops needs a map-style dataset; {self.recipe.data.name} streams")
        self.dataset = FixedCrops(self.dataset, crops, self.recipe.train.seed, self.model.image_size)
        if self.recipe.cache.enabled:
            self.cache = open_cache(self.loaded, self.model, self.accelerator.mixed_precision, self.output_dir,
                                    len(self.dataset.dataset), self.accelerator.process_index)
            counts = ", ".join(f"{self.cache.count(kind):,} {kind}" for kind in KINDS)
            self.log(f"frozen-work cache: {self.cache.directory} ({counts})")

    @staticmethod
    def _build_evaluator(spec: Any) -> Any:
        try:
            return spec.build()
        except (FileNotFoundError, ValueError) as exc:  # a missing benchmark: fail before training, not after
            raise RunError(f"{spec.section} ({spec.ref.name}): {exc}") from None

    def _tracker_config(self) -> dict[str, Any]:
        r = self.recipe
        return {"encoder": r.encoder.name, "denoiser": r.denoiser.name, "stage1_lr": r.stage1.learning_rate,
                "stage2_lr": r.stage2.learning_rate, "batch_size": r.data.batch_size, "seed": r.train.seed}

    def log(self, message: str) -> None:
        if self.accelerator is None or self.accelerator.is_main_process:
            print(f"[genhancer] {message}", flush=True)

    # -- 3, 4: evaluation and export ------------------------------------------------
    def original_source(self) -> str:
        """Where the untouched encoder loads from: its source, or a copy written now (before training)."""
        source = self.model.encoder.pretrained_source() if self.model is not None else None
        if source:
            return str(source)
        if self.model is None:
            raise RunError("the original encoder has no source to load: name it in the phase's settings (or the encoder's source)")
        original = self.output_dir / "original"
        if self.accelerator.is_main_process and not (original / "config.json").is_file():
            self.model.encoder.save_pretrained(original)
        return str(original)

    def evaluate(self, label: str, source: str, reuse: bool = True) -> None:
        """Apply every recipe evaluator to ``source`` (main process); ``label`` is original or enhanced."""
        from genhancer_plugins.evaluation.runner import evaluate_or_resume, write_comparison
        from genhancer_plugins.registry.loaders import load_image_text_model

        if self.evaluators and self.accelerator.is_main_process:
            device, loaded = str(self.accelerator.device), []

            def load() -> Any:  # loaded once, only if some evaluator has no result yet
                if not loaded:
                    loaded.append(load_image_text_model(self.manager, source, device=device))
                return loaded[0]

            for evaluator in self.evaluators:
                folder = self.output_dir / "eval" / evaluator.name
                entry = self.eval_results.setdefault(evaluator.name, {})
                entry[label] = evaluate_or_resume(evaluator, load, label, folder, self.resume and reuse, self.log)
                if label == "enhanced" and "original" in entry:
                    table = write_comparison(evaluator, {"original": entry["original"], "enhanced": entry[label]}, folder, "original")
                    self.log(f"{evaluator.name} (original vs enhanced):\n{table}")
        self.accelerator.wait_for_everyone()

    def export(self) -> dict[str, Any]:
        from genhancer_plugins.training.export import export_encoder

        acc, context = self.accelerator, self.context
        info: dict[str, Any] = {"directory": str(self.output_dir / "export")}
        if acc.is_main_process:  # training is over: the other processes only wait
            encoder = self.model.encoder
            if context.sharded:  # whole weights: the trained stage read back into an unsharded model
                from genhancer_plugins.training.model import load_trained_model

                encoder = load_trained_model(self.output_dir, self.manager, "stage2")[0].encoder.to(acc.device)
            info = export_encoder(encoder, self.model.encoder_images(context.probe_images(4)), self.output_dir / "export",
                                  self.recipe.export.dtype, self.recipe.name, dump_yaml(self.loaded.raw), self.log)
        acc.wait_for_everyone()
        self.manager.notify("genhancer_export_end", export=ExportInfo(self.output_dir / "export", context.info()))
        return info

    def _export_skipped(self, reason: str) -> None:
        self.log(f"export skipped: {reason}")
        info = self.context.info() if self.context is not None else self._run_info()
        self.manager.notify("genhancer_export_end", export=ExportInfo(None, info, written=False, reason=reason))

    def _run_info(self) -> RunInfo:
        """The run for hook payloads, also before (or without) its components."""
        if self.context is not None:
            return self.context.info()
        acc = self.accelerator
        return RunInfo(self.recipe, self.output_dir, {}, acc, acc.process_index if acc else 0, acc.num_processes if acc else 1,
                       show_progress=self.show_progress, log=self.log)

    # -- 5: downstream phases --------------------------------------------------------
    def run_phases(self) -> None:
        exported = self.output_dir / "export"
        context = PhaseContext(
            recipe=self.recipe, output_dir=self.output_dir, enhanced_encoder=exported if (exported / "config.json").is_file() else None,
            original_encoder=self.original_source, build_evaluators=self._phase_evaluators, seed=self.recipe.train.seed,
            resume=self.resume, is_main_process=self.accelerator.is_main_process, log=self.log,
            wait_for_everyone=self.accelerator.wait_for_everyone, plugins=self.manager, show_progress=self.show_progress,
        )
        for name, params in self.recipe.phases().items():
            self.doing = f"in the {name} phase (the encoder is exported; a resume continues the phase)"
            phase = self.manager.get("phase", name).spec.factory(params)
            self.phase_results[name] = phase.run(context)
            self.accelerator.wait_for_everyone()

    def _phase_evaluators(self, section: str, refs: list[Any], scores: str) -> list[Any]:
        return [self._build_evaluator(spec) for spec in resolve_evaluators(self.loaded, self.manager, section, refs, scores)]

    def where(self) -> str:
        """Where the run is, and what a resume keeps: for the line printed when it is interrupted."""
        from genhancer_plugins.training.checkpoint import list_checkpoints

        if self.doing not in STAGES:
            return self.doing
        settings = getattr(self.recipe, self.doing)
        length = f"of {settings.steps}" if settings.steps else f"of {settings.epochs:g} epoch(s)"
        kept = list_checkpoints(self.output_dir / self.doing / "checkpoints")
        if not kept:
            return f"in {self.doing} before its first checkpoint (a resume starts {self.doing} again)"
        return f"in {self.doing}; a resume continues from its checkpoint at step {kept[-1].name.removeprefix('checkpoint-')} {length}"

    # -- 6 -------------------------------------------------------------------
    def _eval_summary(self) -> dict[str, Any]:
        summary = {}
        for name, results in self.eval_results.items():
            entry: dict[str, Any] = {label: result.metrics for label, result in results.items()}
            if "original" in results and "enhanced" in results:
                entry["difference"] = difference(results["original"].metrics, results["enhanced"].metrics)
                entry["primary"] = results["original"].primary
            summary[name] = entry
        return summary

    def write_summary(self, wall_time: float, completed: bool) -> dict[str, Any]:
        summary = {
            "recipe": self.recipe.name,
            "recipe_files": [str(p) for p in self.loaded.files],
            "resolved_recipe": self.loaded.raw,
            "versions": library_versions(),
            "num_processes": self.accelerator.num_processes,
            "hardware": hardware(self.accelerator),
            "mixed_precision": self.accelerator.mixed_precision,
            "stages": {name: result.summary() for name, result in self.results.items()},
            "export": self.export_info,
            "eval": self._eval_summary(),
            **{name: result for name, result in self.phase_results.items()},
            "recipe_changes_on_resume": self.recipe_changes,
            "cache": self.cache.stats() if self.cache is not None else None,
            # every invocation of this directory (a resumed run counts the time of the ones before it)
            "wall_time_s": round(sum(self._earlier_invocations) + wall_time, 2),
            "invocations_s": [*self._earlier_invocations, round(wall_time, 2)],
            "completed": completed,
        }
        if self.accelerator.is_main_process:
            write_json(self.output_dir / "run.json", summary)
        return summary

    def execute(self) -> dict[str, Any]:
        start = time.perf_counter()
        self.check_inputs()
        self.setup_accelerator()
        self.prepare_output()
        callbacks = EngineCallbacks()
        self.manager.register(callbacks, PluginSource(PLUGIN_NAME, "genhancer_plugins.training.callbacks", "genhancer", __version__))
        self.manager.report_failures = True  # a plugin failing in a lifecycle hook is said at once, in one line
        completed, error, started = False, None, False
        try:
            try:
                if self.recipe.active_stages():
                    self.setup_models()
                if self.accelerator.is_main_process:
                    record_recipe(self.output_dir, dump_yaml(self.loaded.raw))
                self.accelerator.wait_for_everyone()
            except BaseException:
                self._undo_fresh_start()
                raise
            started = True
            if self.recipe.active_stages():
                if self.evaluators:
                    self.doing = "while evaluating the original encoder (finished evaluators are kept)"
                    self.evaluate("original", self.original_source())
                for stage in self.recipe.active_stages():
                    self.doing = stage
                    self.results[stage] = StageTrainer(self.context, stage).train()
                    self.write_summary(time.perf_counter() - start, completed=False)
                if self.recipe.export.enabled and self.recipe.stage2.enabled:
                    self.doing = "during the export (both stages are finished; a resume exports again)"
                    self.export_info = self.export()
                    # weights trained in this invocation: results of an earlier export are stale
                    retrained = any(not r.already_finished for r in self.results.values())
                    self.doing = "while evaluating the export (finished evaluators are kept)"
                    self.evaluate("enhanced", str(self.output_dir / "export"), reuse=not retrained)
                elif self.recipe.export.enabled:
                    self._export_skipped("stage2 is disabled, the encoder is unchanged")
                else:
                    self._export_skipped("export.enabled is false")
            self.run_phases()
            summary = self.write_summary(time.perf_counter() - start, completed=True)
            completed = True
        except BaseException as exc:
            error = exc
            if started:  # the time this invocation spent counts in the run's total, also when it was interrupted
                with contextlib.suppress(Exception):
                    self.write_summary(time.perf_counter() - start, completed=False)
            raise
        finally:
            try:
                self.manager.notify("genhancer_run_end", run=self._run_info(), completed=completed, error=error)
            finally:
                self.manager.unregister(PLUGIN_NAME)
                self.manager.report_failures = False
                self.lock.release()
        if self.recipe.train.report_to:
            self.accelerator.end_training()
        return summary
