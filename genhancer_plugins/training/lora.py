"""LoRA on the encoder through peft: inject in place, merge for export."""

from __future__ import annotations

from torch import nn

from genhancer_plugins.interfaces import Encoder
from genhancer_plugins.recipe.schema import LoraSettings


def apply_lora(encoder: Encoder, settings: LoraSettings) -> None:
    """Adapt every linear layer the encoder names; then :func:`mark_lora_trainable`."""
    from peft import LoraConfig, inject_adapter_in_model

    targets = encoder.lora_target_modules()
    if not targets:
        raise ValueError(f"{type(encoder).__name__} names no linear layers for LoRA")
    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout, target_modules=targets)
    inject_adapter_in_model(config, encoder)
    mark_lora_trainable(encoder, settings.bias)


def lora_bias_count(encoder: Encoder, bias: str) -> int:
    """Bias parameters that train beside the adapters (counted before LoRA is injected)."""
    if bias == "lora_only":
        layers = [encoder.get_submodule(name) for name in encoder.lora_target_modules()]
        return sum(layer.bias.numel() for layer in layers if getattr(layer, "bias", None) is not None)
    if bias == "all":
        return sum(p.numel() for p in _vision_biases(encoder))
    return 0


def _vision_biases(encoder: Encoder) -> list[nn.Parameter]:
    vision = {id(p) for p in encoder.vision_parameters()}
    return [p for name, p in encoder.named_parameters() if id(p) in vision and name.endswith("bias") and "lora_" not in name]


def mark_lora_trainable(encoder: Encoder, bias: str) -> None:
    """Adapter weights train, plus the biases ``bias`` selects (none; lora_only: the
    base bias of every adapted layer, as peft's ``bias="lora_only"``; all: every
    bias of the vision side); nothing else."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, param in encoder.named_parameters():
        param.requires_grad_("lora_" in name)
    if bias == "lora_only":
        for module in encoder.modules():
            if isinstance(module, BaseTunerLayer):
                base_bias = getattr(module.get_base_layer(), "bias", None)
                if base_bias is not None:
                    base_bias.requires_grad_(True)
    elif bias == "all":
        for param in _vision_biases(encoder):
            param.requires_grad_(True)


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
