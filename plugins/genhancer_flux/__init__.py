"""Built-in FLUX-family components: tokenizer ``vae`` and denoiser ``rectified_flow``."""

from __future__ import annotations

from typing import Any

from genhancer_plugins import ComponentSpec, hookimpl, load_presets

from .params import RectifiedFlowParams, VAEParams


def _build_vae(params: VAEParams, meta: bool = False) -> Any:
    from .vae import build_vae

    return build_vae(params, meta=meta)


def _build_rectified_flow(params: RectifiedFlowParams, target: Any, meta: bool = False) -> Any:
    from .rectified_flow import RectifiedFlowDenoiser

    return RectifiedFlowDenoiser(params, target, meta=meta)


@hookimpl
def genhancer_components() -> list[ComponentSpec]:
    presets = load_presets(__name__)
    return [
        ComponentSpec(
            kind="tokenizer",
            name="vae",
            factory=_build_vae,
            params=VAEParams,
            presets=presets["vae"],
            default_preset="flux1-dev",
            description="frozen diffusers AutoencoderKL; latents scaling_factor * (z - shift_factor)",
        ),
        ComponentSpec(
            kind="denoiser",
            name="rectified_flow",
            factory=_build_rectified_flow,
            params=RectifiedFlowParams,
            presets=presets["rectified_flow"],
            default_preset="flux-n2",
            description="FLUX-style MM-DiT (n double + 2n single blocks), rectified-flow velocity loss",
            depth_fields=("num_layers", "num_single_layers"),
        ),
    ]
