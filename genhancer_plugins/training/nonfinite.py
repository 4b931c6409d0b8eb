"""``train.nonfinite``: a diverging run never trains on, saves or exports non-finite numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from genhancer_plugins.training.checkpoint import list_checkpoints
from genhancer_plugins.util.errors import RunError


class NonFiniteGuard:
    """A NaN or inf loss or gradient, by ``train.nonfinite``: ``stop`` checks on logged steps and
    before every checkpoint and the stage's end (one device sync there, which logging makes anyway)
    and stops with one line; ``skip`` checks every step and drops that update, stopping after
    ``max_skipped_steps`` in a row. Either way nothing non-finite is ever saved."""

    def __init__(self, stage: str, train: Any, accelerator: Any, checkpoints: Path):
        self.stage, self.train, self.acc, self.checkpoints = stage, train, accelerator, checkpoints
        self.in_a_row = 0
        self.last_checked = 0

    def _any(self, count: torch.Tensor) -> bool:
        return bool(self.acc.reduce(count, reduction="sum").item() > 0) if self.acc.num_processes > 1 else bool(count.item() > 0)

    def _stop(self, what: str) -> None:
        done = list_checkpoints(self.checkpoints)
        good = f"the last good checkpoint is {done[-1]}" if done else "no checkpoint of this stage was written yet"
        raise RunError(f"{self.stage}: {what}; {good} (nothing non-finite was saved). Lower {self.stage}.learning_rate (or "
                       f"max_grad_norm) and continue with --resume, or set train.nonfinite: skip to drop such steps")

    def skip_update(self, count: torch.Tensor, step: int) -> bool:
        if self.train.nonfinite != "skip":
            return False
        if not self._any(count):
            self.in_a_row = 0
            return False
        self.in_a_row += 1
        if self.in_a_row > self.train.max_skipped_steps:
            self._stop(f"{self.in_a_row} steps in a row (to step {step + 1}) had a non-finite loss or gradient")
        return True

    def check(self, count: torch.Tensor, step: int, trained: list[torch.nn.Parameter]) -> None:
        """Before a log line, a checkpoint or the stage's end: the losses and gradients since the last
        check, and the trained weights themselves (an update can overflow them with a finite loss)."""
        local = [p.detach().to_local() if hasattr(p, "to_local") else p.detach() for p in trained]  # a shard under FSDP2
        weights = torch.stack([(~torch.isfinite(t)).any() for t in local]).any().float() if local else torch.zeros(())
        if self._any(count.detach().to(weights.device) + weights):
            self._stop(f"the loss, its gradient or the weights became non-finite (NaN or inf) between step {self.last_checked + 1} "
                       f"and step {step}")
        self.last_checked = step
