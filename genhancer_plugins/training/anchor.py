"""What stage 2 and stage 1 do to the encoder beside training it: the optional
global-semantics anchor (stage 2), and the frozen encoder held in the compute dtype
(stage 1)."""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import nn

from genhancer_plugins.recipe.schema import STAGE2
from genhancer_plugins.util.dtypes import compute_dtype


def anchor_distance(g: torch.Tensor, g0: torch.Tensor, distance: str) -> torch.Tensor:
    """d(g, g0) of the global-semantics anchor, averaged over the batch."""
    g, g0 = g.float(), g0.float()
    if distance == "cosine":
        return (1 - torch.nn.functional.cosine_similarity(g, g0, dim=-1)).mean()
    return (g - g0).pow(2).mean()


def anchor_reference(encoder: nn.Module, recipe: Any, stage: str) -> Any:
    """For the anchor: a frozen copy of the original encoder, taken before stage 2 changes it,
    unless LoRA alone changes it (then its adapters are switched off to see the original:
    no second copy). None when the anchor is off."""
    s2 = recipe.stage2
    if stage != STAGE2 or not s2.anchor.weight:
        return None
    if s2.encoder_tuning == "lora" and s2.lora.bias == "none":
        return "adapters"
    return copy.deepcopy(encoder).requires_grad_(False).eval()


@dataclass(frozen=True)
class Anchor:
    """Stage 2's global-semantics hold: ``weight * d(g, g0)`` added to the loss, with g0 the
    original encoder's global token of the same images."""

    weight: float
    distance: str  #: "mse" or "cosine"
    original: Callable[[torch.Tensor], torch.Tensor]  #: images -> the original encoder's global token

    def term(self, global_token: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        return self.weight * anchor_distance(global_token, self.original(images), self.distance)


def make_anchor(encoder: nn.Module, settings: Any, original: Any) -> Anchor | None:
    """The anchor of ``settings`` (``stage2.anchor``) around ``original`` (from
    :func:`anchor_reference`), or None when it is off."""
    if original is None:
        return None

    @torch.no_grad()
    def global_token(images: torch.Tensor) -> torch.Tensor:
        if original != "adapters":
            return original(images).global_token
        from peft.tuners.tuners_utils import BaseTunerLayer

        layers = [m for m in encoder.modules() if isinstance(m, BaseTunerLayer)]
        training = encoder.training
        encoder.eval()  # the original is a frozen encoder: no dropout
        for layer in layers:
            layer.enable_adapters(False)
        try:
            return encoder(images).global_token
        finally:
            for layer in layers:
                layer.enable_adapters(True)
            encoder.train(training)

    return Anchor(settings.weight, settings.distance, global_token)


@contextlib.contextmanager
def frozen_in_compute_dtype(encoder: nn.Module, mixed_precision: str) -> Iterator[None]:
    """Stage 1 under bf16/fp16: the frozen encoder's linear and convolution weights (what
    autocast casts again every step) cast once to the compute dtype, so the numbers are
    the same; its fp32 weights come back afterwards, bit for bit, for stage 2 and the
    export. Norms, embeddings and buffers, which autocast keeps in fp32, stay fp32."""
    dtype = compute_dtype(mixed_precision)
    if dtype is None:
        yield
        return
    cast = [p for m in encoder.modules() if isinstance(m, (nn.Linear, nn.Conv2d)) for p in m.parameters(recurse=False)]
    kept = {name: p.detach().to("cpu", copy=True) for name, p in encoder.named_parameters()}
    with torch.no_grad():
        for p in cast:
            p.data = p.data.to(dtype)
    try:
        yield
    finally:
        with torch.no_grad():
            for name, p in encoder.named_parameters():
                p.data = kept[name].to(p.device)
