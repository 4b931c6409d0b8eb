"""Built-in encoders: ``clip`` (OpenAI CLIP, MetaCLIP), ``siglip`` (SigLIP, SigLIP 2 FixRes), ``dinov2`` and ``dinov3`` (vision only)
and ``aimv2``; they load as image-text
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


#: family -> (default preset, description, stacks a rehearsal may shorten)
ENCODERS = {
    "clip": ("openai-clip-vit-l14-224", "OpenAI CLIP / MetaCLIP ViT; global token = visual_projection(pooler_output)", DEPTH),
    "siglip": ("siglip-so400m-224", "SigLIP ViT; global token = pooler_output of the attention-pool head", DEPTH),
    "dinov2": ("dinov2-large", "DINOv2 ViT, vision only; global token = the layer-normed CLS (image-text evaluators refuse it)",
               DEPTH[:1]),
    "dinov3": ("dinov3-vitl16", "DINOv3 ViT, vision only; global token = the layer-normed CLS (register tokens dropped)", DEPTH[:1]),
    "aimv2": ("aimv2-large-patch14-224-lit", "AIMv2 ViT (no CLS); global token = the attention-pool head (LiT: projected), "
              "or the patch tokens' mean; text tower in the LiT checkpoints", DEPTH),
}


@hookimpl
def genhancer_components() -> list[ComponentSpec]:
    from .params import HFEncoderParams

    presets = _presets()
    return [ComponentSpec(kind="encoder", name=name, factory=partial(_build, name), params=HFEncoderParams, presets=presets[name],
                          default_preset=preset, description=description, depth_fields=depth)
            for name, (preset, description, depth) in ENCODERS.items()]


@hookimpl
def genhancer_load_image_text_model(source: str, text_from: str | None, device: str) -> Any:
    from .image_text import load_image_text_model

    return load_image_text_model(source, text_from, device)


@hookimpl
def genhancer_load_vision_tower(source: str) -> Any:
    from .image_text import load_vision_tower

    return load_vision_tower(source)
