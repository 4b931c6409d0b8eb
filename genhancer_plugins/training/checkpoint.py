"""Checkpoints as safetensors + JSON: nothing is ever unpickled.

A checkpoint holds the trainable parameters (by name), the optimiser state (by
parameter name) and a JSON state (step, epoch, data position). Randomness is
derived from (seed, stage, step), so no RNG state needs saving.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file
from torch import nn

from genhancer_plugins.training.sharding import full, placed_like
from genhancer_plugins.util.files import save_tensors, write_json

STATE_FILE = "state.json"
WEIGHTS_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"


def gathered_tensors(module: nn.Module, keep: Callable[[str, nn.Parameter], bool]) -> dict[str, torch.Tensor]:
    """Whole tensors (gathered from the shards under sharding: every process calls it), on the
    CPU, of the parameters ``keep(name, parameter)`` selects."""
    return {n: full(p.detach()).to("cpu").contiguous() for n, p in module.named_parameters() if keep(n, p)}


def trainable_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The trained tensors by name."""
    return gathered_tensors(module, lambda name, param: param.requires_grad)


def optimizer_state(optimizer: torch.optim.Optimizer, names: dict[int, str]) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Optimiser state (AdamW moments, SGD momentum) keyed ``<param name>/<field>``, plus the param groups as JSON."""
    tensors: dict[str, torch.Tensor] = {}
    groups = []
    for group in optimizer.param_groups:
        group_names = [names[id(p)] for p in group["params"]]
        groups.append({k: (list(v) if isinstance(v, tuple) else v) for k, v in group.items() if k != "params"} | {"params": group_names})
        for p, name in zip(group["params"], group_names):
            for key, value in optimizer.state.get(p, {}).items():
                tensor = value if torch.is_tensor(value) else torch.tensor(value)
                tensors[f"{name}/{key}"] = full(tensor.detach()).to("cpu").contiguous()
    return tensors, groups


def load_optimizer_state(optimizer: torch.optim.Optimizer, names: dict[int, str], tensors: dict[str, torch.Tensor], groups: list[dict[str, Any]]) -> None:
    if len(groups) != len(optimizer.param_groups):
        raise ValueError("checkpoint optimizer has a different number of parameter groups")
    for group, saved in zip(optimizer.param_groups, groups):
        if [names[id(p)] for p in group["params"]] != saved["params"]:
            raise ValueError("checkpoint optimizer covers different parameters than this run trains")
        for key, value in saved.items():
            if key != "params":
                group[key] = tuple(value) if isinstance(group.get(key), tuple) else value
        for p, name in zip(group["params"], saved["params"]):
            fields = {k.split("/", 1)[1]: v for k, v in tensors.items() if k.split("/", 1)[0] == name}
            if fields:
                optimizer.state[p] = {k: (placed_like(v.to(p.device), p) if v.dim() else v) for k, v in fields.items()}


def save_checkpoint(directory: Path, module: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any],
                    write: bool = True) -> None:
    """Write atomically: a half-written checkpoint is never picked up by ``--resume``.
    Under sharding every process calls it (the tensors are gathered) and one writes."""
    names = {id(p): n for n, p in module.named_parameters()}
    weights = trainable_state(module)
    tensors, groups = optimizer_state(optimizer, names)
    if not write:
        return
    tmp = directory.with_name(directory.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_tensors(weights, tmp / WEIGHTS_FILE)
    save_tensors(tensors, tmp / OPTIMIZER_FILE)
    write_json(tmp / STATE_FILE, state | {"optimizer_groups": groups})
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)


def load_checkpoint(directory: Path, module: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    state = json.loads((directory / STATE_FILE).read_text())
    load_weights(directory / WEIGHTS_FILE, module)
    names = {id(p): n for n, p in module.named_parameters()}
    load_optimizer_state(optimizer, names, load_file(directory / OPTIMIZER_FILE), state["optimizer_groups"])
    return state


def load_weights(path: Path, module: nn.Module, prefixes: tuple[str, ...] = ()) -> list[str]:
    """Copy the named tensors of a safetensors file into ``module``.

    Every tensor in the file must exist in the module with the same shape;
    ``prefixes`` limits loading to names starting with one of them.
    """
    tensors = load_file(path)
    params = dict(module.named_parameters())
    params.update(dict(module.named_buffers()))
    loaded = []
    for name, value in tensors.items():
        if prefixes and not name.startswith(prefixes):
            continue
        if name not in params:
            raise ValueError(f"{path}: tensor {name!r} has no counterpart in the model (was it trained with another recipe?)")
        target = params[name]
        if target.shape != value.shape:
            raise ValueError(f"{path}: tensor {name!r} has shape {tuple(value.shape)}, the model expects {tuple(target.shape)}")
        with torch.no_grad():
            target.copy_(placed_like(value.to(target.device, target.dtype), target))
        loaded.append(name)
    return loaded


def checkpoint_complete(directory: Path) -> bool:
    """Whether ``directory`` holds a whole checkpoint (its state is written last)."""
    return (Path(directory) / STATE_FILE).is_file()


def list_checkpoints(directory: Path, complete_marker: str | None = STATE_FILE) -> list[Path]:
    """``checkpoint-<step>`` folders, oldest first; with ``complete_marker``, only those holding that file."""
    found = []
    for path in Path(directory).glob("checkpoint-*"):
        suffix = path.name.removeprefix("checkpoint-")
        if suffix.isdigit() and (complete_marker is None or (path / complete_marker).is_file()):
            found.append((int(suffix), path))
    return [p for _, p in sorted(found)]


def prune_checkpoints(directory: Path, keep: int) -> None:
    for path in list_checkpoints(directory)[:-keep]:
        shutil.rmtree(path)
