"""Cutting a rehearsal's run into phases at the lifecycle hooks, and measuring each: time,
steps, peak memory (device, or the process's RSS sampled), parameters, files and disk."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genhancer_plugins.hookspecs import hookimpl


class Interrupted(KeyboardInterrupt):
    """The rehearsal's own Ctrl-C, one step after a stage's checkpoint."""


@dataclass
class PhaseRecord:
    phase: str
    status: str = "ok"
    seconds: float = 0.0
    steps: int = 0
    peak_memory_gb: float | None = None
    trained_parameters: int | None = None
    total_parameters: int | None = None
    files_written: int = 0
    #: growth of the run directory during the phase (checkpoints at real widths are large: plan the disk)
    disk_gb: float = 0.0
    note: str = ""
    #: validate's estimate for this stage at the rehearsal's sizes (weights, gradients, AdamW; one process)
    estimated_memory_gb: float | None = None

    @property
    def seconds_per_step(self) -> float | None:
        return self.seconds / self.steps if self.steps else None


class MemoryWatch:
    """The peak memory of a span: CUDA's allocator peak, or the process's RSS sampled every 50 ms."""

    def __init__(self) -> None:
        import torch

        self.cuda = torch.cuda.is_available()
        self.peak = 0
        self._stop = threading.Event()
        if not self.cuda:
            threading.Thread(target=self._sample, daemon=True).start()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self._rss())

    def reset(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
        self.peak = self._rss() if not self.cuda else 0

    def read_gb(self) -> float:
        if self.cuda:
            import torch

            return torch.cuda.max_memory_allocated() / 2**30
        return max(self.peak, self._rss()) / 2**30

    @property
    def kind(self) -> str:
        return "device (CUDA allocator peak)" if self.cuda else "process RSS"

    def close(self) -> None:
        self._stop.set()


def _files(root: Path) -> tuple[int, int]:
    """(files, bytes) under ``root``."""
    sizes = [p.stat().st_size for p in root.rglob("*") if p.is_file()] if root.is_dir() else []
    return len(sizes), sum(sizes)


class Monitor:
    """An in-process plugin that cuts the run into phases at the lifecycle hooks and measures each."""

    def __init__(self, run_dir: Path, memory: MemoryWatch, interrupt_at: dict[str, int]):
        self.run_dir, self.memory, self.interrupt_at = run_dir, memory, dict(interrupt_at)
        self.records: list[PhaseRecord] = []
        self.current = PhaseRecord("setup (build, pretrain)")
        self.started = time.perf_counter()
        self.files = _files(run_dir)
        self.modules: dict[str, Any] = {}
        self.resumed = False

    def begin(self, name: str) -> None:
        self.current = PhaseRecord(name)
        self.started = time.perf_counter()
        self.files = _files(self.run_dir)
        self.memory.reset()

    def end(self, status: str = "ok", note: str = "") -> PhaseRecord:
        record = self.current
        record.seconds = time.perf_counter() - self.started
        record.peak_memory_gb = round(self.memory.read_gb(), 2)
        files, size = _files(self.run_dir)
        record.files_written, record.disk_gb = max(0, files - self.files[0]), round((size - self.files[1]) / 2**30, 2)
        record.status, record.note = status, note or record.note
        if self.modules and record.steps:  # a stage: what it trained, and what validate's formula expects of it
            from genhancer_plugins.util.memory import memory_estimates

            record.total_parameters = sum(p.numel() for m in self.modules.values() for p in m.parameters())
            record.trained_parameters = sum(p.numel() for m in self.modules.values() for p in m.parameters() if p.requires_grad)
            record.estimated_memory_gb = memory_estimates(record.total_parameters, {"stage": record.trained_parameters}, 1)["stage"]["ddp"]
        self.records.append(record)
        return record

    @hookimpl
    def genhancer_run_start(self, run: Any) -> None:
        self.modules = dict(run.modules)
        self.end()
        evaluation = "eval original (results read back)" if self.resumed else "eval original"
        self.begin(evaluation if run.recipe.eval else "stage set-up (optimiser, loader)")

    @hookimpl
    def genhancer_stage_start(self, stage: Any) -> None:
        self.end()  # what came before: the original's evaluation, a resume's set-up (spans of no time are not shown)
        label = f"{stage.stage} (resumed from step {stage.steps})" if stage.steps else stage.stage
        self.begin(label)
        self.current.note = f"steps {stage.steps}..{stage.total_steps}"

    @hookimpl
    def genhancer_step_end(self, step: Any) -> None:
        self.current.steps += 1
        if self.interrupt_at.get(step.stage) == step.step:
            del self.interrupt_at[step.stage]
            self.end("interrupted", f"stopped at step {step.step}, after the checkpoint at step {step.step - 1}")
            raise Interrupted(f"{step.stage} interrupted at step {step.step}")

    @hookimpl
    def genhancer_stage_end(self, stage: Any) -> None:
        self.end()
        self.begin("export (write, reload check)" if stage.stage == "stage2" else "between stages")

    @hookimpl
    def genhancer_export_end(self, export: Any) -> None:
        self.end("ok" if export.written else "skipped", export.reason)
        self.begin("eval enhanced, downstream phases")

    @hookimpl
    def genhancer_run_end(self, run: Any, completed: bool, error: Any) -> None:
        if completed:
            self.end()
