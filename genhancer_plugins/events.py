"""Values passed to the lifecycle hooks (public).

Every payload carries the :class:`RunInfo`, which holds what the engine's own
callbacks (progress bar, log lines, trackers, reconstruction previews) use, so a
third-party plugin can write any of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from torch import Tensor, nn


def _no_images(count: int) -> Tensor:
    raise RuntimeError("this run has no probe images (no dataset was built)")


@dataclass
class RunInfo:
    """One run, as a plugin sees it."""

    recipe: Any  #: the validated recipe (``recipe.preview``, ``recipe.train.log_every``, ...)
    output_dir: Path
    #: the live modules: encoder, conditioner, tokenizer, denoiser (empty until they are built)
    modules: Mapping[str, nn.Module] = field(default_factory=dict)
    accelerator: Any = None  #: the ``accelerate.Accelerator``: device, autocast, log, wait_for_everyone
    process_index: int = 0
    num_processes: int = 1
    #: the parameters are sharded over the processes (FSDP2): a module runs only with every process taking part
    sharded: bool = False
    show_progress: bool = True  #: progress bars wanted (``--no-progress`` turns them off)
    log: Callable[[str], None] = print  #: one line to the run's log (main process only)
    #: ``probe_images(n)``: the dataset's first n images [n,3,H,W] on the device (previews, the export check)
    probe_images: Callable[[int], Tensor] = _no_images

    @property
    def is_main_process(self) -> bool:
        return self.process_index == 0


class _OfARun:
    """What every payload reads through its ``run``."""

    run: RunInfo

    @property
    def modules(self) -> Mapping[str, nn.Module]:
        return self.run.modules

    @property
    def recipe(self) -> Any:
        return self.run.recipe

    @property
    def process_index(self) -> int:
        return self.run.process_index

    @property
    def num_processes(self) -> int:
        return self.run.num_processes


@dataclass
class StageInfo(_OfARun):
    stage: str
    steps: int  #: at stage start: the step training starts from; at stage end: steps done
    final_loss: float | None
    directory: Path
    run: RunInfo
    total_steps: int = 0


@dataclass
class StepInfo(_OfARun):
    stage: str
    step: int  #: optimisation steps done in this stage (1-based after the step)
    total_steps: int
    loss: float  #: mean over the step's micro-batches and processes (the last logged one with ``loss_sync: logged``)
    learning_rate: float
    samples_per_second: float
    run: RunInfo


@dataclass
class ExportInfo(_OfARun):
    directory: Path | None  #: the export directory (None when nothing was written)
    run: RunInfo
    written: bool = True  #: False when the export was skipped
    reason: str = ""  #: why it was skipped
