"""Built-in conditioners: ``cls``."""

from __future__ import annotations

from typing import Any

from genhancer_plugins import ComponentSpec, hookimpl

from .params import ClsParams


def _build_cls(params: ClsParams, encoder: Any, condition: Any, meta: bool = False) -> Any:
    import torch

    from .cls import ClsConditioner

    if meta:
        with torch.device("meta"):
            return ClsConditioner(params, encoder, condition)
    return ClsConditioner(params, encoder, condition)


@hookimpl
def genhancer_components() -> list[ComponentSpec]:
    return [
        ComponentSpec(
            kind="conditioner",
            name="cls",
            factory=_build_cls,
            params=ClsParams,
            description="global (class) token only; projector h = LayerNorm, Linear, GELU, Linear per stream",
        )
    ]
