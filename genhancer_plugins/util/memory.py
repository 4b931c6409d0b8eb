"""The per-GPU memory estimate ``validate``, ``rehearse`` and downstream phases share."""

from __future__ import annotations

from typing import Any


def memory_estimates(total: int, trainable: dict[str, int], gpus: int = 8,
                     state_bytes: dict[str, int] | None = None) -> dict[str, Any]:
    """Per-GPU memory of weights, gradients and optimiser states (fp32: 4 + 4 + 8 bytes per trained
    parameter for AdamW, 4 + 4 + 4 for SGD with momentum: ``state_bytes`` per stage, default 8;
    4 per frozen one), under DDP and when sharded over ``gpus`` (ZeRO-2 / FSDP
    SHARD_GRAD_OP shard gradients and optimiser states; ZeRO-3 / FSDP FULL_SHARD the weights
    too). Activations come on top: ``genhancer bench`` measures them."""
    gb = 2**30
    out: dict[str, Any] = {"gpus": gpus, "note": "weights, gradients and optimiser states only; activations on top (genhancer bench)"}
    for stage, n in trainable.items():
        per_trained = 4 + (state_bytes or {}).get(stage, 8)  # gradient + optimiser state
        out[stage] = {
            "ddp": round((4 * total + per_trained * n) / gb, 1),
            "zero2": round((4 * total + per_trained * n / gpus) / gb, 1),
            "zero3": round((4 * total + per_trained * n) / gpus / gb, 1),
        }
    return out
