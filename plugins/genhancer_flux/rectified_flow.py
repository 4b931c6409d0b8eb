"""Denoiser ``rectified_flow``: a FLUX-style MM-DiT trained with rectified flow.

Conventions (the paper's): x1 is the clean latent, x0 ~ N(0, I) the noise,
x_t = (1 - t) x1 + t x0, and the network predicts the velocity v = x0 - x1.
t = 1 is pure noise, so sampling integrates from t = 1 down to t = 0. These are FLUX.1's
own conventions (its packing, position ids and timestep scale too), so a pretrained FLUX
transformer (``source``) takes the projected class token in its condition slots unchanged.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genhancer_plugins import Condition, ConditionSpec, Denoiser, TargetSpec, construction_device, loading_from

from .params import RectifiedFlowParams, TimestepSampling

PATCH = 2  # FLUX packs 2x2 latent pixels into one token


def sample_timesteps(batch: int, sampling: TimestepSampling, device: torch.device | str = "cpu") -> Tensor:
    """t in (0, 1): logit-normal ``sigmoid(s * eps)`` or uniform."""
    if sampling.kind == "uniform":
        return torch.rand(batch, device=device)
    return torch.sigmoid(sampling.scale * torch.randn(batch, device=device))


def pack_latents(latents: Tensor) -> Tensor:
    """[B, C, H, W] -> [B, (H/2)(W/2), 4C], 2x2 patches as FLUX tokens."""
    b, c, h, w = latents.shape
    x = latents.view(b, c, h // PATCH, PATCH, w // PATCH, PATCH)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(b, (h // PATCH) * (w // PATCH), c * PATCH * PATCH)


def unpack_latents(tokens: Tensor, channels: int, height: int, width: int) -> Tensor:
    """Inverse of :func:`pack_latents`."""
    b = tokens.shape[0]
    x = tokens.view(b, height // PATCH, width // PATCH, channels, PATCH, PATCH)
    return x.permute(0, 3, 1, 4, 2, 5).reshape(b, channels, height, width)


def latent_position_ids(height: int, width: int) -> Tensor:
    """FLUX image ids: (0, row, col) per packed token."""
    rows = torch.arange(height // PATCH).view(-1, 1).expand(-1, width // PATCH)
    cols = torch.arange(width // PATCH).view(1, -1).expand(height // PATCH, -1)
    return torch.stack([torch.zeros_like(rows), rows, cols], dim=-1).reshape(-1, 3).float()


#: the architecture fields a checkpoint's config must share with the recipe's params
ARCHITECTURE = ("patch_size", "in_channels", "num_layers", "num_single_layers", "attention_head_dim", "num_attention_heads",
                "joint_attention_dim", "pooled_projection_dim", "guidance_embeds", "axes_dims_rope")


def load_transformer(params: RectifiedFlowParams, kwargs: dict[str, Any]) -> Any:
    """A pretrained FLUX transformer: a diffusers directory or hub id (``subfolder``), or a raw BFL file
    (``from_single_file`` with the params as its config); its architecture must be the params'."""
    from diffusers import FluxTransformer2DModel

    source = str(params.source)
    path = Path(source).expanduser()
    with loading_from(source):
        if path.is_file():
            if path.suffix != ".safetensors":
                raise ValueError(f"rectified_flow: {path}: only .safetensors transformer files are read (no pickles)")
            with tempfile.TemporaryDirectory() as tmp:
                (Path(tmp) / "transformer").mkdir()
                (Path(tmp) / "transformer" / "config.json").write_text(json.dumps({"_class_name": "FluxTransformer2DModel", **kwargs}))
                transformer = FluxTransformer2DModel.from_single_file(str(path), config=tmp, subfolder="transformer",
                                                                      local_files_only=True)
        else:
            subfolder = params.subfolder if not path.is_dir() or (path / str(params.subfolder)).is_dir() else None
            transformer = FluxTransformer2DModel.from_pretrained(source, subfolder=subfolder, revision=params.revision)
    config = transformer.config
    differing = [f"{name} {_plain(config.get(name))} (params: {_plain(kwargs[name])})" for name in ARCHITECTURE
                 if _plain(config.get(name)) != _plain(kwargs[name])]
    if differing:
        raise ValueError(f"rectified_flow: {source} is not the architecture the params describe: {'; '.join(differing)} "
                         "(set the params to the checkpoint's, e.g. preset flux-dev-depth for FLUX.1-dev)")
    return transformer


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def merge_token_layouts(tokens: Tensor, txt_ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One txt-id layout for a batch whose samples place their condition tokens differently.

    FLUX takes one set of txt ids per call. The union of the samples' (id, repeat) slots
    becomes the shared layout; each sample's tokens go to their slots and the slots it
    does not fill are masked out as attention keys. Attention ignores key order and every
    other operation is per token, so each sample's output equals a call on its own.
    Returns tokens [B, U, D], txt ids [U, 3] and the filled slots [B, U] (bool).
    """
    batch, length, _ = txt_ids.shape
    same = (txt_ids[:, :, None, :] == txt_ids[:, None, :, :]).all(-1)  # [B, L, L]
    earlier = torch.ones(length, length, dtype=torch.bool, device=txt_ids.device).tril(-1)
    repeat = (same & earlier).sum(-1, keepdim=True).to(txt_ids.dtype)  # k-th token at this id within its sample
    keys, slot = torch.unique(torch.cat([txt_ids, repeat], -1).reshape(-1, 4), dim=0, return_inverse=True)
    slot = slot.view(batch, length)
    rows = torch.arange(batch, device=tokens.device)[:, None].expand(-1, length)
    merged = tokens.new_zeros(batch, keys.shape[0], tokens.shape[-1])
    merged[rows, slot] = tokens
    present = torch.zeros(batch, keys.shape[0], dtype=torch.bool, device=tokens.device)
    present[rows, slot] = True
    return merged, keys[:, :3].contiguous(), present


class RectifiedFlowDenoiser(Denoiser):
    def __init__(self, params: RectifiedFlowParams, target: TargetSpec, meta: bool = False):
        super().__init__()
        from diffusers import FluxTransformer2DModel

        if target.kind != "continuous" or len(target.shape) != 3:
            raise ValueError(f"rectified_flow needs continuous [C, H, W] targets (a `vae` tokenizer), got {target}")
        channels, height, width = target.shape
        if height % PATCH or width % PATCH:
            raise ValueError(f"latent size {height}x{width} must be even to pack 2x2 tokens; change the image size")
        self.params = params
        self.target = target
        self.condition_spec = ConditionSpec(pooled_dim=params.pooled_projection_dim, token_dim=params.joint_attention_dim)
        kwargs = dict(
            patch_size=1,
            in_channels=channels * PATCH * PATCH,
            num_layers=params.num_layers,
            num_single_layers=params.num_single_layers,
            attention_head_dim=params.attention_head_dim,
            num_attention_heads=params.num_attention_heads,
            joint_attention_dim=params.joint_attention_dim,
            pooled_projection_dim=params.pooled_projection_dim,
            guidance_embeds=params.guidance_embeds,
            axes_dims_rope=tuple(params.axes_dims_rope),
        )
        if params.source and not meta:
            self.transformer = load_transformer(params, kwargs)
        else:  # random weights, or the planned architecture of a checkpoint (validate, bench --dry)
            with construction_device(meta):
                self.transformer = FluxTransformer2DModel(**kwargs)
        self.register_buffer("img_ids", latent_position_ids(height, width), persistent=False)

    def pretrained_source(self) -> str | None:
        return self.params.source

    def frozen_parameters(self) -> list[nn.Parameter]:
        return [] if self.params.train_network else list(self.transformer.parameters())

    def velocity(self, noisy: Tensor, t: Tensor, condition: Condition) -> Tensor:
        """The network's velocity prediction for packed noisy latents."""
        if condition.tokens is None or condition.pooled is None:
            raise ValueError("rectified_flow needs both a pooled vector and condition tokens from the conditioner")
        txt_ids = self.condition_ids(condition)
        shared = condition.token_positions is None or txt_ids.shape[0] == 1 or txt_ids.device.type == "meta"
        if shared or bool((txt_ids == txt_ids[:1]).all()):
            return self._velocity(noisy, t, condition.tokens, condition.pooled, txt_ids[0])
        tokens, txt_ids, present = merge_token_layouts(condition.tokens, txt_ids)
        return self._velocity(noisy, t, tokens, condition.pooled, txt_ids, present)

    def condition_ids(self, condition: Condition) -> Tensor:
        """[B, L, 3] FLUX txt ids: (0, 0, 0) for a token with no place (the global
        token), else (0, row, column) in the packed latent grid, so RoPE relates a
        local condition token to the image tokens of the same patch."""
        tokens = condition.tokens
        ids = torch.zeros(tokens.shape[0], tokens.shape[1], 3, device=tokens.device)
        if condition.token_positions is not None:
            _, height, width = self.target.shape
            grid = torch.tensor([height // PATCH, width // PATCH], device=tokens.device, dtype=torch.float32)
            places = condition.token_positions.float() * grid - 0.5  # share of the side -> token-centre coordinates
            ids[..., 1:] = torch.nan_to_num(places, nan=0.0)
        return ids

    def _velocity(self, noisy: Tensor, t: Tensor, tokens: Tensor, pooled: Tensor, txt_ids: Tensor,
                  present: Tensor | None = None) -> Tensor:
        attention = None
        if present is not None:  # keys of the slots a sample does not fill are masked out for every query
            image = torch.ones(present.shape[0], noisy.shape[1], dtype=torch.bool, device=present.device)
            attention = {"attention_mask": torch.cat([present, image], dim=1)[:, None, None, :]}
        guidance = None
        if self.params.guidance_embeds:
            guidance = torch.full((noisy.shape[0],), self.params.guidance, device=noisy.device, dtype=noisy.dtype)
        return self.transformer(
            hidden_states=noisy,
            encoder_hidden_states=tokens,
            pooled_projections=pooled,
            timestep=t.to(noisy.dtype),
            img_ids=self.img_ids.to(noisy.device),
            txt_ids=txt_ids,
            guidance=guidance,
            joint_attention_kwargs=attention,
            return_dict=False,
        )[0]

    def enable_gradient_checkpointing(self) -> bool:
        self.transformer.enable_gradient_checkpointing()
        return True

    def compile_network(self) -> bool:
        self.transformer.compile()  # the MM-DiT; noise and timesteps stay eager, so random streams are unchanged
        return True

    def save_pretrained(self, directory: Path) -> None:
        """The FLUX transformer in diffusers' layout: ``FluxTransformer2DModel.from_pretrained(directory)`` opens it."""
        self.transformer.save_pretrained(directory, safe_serialization=True)

    def loss(self, targets: Tensor, condition: Condition) -> Tensor:
        x1 = pack_latents(targets)
        x0 = torch.randn_like(x1)
        t = sample_timesteps(x1.shape[0], self.params.timesteps, x1.device)
        t_ = t.view(-1, 1, 1)
        noisy = (1 - t_) * x1 + t_ * x0
        prediction = self.velocity(noisy, t, condition)
        return F.mse_loss(prediction.float(), (x0 - x1).float())

    @torch.no_grad()
    def sample(self, condition: Condition, steps: int = 20) -> Tensor:
        """Euler integration of the learned ODE from noise (t = 1) to latents (t = 0)."""
        ref = condition.pooled if condition.pooled is not None else condition.tokens
        channels, height, width = self.target.shape
        x = torch.randn(ref.shape[0], (height // PATCH) * (width // PATCH), channels * PATCH * PATCH, device=ref.device)
        grid = torch.linspace(1.0, 0.0, steps + 1, device=ref.device)
        for t_now, t_next in zip(grid[:-1], grid[1:]):
            t = torch.full((x.shape[0],), float(t_now), device=x.device)
            x = x + (t_next - t_now) * self.velocity(x, t, condition).float()
        return unpack_latents(x, channels, height, width)
