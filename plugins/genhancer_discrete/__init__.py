"""Built-in discrete path: tokenizer ``vq`` and denoiser ``perceiver``."""

from __future__ import annotations

from typing import Any

from genhancer_plugins import ComponentSpec, construction_device, hookimpl, load_presets

from .params import PerceiverParams, VQParams


def _build_vq(params: VQParams, meta: bool = False) -> Any:
    from .vq import build_vq

    return build_vq(params, meta=meta)


def _build_perceiver(params: PerceiverParams, target: Any, meta: bool = False) -> Any:
    from .perceiver import PerceiverDenoiser

    with construction_device(meta):
        return PerceiverDenoiser(params, target)


@hookimpl
def genhancer_components() -> list[ComponentSpec]:
    presets = load_presets(__name__)
    return [
        ComponentSpec(
            kind="tokenizer",
            name="vq",
            factory=_build_vq,
            params=VQParams,
            presets=presets["vq"],
            default_preset="amused-vqgan-f16",
            description="frozen diffusers VQModel (VQ-GAN); images <-> code indices",
        ),
        ComponentSpec(
            kind="denoiser",
            name="perceiver",
            factory=_build_perceiver,
            params=PerceiverParams,
            presets=presets["perceiver"],
            default_preset="perceiver-6",
            description="Perceiver masked-token predictor; condition via cross-attention keys/values",
            depth_fields=("num_layers",),
        ),
    ]
