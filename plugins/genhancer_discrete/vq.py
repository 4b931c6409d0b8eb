"""Image tokenizer ``vq``: a frozen diffusers VQModel; images <-> code indices."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from genhancer_plugins import ImageTokenizer, OfflineUnknown, TargetSpec, construction_device, loading_from

from .params import VQParams


class VQTokenizer(ImageTokenizer):
    """Images in [0, 1] -> flat code indices [B, h*w] (row-major) and back."""

    def __init__(self, vq: Any):
        super().__init__()
        self.vq = vq.requires_grad_(False).eval()
        config = vq.config
        self.downsample = 2 ** (len(config.block_out_channels) - 1)
        self.codebook_size = int(config.num_vq_embeddings)
        self.embed_dim = int(config.vq_embed_dim or config.latent_channels)

    def train(self, mode: bool = True) -> "VQTokenizer":
        return super().train(False)  # frozen: never in training mode

    def _side(self, image_size: int) -> int:
        if image_size % self.downsample:
            raise ValueError(f"image size {image_size} is not a multiple of the VQ model's downsampling factor {self.downsample}")
        return image_size // self.downsample

    def target_spec(self, image_size: int) -> TargetSpec:
        side = self._side(image_size)
        return TargetSpec(kind="discrete", shape=(side * side,), vocab_size=self.codebook_size)

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        dtype = next(self.vq.parameters()).dtype
        latents = self.vq.encode((images * 2 - 1).to(dtype)).latents
        _, _, (_, _, indices) = self.vq.quantize(latents)
        return indices.view(images.shape[0], -1).long()

    @torch.no_grad()
    def decode(self, targets: Tensor) -> Tensor:
        batch, length = targets.shape
        side = int(round(length**0.5))
        shape = (batch, side, side, self.embed_dim)
        flat = targets.reshape(-1)
        if getattr(self.vq.config, "lookup_from_codebook", False):
            out = self.vq.decode(flat, force_not_quantize=True, shape=shape)
        else:
            out = self.vq.decode(self.vq.quantize.get_codebook_entry(flat, shape), force_not_quantize=True)
        return ((out.sample.float() + 1) / 2).clamp(0, 1)


def build_vq(params: VQParams, meta: bool = False) -> VQTokenizer:
    from diffusers import VQModel

    if meta or params.source is None:
        if params.config is None:
            raise OfflineUnknown(f"architecture of {params.source!r} needs a download; give `config` to plan offline")
        with construction_device(meta):
            return VQTokenizer(VQModel.from_config(params.config))
    with loading_from(params.source):
        return VQTokenizer(VQModel.from_pretrained(params.source, subfolder=params.subfolder, revision=params.revision))
