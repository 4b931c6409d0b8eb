"""Recipe parameters of the DIVA-style components (light: no torch import)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from genhancer_plugins import Params


class DDPMUNetParams(Params):
    source: str | None = Field(
        None,
        description=(
            "a Stable Diffusion checkpoint: hub id or local diffusers directory with `unet/`, `scheduler/` and, for "
            "`prompt`, `text_encoder/` and `tokenizer/` (DIVA: stabilityai/stable-diffusion-2-1-base); "
            "empty: random weights from `config` and the noise schedule from `scheduler` (rehearsals, tests)"
        ),
    )
    subfolder: str | None = Field("unet", description="the UNet's folder inside `source`")
    revision: str | None = None
    config: dict[str, Any] | None = Field(None, description="diffusers UNet2DConditionModel config (random initialisation, plans)")
    scheduler: dict[str, Any] | None = Field(
        None,
        description=(
            "the DDPM noise schedule (num_train_timesteps, beta_start, beta_end, beta_schedule, prediction_type) where "
            "there is no source; with one, its scheduler/ folder decides (epsilon or v prediction)"
        ),
    )
    train_network: bool = Field(
        False, description="false (DIVA): the pretrained UNet stays frozen and only the encoder and its projection learn"
    )
    prompt: str | None = Field(
        "a photo of a .",
        description=(
            "text whose embedding (the source's text encoder, padded to its length) is added to the condition tokens, "
            "DIVA's empty-class prompt; null: the condition tokens alone. Random weights (no source): zeros"
        ),
    )
    noise_draws: PositiveInt = Field(
        2, description="(timestep, noise) draws per image per step, their losses summed (DIVA's train_steps 2 back-propagates each)"
    )
    loss: Literal["mse", "l1"] = "mse"

    @model_validator(mode="after")
    def _needs_weights_or_config(self) -> "DDPMUNetParams":
        if self.source is None and (self.config is None or self.scheduler is None):
            raise ValueError("set `source` (a Stable Diffusion checkpoint) or both `config` and `scheduler` (random initialisation)")
        return self


class DivaConditionParams(Params):
    local_tokens: NonNegativeInt = Field(
        76, description="local patch tokens added after the class token (DIVA, OpenAI CLIP: 76, so 77 tokens fill the prompt's slots)"
    )
    with_replacement: bool = Field(True, description="draw the local tokens independently per sample with replacement (DIVA's randint)")
