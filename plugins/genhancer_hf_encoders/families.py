"""The encoder families as data: everything that differs between CLIP (and MetaCLIP),
SigLIP (and SigLIP 2 FixRes), DINOv2, DINOv3 and AIMv2 is a field of :class:`Family`, decided in one
place (:func:`family_for`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Family:
    name: str
    full_model: str | None  #: transformers class holding both towers (None: a vision-only family)
    vision_models: tuple[str, ...]  #: vision-only classes accepted from a checkpoint
    full_config: str
    vision_config: str
    image_processor: str
    has_class_token: bool  #: CLIP prepends a CLS token to the patch tokens (LLaVA drops it); SigLIP does not
    resize: str  #: "shortest_edge" (resize, then centre crop: CLIP) or "square" (resize to the square: SigLIP)
    projected_vision_model: str | None  #: the vision-only class with a projection head, if the family has one
    text_padding: str  #: how the text tower was trained: "longest" (CLIP) or "max_length" (SigLIP, 64 tokens)
    logit_bias: bool  #: a learned bias on the image-text logits (SigLIP's sigmoid loss)
    #: where a vision-only checkpoint's weights sit in the hub layout ("" for DINOv2, whose keys are the model's own)
    hub_prefix: str = "vision_model."
    #: the resolution it is trained and used at: its config's ``image_size``, or its image processor's crop
    #: (DINOv2's config names 518, the size of its position table; its processor crops 224)
    image_size_from: str = "config"
    #: the config field counting register tokens between the class token and the patches (DINOv3), if any
    register_tokens_field: str | None = None
    #: settings of the PIL image processor built for the family instead of reading the checkpoint's, where
    #: transformers implements the checkpoint's processor for torchvision only (DINOv3); None: the checkpoint's
    processor_settings: tuple[tuple[str, Any], ...] | None = None

    def register_tokens(self, config: Any) -> int:
        """Register tokens of a checkpoint's (vision) config: 0 for families without them."""
        if not self.register_tokens_field:
            return 0
        return int(getattr(getattr(config, "vision_config", config), self.register_tokens_field, 0) or 0)

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
    # Vision only: the global token is the (layer-normed) CLS, image-text evaluators refuse it with the reason
    "dinov2": Family(
        "dinov2", None, ("Dinov2Model",), "Dinov2Config", "Dinov2Config", "BitImageProcessor",
        has_class_token=True,
        resize="shortest_edge",
        projected_vision_model=None,
        text_padding="longest",
        logit_bias=False,
        hub_prefix="",
        image_size_from="processor",
    ),
    # Vision only, like DINOv2; its 4 register tokens follow the CLS and are neither global nor local tokens.
    # transformers implements DINOv3's image processor for torchvision only: the same resize (224 x 224,
    # bilinear, no crop) and ImageNet statistics, with PIL.
    "dinov3": Family(
        "dinov3", None, ("DINOv3ViTModel",), "DINOv3ViTConfig", "DINOv3ViTConfig", "ViTImageProcessor",
        has_class_token=True,
        resize="square",
        projected_vision_model=None,
        text_padding="longest",
        logit_bias=False,
        hub_prefix="",
        register_tokens_field="num_register_tokens",
        processor_settings=(("image_mean", (0.485, 0.456, 0.406)), ("image_std", (0.229, 0.224, 0.225)), ("resample", 2)),
    ),
    # AIMv2: no class token (the global token is the attention-pool head's output where the checkpoint has
    # one, the LiT variant's projected; else the mean of the patch tokens); the LiT variant has a CLIP-style text tower
    "aimv2": Family(
        "aimv2", "Aimv2Model", ("Aimv2VisionModel",), "Aimv2Config", "Aimv2VisionConfig", "CLIPImageProcessor",
        has_class_token=False,
        resize="shortest_edge",
        projected_vision_model=None,
        text_padding="longest",
        logit_bias=False,
        hub_prefix="",
    ),
}


def family_for(config: Any) -> Family:
    """The family of a transformers config (full or vision-only), by its ``model_type``."""
    model_type = str(getattr(config, "model_type", ""))
    for name, family in FAMILIES.items():
        if model_type == name or model_type.startswith(name + "_"):  # "siglip_vision_model", "dinov3_vit"; never "siglip2"
            return family
    raise ValueError(f"model type {model_type!r} is none of {', '.join(FAMILIES)}{_naflex_hint(model_type)}")


def _naflex_hint(name: str) -> str:
    if not name.lower().startswith("siglip2"):
        return ""
    return ("; SigLIP 2's NaFlex checkpoints take variable patch grids, which the conditioners and crops here (square grids) do "
            "not: use a FixRes SigLIP 2 checkpoint (google/siglip2-*-patch*-<size>), which loads as siglip (presets siglip2-*)")


def global_features(output: Any) -> Any:
    """The vision trunk's global token: its pooler output (CLIP's layer-normed CLS, SigLIP's and AIMv2's
    attention-pool head), or the mean of its tokens where it has no pooling head (AIMv2's vision checkpoints)."""
    return output.pooler_output if output.pooler_output is not None else output.last_hidden_state.mean(dim=1)


def transformers_class(name: str) -> Any:
    import transformers

    return getattr(transformers, name)


def model_class_for(family: Family, config: Any, where: str) -> Any:
    arch = (getattr(config, "architectures", None) or [None])[0]
    allowed = tuple(name for name in (family.full_model, *family.vision_models) if name)
    if arch is None:
        arch = family.full_model if hasattr(config, "vision_config") and family.full_model else family.vision_models[-1]
    if arch not in allowed:
        raise ValueError(f"{where}: architecture {arch!r} is not a {family.name} model; expected one of {', '.join(allowed)}"
                         f"{_naflex_hint(str(arch))}")
    return transformers_class(arch)
