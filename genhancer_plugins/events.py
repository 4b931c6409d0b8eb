"""Values passed to the lifecycle hooks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from torch import nn


@dataclass
class RunInfo:
    recipe: Any  #: the validated :class:`~genhancer_plugins.recipe.schema.Recipe`
    output_dir: Path
    modules: Mapping[str, nn.Module]
    process_index: int = 0
    num_processes: int = 1


@dataclass
class StepInfo:
    stage: str
    step: int  #: optimisation steps done in this stage (1-based after the step)
    total_steps: int
    loss: float  #: mean over the step's micro-batches and processes
    learning_rate: float
    samples_per_second: float
    process_index: int = 0
    modules: Mapping[str, nn.Module] = field(default_factory=dict)


@dataclass
class StageInfo:
    stage: str
    steps: int  #: at stage start: the step training starts from; at stage end: steps done
    final_loss: float | None
    directory: Path
    modules: Mapping[str, nn.Module]
    process_index: int = 0
    num_processes: int = 1
    total_steps: int = 0


@dataclass
class ExportInfo:
    directory: Path
    recipe: Any
    process_index: int = 0
