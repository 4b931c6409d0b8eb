"""The per-GPU memory estimate ``validate``, ``rehearse`` and downstream phases share."""

from __future__ import annotations

from typing import Any


def memory_estimates(total: int, trainable: dict[str, int], gpus: int = 8) -> dict[str, Any]:
    """Per-GPU memory of weights, gradients and AdamW states (fp32: 4 + 4 + 8 bytes per trained
    parameter, 4 per frozen one), under DDP and when sharded over ``gpus`` (ZeRO-2 / FSDP
    SHARD_GRAD_OP shard gradients and optimiser states; ZeRO-3 / FSDP FULL_SHARD the weights
    too). Activations come on top: ``genhancer bench`` measures them."""
    gb = 2**30
    out: dict[str, Any] = {"gpus": gpus, "note": "weights, gradients and optimiser states only; activations on top (genhancer bench)"}
    for stage, n in trainable.items():
        out[stage] = {
            "ddp": round((4 * total + 12 * n) / gb, 1),
            "zero2": round((4 * total + 12 * n / gpus) / gb, 1),
            "zero3": round((4 * total + 12 * n) / gpus / gb, 1),
        }
    return out
