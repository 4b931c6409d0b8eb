"""The engine's own per-step behaviours, written as implementations of its
lifecycle hooks (registered in-process for the length of a run, like any
plugin): progress bar or plain log lines, tracker logging, reconstruction
previews."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genhancer_plugins.events import StageInfo, StepInfo
from genhancer_plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from genhancer_plugins.training.engine import Run

PLUGIN_NAME = "genhancer-engine"


class EngineCallbacks:
    def __init__(self, run: "Run"):
        self.run = run
        self.bar: Any = None

    @property
    def _main(self) -> bool:
        return self.run.accelerator.is_main_process

    @hookimpl
    def genhancer_stage_start(self, stage: StageInfo) -> None:
        from tqdm.auto import tqdm

        interactive = sys.stderr.isatty()
        disable = not (self.run.show_progress and self._main and interactive)
        self.bar = tqdm(total=stage.total_steps, initial=stage.steps, desc=stage.stage, unit="step", disable=disable,
                        dynamic_ncols=True)

    @hookimpl
    def genhancer_step_end(self, step: StepInfo) -> None:
        recipe = self.run.recipe
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{step.loss:.4f}", lr=f"{step.learning_rate:.2e}", samples_s=f"{step.samples_per_second:.1f}")
        if (self.bar is None or self.bar.disable) and (step.step % recipe.train.log_every == 0 or step.step == step.total_steps):
            # no terminal (cluster logs, CI), or --no-progress: a plain line instead of a redrawn bar
            self.run.log(f"{step.stage} step {step.step}/{step.total_steps} loss {step.loss:.4f} "
                         f"lr {step.learning_rate:.2e} {step.samples_per_second:.1f} samples/s")
        if recipe.train.report_to and step.step % recipe.train.log_every == 0:
            self.run.accelerator.log({f"{step.stage}/loss": step.loss, f"{step.stage}/lr": step.learning_rate,
                                      f"{step.stage}/samples_per_s": step.samples_per_second}, step=step.step)
        preview = recipe.preview
        if preview.images and preview.every and step.step % preview.every == 0 and step.step < step.total_steps:
            self.write_preview(self.run.output_dir / step.stage / "reconstructions" / f"step-{step.step}.png")

    @hookimpl
    def genhancer_stage_end(self, stage: StageInfo) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.run.recipe.preview.images:
            self.write_preview(stage.directory / "reconstructions.png")

    def write_preview(self, path: Path) -> None:
        """A labelled reconstruction grid of the first images (main process; the others wait)."""
        from genhancer_plugins.training.model import probe_images
        from genhancer_plugins.commands.reconstruct import reconstruct, save_grid

        run = self.run
        if run.sharded:
            return  # a sharded model runs only with every process taking part; previews: `genhancer reconstruct`
        if self._main:
            images = probe_images(run.probe_dataset, run.recipe.preview.images).to(run.accelerator.device)
            with run.accelerator.autocast():
                outputs = reconstruct(run.model, images, steps=run.recipe.preview.sampling_steps, seed=run.recipe.train.seed)
            save_grid(images, outputs, path)
        run.accelerator.wait_for_everyone()
