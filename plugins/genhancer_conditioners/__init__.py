"""Built-in conditioners: ``cls`` and ``cls_local``."""

from __future__ import annotations

from typing import Any

from genhancer_plugins import ComponentSpec, construction_device, hookimpl

from .params import ClsLocalParams, ClsParams


def _build(params: ClsParams, encoder: Any, condition: Any, meta: bool = False) -> Any:
    from .cls import ClsConditioner

    with construction_device(meta):
        return ClsConditioner(params, encoder, condition)


@hookimpl
def genhancer_components() -> list[ComponentSpec]:
    return [
        ComponentSpec(
            kind="conditioner",
            name="cls",
            factory=_build,
            params=ClsParams,
            description="global (class) token only; projector h = LayerNorm, Linear, GELU, Linear per stream",
        ),
        ComponentSpec(
            kind="conditioner",
            name="cls_local",
            factory=_build,
            params=ClsLocalParams,
            description="global token + a share n of local patch tokens as extra condition tokens (Fig. 5 ablation)",
        ),
    ]
