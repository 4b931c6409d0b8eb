"""Fully sharded data parallel (PyTorch's FSDP2, ``fully_shard``) for the GenHancer
stages: ``train.sharding: fsdp``. Every part with trainable parameters is sharded
(each block of its module lists, then the part), so weights, gradients and optimiser
states are split over the processes; checkpoints stay our own safetensors files of
full tensors, gathered from the shards on every process and written by the first."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

#: Methods besides ``forward`` through which the engine runs a component (the Denoiser interface's).
ENTRY_METHODS = ("loss", "sample")


def is_sharded(tensor: Any) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def full(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor (a collective for a shard: every process must call it)."""
    return tensor.full_tensor() if is_sharded(tensor) else tensor


def placed_like(value: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``value`` (a whole tensor) laid out as ``target``: sharded the same way when ``target`` is a shard."""
    if not is_sharded(target):
        return value
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(value.to(target.device_mesh.device_type), target.device_mesh, target.placements)


def shard_trainable_parts(parts: dict[str, nn.Module]) -> list[str]:
    """Shard each part that trains and is not sharded yet; returns the parts sharded now."""
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    done = []
    for name, part in parts.items():
        if getattr(part, "_genhancer_sharded", False) or not any(p.requires_grad for p in part.parameters()):
            continue
        scalars = {p for p in part.parameters() if p.dim() == 0}  # FSDP2 cannot shard them (CLIP's logit_scale)
        if any(p.requires_grad for p in scalars):
            raise RuntimeError(f"{name}: a trained scalar parameter cannot be sharded; train it without train.sharding")
        _shard_blocks(part, lambda block, scalars=scalars: fully_shard(block, ignored_params=scalars))
        fully_shard(part, ignored_params=scalars)
        for method in ENTRY_METHODS:  # a denoiser is run through loss/sample, not forward: gather its weights there too
            if callable(getattr(part, method, None)):
                register_fsdp_forward_method(part, method)
        part._genhancer_sharded = True
        done.append(name)
    return done


def _shard_blocks(module: nn.Module, shard: Any) -> None:
    """Shard the blocks of the outermost module lists (the transformer layers); a sharded
    block's own lists are left to it."""
    for child in module.children():
        if isinstance(child, nn.ModuleList):
            for block in child:
                if any(p.dim() for p in block.parameters()):
                    shard(block)
        else:
            _shard_blocks(child, shard)
