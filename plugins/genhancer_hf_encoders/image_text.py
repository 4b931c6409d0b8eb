"""Image-text models for evaluation: CLIP/MetaCLIP/SigLIP, from a directory or hub id.

An export that holds only a vision tower is paired with the text tower of the
model it came from (``text_tower_from`` in its ``genhancer.json``) or of the
``text_from`` the caller names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image
from torch import Tensor

from genhancer_plugins import RunError

from .encoders import image_processor_for
from .families import family_for, global_features, model_class_for, transformers_class
from .processors import load_tokenizer, quiet_loading


class HFImageTextModel:
    """The :class:`~genhancer_plugins.evaluation.runner.ImageTextModel` of a transformers CLIP/SigLIP."""

    def __init__(self, model: Any, processor: Any, tokenizer: Any, name: str, device: str | torch.device = "cpu"):
        self.model = model.eval().to(device)
        self.processor = processor
        self.tokenizer = tokenizer
        self.name = name
        self.device = torch.device(device)
        self.family = family_for(model.config)
        self.has_text = tokenizer is not None and hasattr(model, "text_model")

    @torch.no_grad()
    def image_embeddings(self, images: Sequence[Image.Image], normalize: bool = True) -> Tensor:
        pixels = self.processor(images=list(images), return_tensors="pt")["pixel_values"].to(self.device)
        trunk = getattr(self.model, "vision_model", self.model)  # vision-only models are the trunk
        pooled = global_features(trunk(pixel_values=pixels))
        projection = getattr(self.model, "visual_projection", None)
        features = (projection(pooled) if projection is not None else pooled).float()
        return torch.nn.functional.normalize(features, dim=-1) if normalize else features

    @torch.no_grad()
    def text_embeddings(self, texts: Sequence[str]) -> Tensor:
        if self.tokenizer is None or not hasattr(self.model, "text_model"):
            raise ValueError(f"{self.name} has no text tower: pass --text-from (or use an image-only evaluator)")
        limit = int(self.model.config.text_config.max_position_embeddings)
        if self.family.text_padding == "max_length":  # SigLIP was trained on max-length padded text, unmasked
            tokens = self.tokenizer(list(texts), padding="max_length", max_length=min(64, limit), truncation=True, return_tensors="pt")
            tokens.pop("attention_mask", None)
        else:
            tokens = self.tokenizer(list(texts), padding=True, max_length=limit, truncation=True, return_tensors="pt")
        tokens = {k: v.to(self.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
        pooled = self.model.text_model(**tokens).pooler_output
        projection = getattr(self.model, "text_projection", None)
        features = projection(pooled) if projection is not None else pooled
        return torch.nn.functional.normalize(features.float(), dim=-1)

    @torch.no_grad()
    def logits(self, image_embeddings: Tensor, text_embeddings: Tensor) -> Tensor:
        """[texts, images] similarity logits, with the model's own scale (and SigLIP's bias)."""
        scale = self.model.logit_scale.exp().float()
        logits = scale * text_embeddings @ image_embeddings.T
        if self.family.logit_bias:
            logits = logits + self.model.logit_bias.float()
        return logits


def load_image_text_model(source: str, text_from: str | None = None, device: str | torch.device = "cpu") -> HFImageTextModel | None:
    """A CLIP/SigLIP image-text model; None if ``source`` is not one of those."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(source)
    try:
        family = family_for(config)
    except ValueError:
        return None  # another plugin may load it
    quiet_loading()
    processor = image_processor_for(family, config, str(source))
    if hasattr(config, "text_config"):
        model = transformers_class(family.full_model).from_pretrained(source)
        return HFImageTextModel(model, processor, load_tokenizer(source), str(source), device)
    # a vision-only export: borrow the text tower it came from
    meta_path = Path(source) / "genhancer.json"
    recorded = json.loads(meta_path.read_text()).get("text_tower_from") if meta_path.is_file() else None
    text_source = text_from or recorded
    if family.full_model is None:  # a vision-only family (DINOv2): no text tower it could be paired with
        if text_from is not None:
            raise RunError(f"{source} is a {family.name} model, vision only: --text-from cannot give it a text tower")
        text_source = None
    if text_source is not None and text_from is None and not hasattr(AutoConfig.from_pretrained(text_source), "text_config"):
        text_source = None  # the model it came from was vision-only too
    if text_source is None:  # image-only evaluators (probes) still work; text ones say what is missing
        vision = model_class_for(family, config, str(source)).from_pretrained(source)
        return HFImageTextModel(vision, processor, None, str(source), device)
    model = transformers_class(family.full_model).from_pretrained(text_source)
    vision = model_class_for(family, config, str(source)).from_pretrained(source)
    model.vision_model.load_state_dict(getattr(vision, "vision_model", vision).state_dict())
    if hasattr(vision, "visual_projection") and hasattr(model, "visual_projection"):
        model.visual_projection.load_state_dict(vision.visual_projection.state_dict())
    return HFImageTextModel(model, processor, load_tokenizer(text_source), str(source), device)


def load_vision_tower(source: str) -> Any:
    """A CLIP/SigLIP export (or checkpoint) as a downstream model's vision tower: the plain vision
    model LLaVA holds (``CLIPVisionModel`` / ``SiglipVisionModel``) and its PIL image processor;
    None if ``source`` is neither family."""
    from transformers import AutoConfig

    from genhancer_plugins import VisionTower

    config = AutoConfig.from_pretrained(source)
    try:
        family = family_for(config)
    except ValueError:
        return None  # another plugin may load it
    quiet_loading()
    model = transformers_class(family.vision_models[-1]).from_pretrained(source)
    return VisionTower(model, image_processor_for(family, config, str(source)), has_class_token=family.has_class_token,
                       family=family.name, register_tokens=family.register_tokens(config))
