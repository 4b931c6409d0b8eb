"""LoRA on the encoder through peft: inject in place, merge for export."""

from __future__ import annotations

from torch import nn

from .interfaces import Encoder
from .recipe import LoraSettings


def apply_lora(encoder: Encoder, settings: LoraSettings) -> None:
    """Adapt every linear layer the encoder names; only adapter weights train."""
    from peft import LoraConfig, inject_adapter_in_model

    targets = encoder.lora_target_modules()
    if not targets:
        raise ValueError(f"{type(encoder).__name__} names no linear layers for LoRA")
    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout, target_modules=targets)
    inject_adapter_in_model(config, encoder)
    for name, param in encoder.named_parameters():
        param.requires_grad_("lora_" in name)


def has_lora(module: nn.Module) -> bool:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return any(isinstance(m, BaseTunerLayer) for m in module.modules())


def merge_lora(module: nn.Module) -> None:
    """Fold every adapter into its base layer and put the plain layer back."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, layer in list(module.named_modules()):
        if isinstance(layer, BaseTunerLayer):
            layer.merge()
            parent_name, _, child = name.rpartition(".")
            parent = module.get_submodule(parent_name) if parent_name else module
            setattr(parent, child, layer.get_base_layer())
