"""Recipe parameters of the FLUX-family components (light: no torch import)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from genhancer_plugins import Params


class VAEParams(Params):
    source: str | None = Field(
        None,
        description=(
            "hub id or local diffusers directory (with `subfolder`), or a raw BFL `ae.safetensors` file; "
            "empty: random weights from `config` (tests, demo)"
        ),
    )
    subfolder: str | None = "vae"
    revision: str | None = None
    config: dict[str, Any] | None = Field(None, description="diffusers AutoencoderKL config")
    latent: Literal["sample", "mean"] = Field("sample", description="draw from the latent distribution or take its mean")
    image_size: PositiveInt | None = Field(
        None, description="side in pixels of the images it encodes (DIVA: 512, with CLIP at 224 from the same crop); default: the encoder's"
    )

    @model_validator(mode="after")
    def _needs_weights_or_config(self) -> "VAEParams":
        if self.source is None and self.config is None:
            raise ValueError("set `source` (hub id, directory or ae.safetensors) or `config` (random initialisation)")
        return self


class TimestepSampling(Params):
    kind: Literal["logit_normal", "uniform"] = "logit_normal"
    scale: PositiveFloat = Field(1.0, description="s in t = sigmoid(s * eps), eps ~ N(0, 1)")


class RectifiedFlowParams(Params):
    source: str | None = Field(
        None,
        description=(
            "pretrained weights: hub id or local diffusers directory (with `subfolder`), or a raw BFL "
            "flux1-dev/flux1-schnell .safetensors file; the fields below must describe it (preset flux-dev-depth); "
            "empty: random initialisation (the paper's lightweight denoiser)"
        ),
    )
    subfolder: str | None = "transformer"
    revision: str | None = None
    train_network: bool = Field(
        True, description="false: the transformer stays frozen in every stage and only the projector learns to condition it"
    )
    num_layers: PositiveInt = Field(2, description="MM-DiT (double-stream) blocks, n")
    num_single_layers: PositiveInt = Field(4, description="single-stream blocks, 2n in the paper")
    attention_head_dim: PositiveInt = 128
    num_attention_heads: PositiveInt = 24
    joint_attention_dim: PositiveInt = Field(4096, description="width of the condition tokens")
    pooled_projection_dim: PositiveInt = Field(768, description="width of the pooled modulation vector")
    axes_dims_rope: tuple[int, int, int] = (16, 56, 56)
    guidance_embeds: bool = True
    guidance: float = Field(4.0, description="value fed to the guidance embedding")
    timesteps: TimestepSampling = Field(default_factory=TimestepSampling)

    @model_validator(mode="after")
    def _rope_matches_heads(self) -> "RectifiedFlowParams":
        if sum(self.axes_dims_rope) != self.attention_head_dim:
            raise ValueError(
                f"sum(axes_dims_rope) = {sum(self.axes_dims_rope)} must equal attention_head_dim = {self.attention_head_dim}"
            )
        return self
