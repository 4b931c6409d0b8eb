"""Swapping the vision tower of a LLaVA model (LLaVA-1.5, -NeXT, -OneVision).

LLaVA-1.5 reads features from layer -2 of a CLIP vision tower without the CLS
token, through a 2-layer MLP projector; NeXT does the same per AnyRes tile, and
OneVision reads every token of a SigLIP tower. A replacement tower must be the
model class the checkpoint holds, give the projector the width it was trained
on, and the same number of patch tokens per image (per tile) that the
processor inserts; anything else is an error that says what differs and what
the projector would need.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


class TowerMismatch(ValueError):
    pass


@dataclass(frozen=True)
class TowerShape:
    hidden_size: int
    patch_size: int
    image_size: int

    @property
    def tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2


def tower_shape(config: Any) -> TowerShape:
    vision = getattr(config, "vision_config", config)
    return TowerShape(int(vision.hidden_size), int(vision.patch_size), int(vision.image_size))


def load_tower(source: str | Path, plugins: Any) -> Any:
    """A vision tower (:class:`~genhancer_plugins.VisionTower`: the plain vision model LLaVA-1.5
    holds and its image processor), loaded by whichever encoder plugin knows ``source``."""
    from genhancer_plugins import load_vision_tower

    return load_vision_tower(plugins, source)


def feature_strategy(tower: Any) -> tuple[str, int]:
    """LLaVA's ``vision_feature_select_strategy`` and its ``num_additional_image_tokens``:
    a leading class token is dropped ("default"); a tower without one keeps every token ("full").
    Register tokens (DINOv3) stay: LLaVA drops at most the first token, so they reach the
    projector as image tokens, and the count says so."""
    if tower.has_class_token:
        return "default", 1 + tower.register_tokens
    return "full", tower.register_tokens


def image_tokens(processor: Any, vision_config: Any) -> int:
    """Image tokens per ``<image>`` of a LLaVA-1.5 processor, counted as ``LlavaProcessor`` counts
    them, on the pixel size its image processor really gives (a DINOv2 processor crops 224 px
    where the config's position table says 518). A processor saved without ``patch_size``
    (early llava-hf files) counts the config's patch grid, as LLaVA-1.5 did."""
    from PIL import Image

    if getattr(processor, "patch_size", None) is None:
        return (int(vision_config.image_size) // int(vision_config.patch_size)) ** 2
    pixels = processor.image_processor(images=[Image.new("RGB", (64, 64))], return_tensors="pt")["pixel_values"]
    height, width = pixels.shape[-2:]
    count = (height // processor.patch_size) * (width // processor.patch_size) + (processor.num_additional_image_tokens or 0)
    return count - 1 if processor.vision_feature_select_strategy == "default" else count


def check_compatible(llava_config: Any, new: TowerShape) -> None:
    old = tower_shape(llava_config.vision_config)
    problems = []
    if new.hidden_size != old.hidden_size:
        problems.append(
            f"hidden size {new.hidden_size} != {old.hidden_size}: the projector's first layer takes {old.hidden_size}-dim "
            f"features; a {new.hidden_size}-dim tower needs a new projector (run the LLaVA pretraining phase)"
        )
    if new.tokens != old.tokens:
        problems.append(
            f"{new.tokens} image tokens ({new.image_size} px / patch {new.patch_size}) != {old.tokens} "
            f"({old.image_size} px / patch {old.patch_size}): the processor and the trained model expect {old.tokens} "
            "tokens per image; use a tower at the same resolution and patch size, or retrain the projector and LLM"
        )
    if problems:
        raise TowerMismatch("incompatible vision tower: " + "; ".join(problems))


def swap_vision_tower(model: Any, tower_source: str | Path, plugins: Any, processor: Any = None, strict_shape: bool = True) -> Any:
    """Load ``tower_source`` into ``model`` (a LLaVA-1.5, -NeXT or -OneVision model, :mod:`.families`)
    in place (``plugins``: the loaded plugin manager, whose encoder plugins load the tower).

    Returns the processor, when one was given, made consistent with the tower: LLaVA-1.5's takes
    the tower's image processor (resolution, mean/std); a tiling family keeps its own AnyRes
    processor and takes the tower's mean and std. ``strict_shape=False`` only allows a different
    token count or width for models whose projector and LLM will be (re)trained anyway.
    """
    from .families import family_of

    family = family_of(model.config)
    loaded = load_tower(tower_source, plugins)
    tower, image_processor = loaded.model, loaded.image_processor
    new = tower_shape(tower.config)
    target = model.model.vision_tower
    if type(target).__name__ != type(tower).__name__:
        raise TowerMismatch(f"the {family.name} model holds a {type(target).__name__}; {tower_source} is a {type(tower).__name__} "
                            f"(its projector was trained on {family.published_tower} features; another tower class needs "
                            "a new projector and LLM training)")
    if strict_shape:
        check_compatible(model.config, new)
    target.load_state_dict(tower.state_dict(), strict=True)
    model.config.vision_config = tower.config
    if processor is not None:
        if family.tiles_images:
            for field in ("image_mean", "image_std"):
                setattr(processor.image_processor, field, list(getattr(image_processor, field)))
        else:
            processor.image_processor = image_processor
            processor.patch_size = new.patch_size
    return processor


def llava_repo_features(tower_dir: str | Path, images: list[Any]) -> Any:
    """Features exactly as the original LLaVA-1.5 repository computes them:
    ``CLIPVisionModel`` + ``CLIPImageProcessor`` from the path, hidden states of
    layer -2, CLS token dropped."""
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionModel

    tower = CLIPVisionModel.from_pretrained(tower_dir).eval()
    processor = CLIPImageProcessor.from_pretrained(tower_dir)
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        out = tower(pixel_values=pixels, output_hidden_states=True)
    return out.hidden_states[-2][:, 1:]
