"""Image tokenizer ``vae``: a frozen diffusers AutoencoderKL (FLUX.1 by default)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from genhancer_plugins import ImageTokenizer, OfflineUnknown, TargetSpec, construction_device, loading_from

from .params import VAEParams


class VAETokenizer(ImageTokenizer):
    """Images in [0, 1] -> ``scaling_factor * (z - shift_factor)`` latents and back."""

    def __init__(self, vae: Any, latent: str = "sample", input_size: int | None = None, source: str | None = None):
        super().__init__()
        self.input_size = input_size
        self.source = source
        self.vae = vae.requires_grad_(False).eval()
        self.latent = latent
        self.scaling_factor = float(vae.config.scaling_factor)
        self.shift_factor = float(getattr(vae.config, "shift_factor", None) or 0.0)
        self.downsample = 2 ** (len(vae.config.block_out_channels) - 1)

    def pretrained_source(self) -> str | None:
        return self.source

    def train(self, mode: bool = True) -> "VAETokenizer":
        return super().train(False)  # frozen: never in training mode

    def target_spec(self, image_size: int) -> TargetSpec:
        if image_size % self.downsample:
            raise ValueError(f"image size {image_size} is not a multiple of the VAE's downsampling factor {self.downsample}")
        side = image_size // self.downsample
        return TargetSpec(kind="continuous", shape=(int(self.vae.config.latent_channels), side, side))

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        return self.targets_from_parameters(self.encode_parameters(images))

    @torch.no_grad()
    def encode_parameters(self, images: Tensor) -> Tensor:
        """The latent distribution's parameters [B, 2C, h, w] (mean, log-variance): the frozen work."""
        dtype = next(self.vae.parameters()).dtype
        return self.vae.encode((images * 2 - 1).to(dtype)).latent_dist.parameters.float()

    @torch.no_grad()
    def targets_from_parameters(self, parameters: Tensor) -> Tensor:
        """A draw (or the mean) of the latent distribution, scaled: fresh noise on every call."""
        from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

        dist = DiagonalGaussianDistribution(parameters)
        z = dist.sample() if self.latent == "sample" else dist.mean
        return ((z - self.shift_factor) * self.scaling_factor).float()

    @torch.no_grad()
    def decode(self, targets: Tensor) -> Tensor:
        dtype = next(self.vae.parameters()).dtype
        z = targets / self.scaling_factor + self.shift_factor
        return ((self.vae.decode(z.to(dtype)).sample.float() + 1) / 2).clamp(0, 1)


def build_vae(params: VAEParams, meta: bool = False) -> VAETokenizer:
    from diffusers import AutoencoderKL

    source = params.source
    if meta or source is None:
        if params.config is None:
            raise OfflineUnknown(f"architecture of {source!r} needs a download; give `config` to plan offline")
        with construction_device(meta):
            vae = AutoencoderKL.from_config(params.config)
        return VAETokenizer(vae, params.latent, params.image_size, source)
    path = Path(source).expanduser()
    if path.is_file():
        vae = _from_bfl_file(path, params.config)
    else:
        with loading_from(source):
            vae = AutoencoderKL.from_pretrained(source, subfolder=params.subfolder, revision=params.revision)
    return VAETokenizer(vae, params.latent, params.image_size, source)


def _from_bfl_file(path: Path, config: dict[str, Any] | None) -> Any:
    """A raw autoencoder file with the original (BFL/LDM) key names."""
    from diffusers import AutoencoderKL

    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: only .safetensors autoencoder files are read (no pickles)")
    if config is None:
        raise ValueError(f"{path}: a raw autoencoder file needs `config` (the flux1-dev preset has it)")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vae").mkdir()
        (Path(tmp) / "vae" / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL", **config}))
        return AutoencoderKL.from_single_file(str(path), config=tmp, subfolder="vae", local_files_only=True)
