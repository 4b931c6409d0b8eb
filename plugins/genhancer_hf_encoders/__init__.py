"""Built-in encoders: ``clip`` (OpenAI CLIP, MetaCLIP), ``siglip`` and ``dinov2`` (vision only); they load as image-text
models for the evaluators and as vision towers for downstream models (LLaVA)."""

from __future__ import annotations

from functools import partial
from typing import Any

from genhancer_plugins import ComponentSpec, hookimpl, load_presets

#: the transformer stacks a rehearsal may shorten (both towers)
DEPTH = ("config.vision.num_hidden_layers", "config.text.num_hidden_layers")


def _presets() -> dict[str, Any]:
    return load_presets(__name__)


def _build(family: str, params: Any, meta: bool = False) -> Any:
    from .encoders import build_encoder  # transformers is imported only when a model is built

    return build_encoder(family, params, meta=meta)


@hookimpl
def genhancer_components() -> list[ComponentSpec]:
    from .params import HFEncoderParams

    presets = _presets()
    return [
        ComponentSpec(
            kind="encoder",
            name="clip",
            factory=partial(_build, "clip"),
            params=HFEncoderParams,
            presets=presets["clip"],
            default_preset="openai-clip-vit-l14-224",
            description="OpenAI CLIP / MetaCLIP ViT; global token = visual_projection(pooler_output)",
            depth_fields=DEPTH,
        ),
        ComponentSpec(
            kind="encoder",
            name="siglip",
            factory=partial(_build, "siglip"),
            params=HFEncoderParams,
            presets=presets["siglip"],
            default_preset="siglip-so400m-224",
            description="SigLIP ViT; global token = pooler_output of the attention-pool head",
            depth_fields=DEPTH,
        ),
        ComponentSpec(
            kind="encoder",
            name="dinov2",
            factory=partial(_build, "dinov2"),
            params=HFEncoderParams,
            presets=presets["dinov2"],
            default_preset="dinov2-large",
            description="DINOv2 ViT, vision only; global token = the layer-normed CLS (image-text evaluators refuse it)",
            depth_fields=DEPTH[:1],
        ),
    ]


@hookimpl
def genhancer_load_image_text_model(source: str, text_from: str | None, device: str) -> Any:
    from .image_text import load_image_text_model

    return load_image_text_model(source, text_from, device)


@hookimpl
def genhancer_load_vision_tower(source: str) -> Any:
    from .image_text import load_vision_tower

    return load_vision_tower(source)
