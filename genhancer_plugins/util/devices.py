"""``--device`` checked against what this torch sees, before any model loads."""

from __future__ import annotations

from genhancer_plugins.util.errors import RecipeError, RunError


def resolve_device(requested: str | None) -> str:
    """``--device``, checked against what this torch sees (default: cuda when there is a GPU)."""
    import torch

    if requested is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise RecipeError(f"--device {requested!r}: expected cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            raise RunError(f"--device {requested}: this torch {torch.__version__} ({build}) sees no CUDA GPU; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RunError(f"--device {requested}: this machine has {torch.cuda.device_count()} GPU(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return requested
