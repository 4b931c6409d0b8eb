"""The engine's own per-step behaviours, written as implementations of its
lifecycle hooks (registered in-process for the length of a run, like any
plugin): progress bar or plain log lines, tracker logging, reconstruction
previews. They read nothing but the hook payloads (:mod:`genhancer_plugins.events`),
so a third-party plugin could be any of them (a test holds this)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from genhancer_plugins.events import RunInfo, StageInfo, StepInfo
from genhancer_plugins.hookspecs import hookimpl

PLUGIN_NAME = "genhancer-engine"


class EngineCallbacks:
    def __init__(self) -> None:
        self.bar: Any = None

    @hookimpl
    def genhancer_stage_start(self, stage: StageInfo) -> None:
        from tqdm.auto import tqdm

        run = stage.run
        disable = not (run.show_progress and run.is_main_process and sys.stderr.isatty())
        self.bar = tqdm(total=stage.total_steps, initial=stage.steps, desc=stage.stage, unit="step", disable=disable,
                        dynamic_ncols=True)

    @hookimpl
    def genhancer_step_end(self, step: StepInfo) -> None:
        from genhancer_plugins.util.threads import refresh_cpu_threads

        run = step.run
        train = run.recipe.train
        change = refresh_cpu_threads()  # another GenHancer process started or ended on these cores
        if change:
            run.log(change)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{step.loss:.4f}", lr=f"{step.learning_rate:.2e}", samples_s=f"{step.samples_per_second:.1f}")
        if (self.bar is None or self.bar.disable) and (step.step % train.log_every == 0 or step.step == step.total_steps):
            # no terminal (cluster logs, CI), or --no-progress: a plain line instead of a redrawn bar
            run.log(f"{step.stage} step {step.step}/{step.total_steps} loss {step.loss:.4f} "
                    f"lr {step.learning_rate:.2e} {step.samples_per_second:.1f} samples/s")
        if train.report_to and step.step % train.log_every == 0:
            run.accelerator.log({f"{step.stage}/loss": step.loss, f"{step.stage}/lr": step.learning_rate,
                                 f"{step.stage}/samples_per_s": step.samples_per_second}, step=step.step)
        preview = run.recipe.preview
        if preview.images and preview.every and step.step % preview.every == 0 and step.step < step.total_steps:
            write_preview(run, run.output_dir / step.stage / "reconstructions" / f"step-{step.step}.png")

    @hookimpl
    def genhancer_stage_end(self, stage: StageInfo) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if stage.run.recipe.preview.images:
            write_preview(stage.run, stage.directory / "reconstructions.png")


def write_preview(run: RunInfo, path: Path) -> None:
    """A labelled reconstruction grid of the first images (main process; the others wait)."""
    from genhancer_plugins.training.reconstruct import reconstruct, save_grid

    if run.sharded:
        return  # a sharded model runs only with every process taking part; previews: `genhancer reconstruct`
    if run.is_main_process:
        preview = run.recipe.preview
        images = run.probe_images(preview.images)
        with run.accelerator.autocast():
            outputs = reconstruct(run.modules, images, steps=preview.sampling_steps, seed=run.recipe.train.seed)
        save_grid(images, outputs, path)
    run.accelerator.wait_for_everyone()
