"""Denoiser ``ddpm_unet``: a Stable Diffusion UNet with its DDPM noise schedule (DIVA's generator).

Training draws an integer timestep t uniformly from [0, T) and Gaussian noise per image, noises
the latent with the schedule (``x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps``) and regresses what the
checkpoint's scheduler says the UNet predicts: the noise (epsilon, SD 2.1 base) or the velocity
(v_prediction, SD 2.1 at 768). The condition tokens, the encoder's class token and local tokens
projected to the UNet's cross-attention width, are added to the embedding of a fixed prompt,
as DIVA does with its empty-class prompt. Sampling (previews, reconstructions) runs DDIM on the
same schedule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genhancer_plugins import Condition, ConditionSpec, Denoiser, OfflineUnknown, TargetSpec, construction_device, loading_from

from .params import DDPMUNetParams

#: what a checkpoint's config must share with the recipe's `config` (when both are given)
ARCHITECTURE = ("in_channels", "out_channels", "block_out_channels", "cross_attention_dim", "layers_per_block")


def _subfolder(source: str, name: str | None) -> str | None:
    """``name`` inside a local directory that has it, or a hub id; None for a directory that is the part itself."""
    path = Path(source).expanduser()
    return name if not path.is_dir() or (name and (path / name).is_dir()) else None


def load_unet(params: DDPMUNetParams) -> Any:
    from diffusers import UNet2DConditionModel

    source = str(params.source)
    with loading_from(source):
        unet = UNet2DConditionModel.from_pretrained(source, subfolder=_subfolder(source, params.subfolder), revision=params.revision)
    if params.config is not None:
        differing = [f"{name} {_plain(unet.config.get(name))} (params: {_plain(params.config[name])})"
                     for name in ARCHITECTURE if name in params.config and _plain(unet.config.get(name)) != _plain(params.config[name])]
        if differing:
            raise ValueError(f"ddpm_unet: {source} is not the architecture `config` describes: {'; '.join(differing)}")
    return unet


def load_schedule(params: DDPMUNetParams, meta: bool = False) -> Any:
    """A diffusers DDPMScheduler. With a source, the source's ``scheduler/`` folder decides (its prediction
    type with it; SD's own scheduler class, PNDM or Euler, shares the schedule's fields); ``scheduler``
    serves where there is none (no source, a planned build, a local UNet folder without one)."""
    from diffusers import DDPMScheduler

    if params.source and not meta:
        source = str(params.source)
        path = Path(source).expanduser()
        if params.scheduler is None or not path.is_dir() or (path / "scheduler").is_dir():
            with loading_from(source):
                config = DDPMScheduler.load_config(source, subfolder="scheduler", revision=params.revision)
            return DDPMScheduler.from_config(config)
    return DDPMScheduler.from_config(params.scheduler or {})


@torch.no_grad()
def prompt_embedding(params: DDPMUNetParams) -> Tensor:
    """[P, D]: the source's text encoder on ``prompt`` padded to the tokenizer's length (DIVA's context base)."""
    from transformers import AutoTokenizer, CLIPTextModel

    source = str(params.source)
    with loading_from(source):
        tokenizer = AutoTokenizer.from_pretrained(source, subfolder="tokenizer", revision=params.revision)
        text_encoder = CLIPTextModel.from_pretrained(source, subfolder="text_encoder", revision=params.revision)
    ids = tokenizer([params.prompt], padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    return text_encoder.eval()(ids).last_hidden_state[0].float()


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


class DDPMUNetDenoiser(Denoiser):
    def __init__(self, params: DDPMUNetParams, target: TargetSpec, meta: bool = False):
        super().__init__()
        from diffusers import UNet2DConditionModel

        if target.kind != "continuous" or len(target.shape) != 3:
            raise ValueError(f"ddpm_unet needs continuous [C, H, W] targets (a `vae` tokenizer), got {target}")
        self.params = params
        self.target = target
        if params.source and not meta:
            self.unet = load_unet(params)
        else:  # random weights, or the planned architecture of a checkpoint (validate, bench --dry)
            if params.config is None:
                raise OfflineUnknown(f"architecture of {params.source!r} needs a download; give `config` to plan offline")
            with construction_device(meta):
                self.unet = UNet2DConditionModel.from_config(params.config)
        channels = int(self.unet.config.in_channels)
        if channels != target.shape[0]:
            raise ValueError(f"the UNet reads {channels}-channel latents, the tokenizer makes {target.shape[0]} "
                             "(Stable Diffusion's VAE: 4 channels, vae preset sd2-1-base)")
        self.schedule = load_schedule(params, meta)
        self.prediction_type = str(self.schedule.config.prediction_type)
        if self.prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise ValueError(f"ddpm_unet: scheduler prediction_type {self.prediction_type!r} is not epsilon, v_prediction or sample")
        width = int(self.unet.config.cross_attention_dim)
        self.condition_spec = ConditionSpec(pooled_dim=None, token_dim=width)
        if params.prompt is None:
            prompt = None
        elif params.source and not meta:
            prompt = prompt_embedding(params)
            if prompt.shape[-1] != width:
                raise ValueError(f"ddpm_unet: the text encoder's width {prompt.shape[-1]} is not the UNet's cross-attention width {width}")
        else:  # random weights: no text encoder to run
            prompt = torch.zeros(77, width, device="meta" if meta else "cpu")
        # Derived from the source on every build (never trained), so checkpoints need not carry it.
        self.register_buffer("prompt", prompt, persistent=False)

    def pretrained_source(self) -> str | None:
        return self.params.source

    def frozen_parameters(self) -> list[nn.Parameter]:
        return [] if self.params.train_network else list(self.unet.parameters())

    def context(self, condition: Condition) -> Tensor:
        """[B, L, D] cross-attention input: the condition tokens plus the prompt's embedding, token by token."""
        if condition.tokens is None:
            raise ValueError("ddpm_unet needs condition tokens from the conditioner (e.g. conditioner diva)")
        tokens = condition.tokens
        if self.prompt is None:
            return tokens
        if tokens.shape[1] != self.prompt.shape[0]:
            raise ValueError(f"ddpm_unet: {tokens.shape[1]} condition tokens cannot be added to the prompt's {self.prompt.shape[0]} "
                             f"(conditioner diva: local_tokens {self.prompt.shape[0] - 1}; or denoiser prompt: null)")
        return tokens + self.prompt.to(tokens.dtype)

    def loss(self, targets: Tensor, condition: Condition) -> Tensor:
        context = self.context(condition)
        steps = int(self.schedule.config.num_train_timesteps)
        total = targets.new_zeros(())
        for _ in range(self.params.noise_draws):
            t = torch.randint(0, steps, (targets.shape[0],), device=targets.device)
            noise = torch.randn_like(targets)
            noisy = self.schedule.add_noise(targets, noise, t)
            prediction = self.unet(noisy.to(context.dtype), t, encoder_hidden_states=context, return_dict=False)[0].float()
            if self.prediction_type == "epsilon":
                goal = noise
            elif self.prediction_type == "v_prediction":
                goal = self.schedule.get_velocity(targets, noise, t)
            else:
                goal = targets
            total = total + (F.mse_loss(prediction, goal) if self.params.loss == "mse" else F.l1_loss(prediction, goal))
        return total

    @torch.no_grad()
    def sample(self, condition: Condition, steps: int = 20) -> Tensor:
        """DDIM from pure noise on the training schedule, ``steps`` steps."""
        from diffusers import DDIMScheduler

        context = self.context(condition)
        sampler = DDIMScheduler.from_config(self.schedule.config)
        sampler.set_timesteps(steps, device=context.device)
        x = torch.randn(context.shape[0], *self.target.shape, device=context.device)
        for t in sampler.timesteps:
            output = self.unet(x.to(context.dtype), t, encoder_hidden_states=context, return_dict=False)[0].float()
            x = sampler.step(output, t, x).prev_sample
        return x

    def enable_gradient_checkpointing(self) -> bool:
        self.unet.enable_gradient_checkpointing()
        return True

    def compile_network(self) -> bool:
        self.unet.compile()
        return True

    def save_pretrained(self, directory: Path) -> None:
        """The UNet in diffusers' layout (``UNet2DConditionModel.from_pretrained(directory)``) and its schedule."""
        directory = Path(directory)
        self.unet.save_pretrained(directory, safe_serialization=True)
        self.schedule.save_config(directory / "scheduler")
