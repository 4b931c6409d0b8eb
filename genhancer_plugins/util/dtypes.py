"""The one map from the dtype names recipes and commands use to torch dtypes."""

from __future__ import annotations

from typing import Any

#: ``export.dtype``, ``cache.dtype``, ``--dtype``: storage dtypes by name
DTYPES = ("float32", "bfloat16", "float16")
#: ``train.mixed_precision`` -> the dtype autocast computes in (``no``: none)
PRECISIONS = {"bf16": "bfloat16", "fp16": "float16"}


def torch_dtype(name: str) -> Any:
    """``"bfloat16"`` -> ``torch.bfloat16`` (one of :data:`DTYPES`)."""
    import torch

    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; one of {', '.join(DTYPES)}")
    return getattr(torch, name)


def compute_dtype(mixed_precision: str) -> Any:
    """The autocast dtype of a mixed-precision setting, or None for full precision."""
    name = PRECISIONS.get(mixed_precision)
    return torch_dtype(name) if name else None


def resolve_precision(wanted: str) -> str:
    """``train.mixed_precision`` for this machine: ``auto`` is bf16 on a GPU that has it, else no."""
    import torch

    if wanted != "auto":
        return wanted
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
