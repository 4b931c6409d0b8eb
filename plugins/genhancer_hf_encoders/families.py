"""The encoder families as data: everything that differs between CLIP (and MetaCLIP)
and SigLIP is a field of :class:`Family`, decided in one place (:func:`family_for`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Family:
    name: str
    full_model: str  #: transformers class holding both towers
    vision_models: tuple[str, ...]  #: vision-only classes accepted from a checkpoint
    full_config: str
    vision_config: str
    image_processor: str
    has_class_token: bool  #: CLIP prepends a CLS token to the patch tokens (LLaVA drops it); SigLIP does not
    resize: str  #: "shortest_edge" (resize, then centre crop: CLIP) or "square" (resize to the square: SigLIP)
    projected_vision_model: str | None  #: the vision-only class with a projection head, if the family has one
    text_padding: str  #: how the text tower was trained: "longest" (CLIP) or "max_length" (SigLIP, 64 tokens)
    logit_bias: bool  #: a learned bias on the image-text logits (SigLIP's sigmoid loss)

    def size_dict(self, image_size: int) -> dict[str, dict[str, int]]:
        if self.resize == "shortest_edge":
            return {"size": {"shortest_edge": image_size}, "crop_size": {"height": image_size, "width": image_size}}
        return {"size": {"height": image_size, "width": image_size}}


FAMILIES = {
    "clip": Family(
        "clip",
        "CLIPModel",
        ("CLIPVisionModelWithProjection", "CLIPVisionModel"),
        "CLIPConfig",
        "CLIPVisionConfig",
        "CLIPImageProcessor",
        has_class_token=True,
        resize="shortest_edge",
        projected_vision_model="CLIPVisionModelWithProjection",
        text_padding="longest",
        logit_bias=False,
    ),
    "siglip": Family(
        "siglip", "SiglipModel", ("SiglipVisionModel",), "SiglipConfig", "SiglipVisionConfig", "SiglipImageProcessor",
        has_class_token=False,
        resize="square",
        projected_vision_model=None,
        text_padding="max_length",
        logit_bias=True,
    ),
}


def family_for(config: Any) -> Family:
    """The family of a transformers config (full or vision-only), by its ``model_type``."""
    model_type = str(getattr(config, "model_type", ""))
    for name, family in FAMILIES.items():
        if model_type.startswith(name):
            return family
    raise ValueError(f"model type {model_type!r} is neither CLIP nor SigLIP")


def transformers_class(name: str) -> Any:
    import transformers

    return getattr(transformers, name)


def model_class_for(family: Family, config: Any, where: str) -> Any:
    arch = (getattr(config, "architectures", None) or [None])[0]
    allowed = (family.full_model, *family.vision_models)
    if arch is None:
        arch = family.full_model if hasattr(config, "vision_config") else family.vision_models[-1]
    if arch not in allowed:
        raise ValueError(f"{where}: architecture {arch!r} is not a {family.name} model; expected one of {', '.join(allowed)}")
    return transformers_class(arch)
