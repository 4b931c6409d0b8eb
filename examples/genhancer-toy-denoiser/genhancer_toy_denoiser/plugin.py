"""Registers denoiser ``toy_mlp``. Light on purpose: torch is imported only when the
factory builds a model (``genhancer --help`` and ``genhancer plugins`` stay fast)."""

from __future__ import annotations

from typing import Any

from pydantic import PositiveInt

from genhancer_plugins import ComponentSpec, Params, construction_device, hookimpl


class ToyParams(Params):
    hidden: PositiveInt = 64
    cond_dim: PositiveInt = 16


def build(params: ToyParams, target: Any, meta: bool = False) -> Any:
    from .model import ToyMLPDenoiser

    with construction_device(meta):  # meta=True: shapes only, for `genhancer validate` and `bench --dry`
        return ToyMLPDenoiser(params.hidden, params.cond_dim, target)


@hookimpl
def genhancer_components() -> list[ComponentSpec]:
    return [ComponentSpec(kind="denoiser", name="toy_mlp", factory=build, params=ToyParams,
                          presets={"small": {"hidden": 32}}, description="MLP rectified flow on flattened latents")]
