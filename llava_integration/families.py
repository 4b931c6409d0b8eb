"""The MLLM families ``genhancer llava swap`` and ``eval`` open, as data.

LLaVA-1.5 feeds one square crop per image (576 tokens for CLIP L/14 @336) and its
processor takes the tower's own image processor. LLaVA-NeXT and LLaVA-OneVision
tile each image (AnyRes: a base view plus tiles at the tower's resolution, chosen
from ``image_grid_pinpoints``), so the number of image tokens depends on the image
and their processors count them; a swapped tower must keep the per-tile shape
(width, resolution, patch size), and the checkpoint's tiling processor stays, with
the tower's normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MLLMFamily:
    name: str  #: as users know it
    model_type: str  #: the checkpoint's ``config.model_type``
    model_class: str  #: its ``transformers`` class
    tiles_images: bool  #: AnyRes: the processor tiles each image and counts its image tokens
    published_tower: str  #: the tower its public checkpoints hold (what a swap must match)


FAMILIES = (
    MLLMFamily("LLaVA-1.5", "llava", "LlavaForConditionalGeneration", False, "CLIP ViT-L/14 @336 (CLIPVisionModel)"),
    MLLMFamily("LLaVA-NeXT", "llava_next", "LlavaNextForConditionalGeneration", True, "CLIP ViT-L/14 @336 (CLIPVisionModel)"),
    MLLMFamily("LLaVA-OneVision", "llava_onevision", "LlavaOnevisionForConditionalGeneration", True,
               "SigLIP so400m/14 @384 (SiglipVisionModel)"),
)


def family_of(config: Any, source: Any = "the checkpoint") -> MLLMFamily:
    """The family of a loaded config; an unknown ``model_type`` is refused with the ones we open."""
    model_type = getattr(config, "model_type", None)
    for family in FAMILIES:
        if family.model_type == model_type:
            return family
    known = ", ".join(f"{f.name} ({f.model_type})" for f in FAMILIES)
    raise ValueError(f"{source}: model type {model_type!r} is not an MLLM family this command opens; known: {known}")


def model_class(family: MLLMFamily) -> Any:
    import transformers

    return getattr(transformers, family.model_class)


def processor_class(family: MLLMFamily) -> Any:
    """The processor class of ``family``'s checkpoints.

    transformers 5's ``LlavaOnevisionProcessor`` cannot be built without torchvision, not even
    for images: its constructor resolves the video processor's class, which needs torchvision
    (the CPU wheels here have none). There, an images-only subclass stands in: the same image
    tiling and token counting, no video processor; it saves as ``LlavaOnevisionProcessor``.
    """
    import transformers
    from transformers.utils import is_torchvision_available

    name = family.model_class.replace("ForConditionalGeneration", "Processor")
    if family.model_type != "llava_onevision" or is_torchvision_available():
        return getattr(transformers, name)
    return _images_only(getattr(transformers, name))


def _images_only(base: Any) -> Any:
    class ImagesOnly(base):
        @classmethod
        def get_attributes(cls) -> list[str]:
            return [name for name in super().get_attributes() if name != "video_processor"]

    ImagesOnly.__name__ = ImagesOnly.__qualname__ = base.__name__  # what processor_config.json names
    return ImagesOnly


def load_processor(source: Any, family: MLLMFamily) -> Any:
    return processor_class(family).from_pretrained(source)
