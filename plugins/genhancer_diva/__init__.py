"""The DIVA baseline's generator as components: denoiser ``ddpm_unet`` and conditioner ``diva``.

DIVA (Wang et al., "Diffusion Feedback Helps CLIP See Better", baaivision/DIVA) enhances CLIP
through a frozen, pretrained Stable Diffusion 2.1 UNet. This plugin is written only against
GenHancer's public plugin API, as any third party's would be.
"""

from __future__ import annotations

from typing import Any

from genhancer_plugins import ComponentSpec, construction_device, hookimpl, load_presets

from .params import DDPMUNetParams, DivaConditionParams


def _build_unet(params: DDPMUNetParams, target: Any, meta: bool = False) -> Any:
    from .unet import DDPMUNetDenoiser

    return DDPMUNetDenoiser(params, target, meta=meta)


def _build_conditioner(params: DivaConditionParams, encoder: Any, condition: Any, meta: bool = False) -> Any:
    from .conditioner import DivaConditioner

    with construction_device(meta):
        return DivaConditioner(params, encoder, condition)


@hookimpl
def genhancer_components() -> list[ComponentSpec]:
    presets = load_presets(__name__)
    return [
        ComponentSpec(
            kind="denoiser",
            name="ddpm_unet",
            factory=_build_unet,
            params=DDPMUNetParams,
            presets=presets["ddpm_unet"],
            default_preset="sd2-1-base",
            description="Stable Diffusion UNet2DConditionModel with its DDPM schedule (epsilon or v), frozen by default: DIVA's generator",
        ),
        ComponentSpec(
            kind="conditioner",
            name="diva",
            factory=_build_conditioner,
            params=DivaConditionParams,
            description="DIVA's condition: class token + local tokens drawn with replacement, linear maps to cross-attention width",
        ),
    ]
