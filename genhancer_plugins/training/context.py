"""What a stage trains with, handed down by the run (instead of the run itself).

The engine builds one :class:`TrainingContext` after set-up; the stage trainer reads
only it, and the hook payloads it sends are made from it (:meth:`TrainingContext.info`),
so no module below the engine imports the engine.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from genhancer_plugins.events import RunInfo
from genhancer_plugins.recipe.schema import Recipe
from genhancer_plugins.training.cache import FrozenCache
from genhancer_plugins.training.model import GenHancerModel


@dataclass
class TrainingContext:
    recipe: Recipe
    output_dir: Path
    accelerator: Any  #: accelerate.Accelerator
    model: GenHancerModel
    dataset: Any  #: what the stages train on (fixed crops of the data when ``data.fixed_crops``)
    probe_dataset: Any  #: real images for previews and the export check, never cached rows
    cache: FrozenCache | None
    notify: Callable[..., None]  #: ``notify(hook_name, **payload)``: a lifecycle hook on every plugin, each isolated
    log: Callable[[str], None]
    resume: bool = False
    show_progress: bool = True

    @property
    def sharded(self) -> bool:
        """FSDP2 over several processes (``train.sharding: fsdp``); one process never shards."""
        return self.recipe.train.sharding == "fsdp" and self.accelerator.num_processes > 1

    @property
    def streaming(self) -> bool:
        """Iterable datasets shard themselves per process; map-style ones are sharded by accelerate."""
        return isinstance(self.dataset, torch.utils.data.IterableDataset)

    def gather(self, local: list[str]) -> list[str]:
        """Every process's list, joined (one process: the list itself)."""
        from accelerate.utils import gather_object

        return list(gather_object(local)) if self.accelerator.num_processes > 1 else list(local)

    def probe_images(self, count: int) -> torch.Tensor:
        """The probe dataset's first ``count`` images, on the device."""
        return probe_images(self.probe_dataset, count).to(self.accelerator.device)

    def info(self) -> RunInfo:
        """The run as hook payloads show it."""
        acc = self.accelerator
        return RunInfo(self.recipe, self.output_dir, self.model.parts(), acc, acc.process_index, acc.num_processes,
                       self.sharded, self.show_progress, self.log, self.probe_images)


def probe_images(dataset: Any, count: int) -> torch.Tensor:
    """A few fixed images (the dataset's first) for previews and the export check."""
    if isinstance(dataset, torch.utils.data.IterableDataset):
        dataset.set_epoch(0)
        items = list(itertools.islice(iter(dataset), count))
    else:
        items = [dataset[i] for i in range(min(count, len(dataset)))]
    return torch.stack([item["pixel_values"] for item in items])
