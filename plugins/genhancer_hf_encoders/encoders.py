"""CLIP, MetaCLIP and SigLIP vision encoders through transformers.

One implementation serves every family; what differs (model classes, where
the global token comes from, whether a class token leads the patch tokens)
is a :class:`Family` record, not a copy of the code.
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genhancer_plugins import Encoder, EncoderOutput, EncoderSpec, OfflineUnknown, construction_device, loading_from, save_tensors

from .families import FAMILIES, Family, global_features, model_class_for, transformers_class
from .params import HFEncoderParams
from .processors import load_image_processor, load_tokenizer, new_image_processor, quiet_loading


class HFVisionEncoder(Encoder):
    """Wraps a transformers CLIP/SigLIP model; parameter names stay the hub's."""

    def __init__(self, family: Family, model: nn.Module, processor: Any, tokenizer: Any = None, source: str | None = None):
        super().__init__()
        self.family = family
        self.model = model
        self.processor = processor
        self.tokenizer = tokenizer
        self.source = source
        vision_config = getattr(model.config, "vision_config", model.config)
        image_size = int(processor.crop_size["height"]) if family.image_size_from == "processor" else int(vision_config.image_size)
        num_patches = (image_size // int(vision_config.patch_size)) ** 2
        projection = getattr(model, "visual_projection", None)
        self.spec = EncoderSpec(
            global_dim=projection.out_features if projection is not None else int(vision_config.hidden_size),
            local_dim=int(vision_config.hidden_size),
            num_local_tokens=num_patches,
            image_size=image_size,
        )
        mean = torch.tensor(processor.image_mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(processor.image_std, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("pixel_mean", mean, persistent=False)
        self.register_buffer("pixel_std", std, persistent=False)

    @property
    def vision_trunk(self) -> nn.Module:
        """The vision transformer. Full models hold it as ``vision_model``;
        transformers 5 vision-only models are the trunk themselves."""
        return getattr(self.model, "vision_model", self.model)

    @property
    def _trunk_prefix(self) -> str:
        return "model.vision_model." if hasattr(self.model, "vision_model") else "model."

    def hub_state_dict(self, dtype: torch.dtype | None = None) -> dict[str, Tensor]:
        """Weights under the hub's key names (``vision_model.*``, ``text_model.*``, ...),
        floating-point tensors cast to ``dtype`` when given."""
        state = {}
        for key, value in self.model.state_dict().items():
            if not hasattr(self.model, "vision_model") and not key.startswith(("vision_model.", "visual_projection.")):
                key = self.family.hub_prefix + key
            value = value.detach().to("cpu")
            if dtype is not None and value.is_floating_point():
                value = value.to(dtype)
            state[key] = value.contiguous()
        return state

    def forward(self, images: Tensor) -> EncoderOutput:
        size = self.spec.image_size
        if images.shape[-2:] != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
        pixel_values = (images - self.pixel_mean.to(images.device)) / self.pixel_std.to(images.device)
        out = self.vision_trunk(pixel_values=pixel_values)
        pooled = global_features(out)
        projection = getattr(self.model, "visual_projection", None)
        global_token = projection(pooled) if projection is not None else pooled
        return EncoderOutput(global_token=global_token, local_tokens=out.last_hidden_state[:, self.prefix_tokens:])

    @property
    def prefix_tokens(self) -> int:
        """Tokens before the patches: the class token (CLIP, DINO) and register tokens (DINOv3)."""
        return int(self.family.has_class_token) + self.family.register_tokens(self.model.config)

    def vision_parameters(self) -> list[nn.Parameter]:
        params = list(self.vision_trunk.parameters())
        projection = getattr(self.model, "visual_projection", None)
        if projection is not None:
            params += list(projection.parameters())
        return params

    def lora_target_modules(self) -> list[str]:
        # Every linear layer of the vision side; nn.MultiheadAttention (SigLIP's
        # pooling head) uses its out_proj weight directly, so it is left alone.
        names = []
        skip: set[str] = set()
        for name, module in self.named_modules():
            if isinstance(module, nn.MultiheadAttention):
                skip.add(name + ".")
        trunk = self._trunk_prefix
        for name, module in self.named_modules():
            in_vision = (name.startswith(trunk) and not name.startswith("model.text_model.")) or name == "model.visual_projection"
            if in_vision and isinstance(module, nn.Linear) and not any(name.startswith(s) for s in skip):
                names.append(name)
        return names

    def save_pretrained(self, directory: Path, dtype: torch.dtype | None = None) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        # The hub layout (vision_model.*) is what older transformers (LLaVA-1.5
        # pins 4.37) expect; transformers 5 reads it too.
        save_tensors(self.hub_state_dict(dtype), directory / "model.safetensors")
        config = copy.deepcopy(self.model.config)
        config.architectures = [type(self.model).__name__]  # the reload builds the same class (a projection head included)
        if dtype is not None:
            config.dtype = dtype
        config.save_pretrained(directory)
        self.processor.save_pretrained(directory)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(directory)

    def enable_gradient_checkpointing(self) -> bool:
        self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return True

    def reload(self, directory: Path) -> "HFVisionEncoder":
        return build_encoder(self.family.name, HFEncoderParams(source=str(directory)))

    def pretrained_source(self) -> str | None:
        return self.source

    def text_tower_source(self) -> str | None:
        return None if hasattr(self.model, "text_model") else self.source

    def describe(self) -> dict[str, Any]:
        return {
            "family": self.family.name,
            "source": self.source,
            "architecture": type(self.model).__name__,
            "has_text_tower": hasattr(self.model, "text_model"),
            "image_size": self.spec.image_size,
            "global_dim": self.spec.global_dim,
        }


def _build_from_config(family: Family, config: dict[str, Any]) -> nn.Module:
    vision = dict(config["vision"])
    text = config.get("text")
    projection_dim = config.get("projection_dim")
    if text is not None and family.full_model is None:
        raise ValueError(f"{family.name} is vision only: its `config` takes no `text`")
    if text is not None:
        cfg_kwargs: dict[str, Any] = {"vision_config": vision, "text_config": dict(text)}
        if projection_dim is not None:
            cfg_kwargs["projection_dim"] = projection_dim
        cfg = transformers_class(family.full_config)(**cfg_kwargs)
        return transformers_class(family.full_model)(cfg)
    if family.projected_vision_model and projection_dim is not None:
        cfg = transformers_class(family.vision_config)(projection_dim=projection_dim, **vision)
        return transformers_class(family.projected_vision_model)(cfg)
    cfg = transformers_class(family.vision_config)(**vision)
    return transformers_class(family.vision_models[-1])(cfg)


def _is_local(source: str) -> bool:
    return Path(source).expanduser().exists()


def build_encoder(family_name: str, params: HFEncoderParams, meta: bool = False) -> HFVisionEncoder:
    from transformers import AutoConfig

    family = FAMILIES[family_name]
    source = params.source
    remote = params.trust_remote_code
    if meta:
        if source is not None and _is_local(source):
            hf_config = AutoConfig.from_pretrained(source, trust_remote_code=remote)
            with construction_device(True):
                model = model_class_for(family, hf_config, source)(hf_config)
        elif params.config is not None:
            with construction_device(True):
                model = _build_from_config(family, params.config)
        else:
            raise OfflineUnknown(f"architecture of {source!r} needs a download; give `config` to plan offline")
        return HFVisionEncoder(family, model, _family_processor(family, model.config), source=source)
    if source is None:
        model = _build_from_config(family, params.config or {})
        tokenizer = None
        if hasattr(model, "text_model"):  # random towers get an offline tokenizer, so text evaluators run
            from .processors import character_tokenizer

            tokenizer = character_tokenizer(int(model.config.text_config.max_position_embeddings))
        return HFVisionEncoder(family, model, _family_processor(family, model.config), tokenizer=tokenizer, source=None)
    quiet_loading()
    with loading_from(source):
        hf_config = AutoConfig.from_pretrained(source, revision=params.revision, trust_remote_code=remote)
        model_class = model_class_for(family, hf_config, source)
        model = model_class.from_pretrained(source, revision=params.revision, trust_remote_code=remote)
        processor = image_processor_for(family, hf_config, source, revision=params.revision, trust_remote_code=remote)
    tokenizer = None
    if hasattr(model, "text_model"):
        with contextlib.suppress(OSError, ValueError, TypeError):  # a checkpoint without tokenizer files
            tokenizer = load_tokenizer(source, revision=params.revision, trust_remote_code=remote)
    return HFVisionEncoder(family, model, processor, tokenizer=tokenizer, source=source)


def _family_processor(family: Family, config: Any) -> Any:
    vision_config = getattr(config, "vision_config", config)
    return new_image_processor(family.image_processor, **family.size_dict(int(vision_config.image_size)),
                               **dict(family.processor_settings or ()))


def image_processor_for(family: Family, config: Any, source: str, **kwargs: Any) -> Any:
    """The checkpoint's own image processor (PIL), or the family's where transformers implements the
    checkpoint's for torchvision only (DINOv3: ``Family.processor_settings``)."""
    if family.processor_settings is not None:
        return _family_processor(family, config)
    return load_image_processor(source, **kwargs)
