"""Conditioner ``diva``: DIVA's condition, the class token and randomly drawn local tokens.

DIVA (OpenAI CLIP) keeps the class token and 76 local patch tokens drawn per sample with
replacement (``torch.randint``), so that 77 tokens fill the slots of the prompt embedding they
are added to; each goes through one linear map to the UNet's cross-attention width. The local
tokens here come at the encoder's hidden width, before the head that made the class token, so
they get a LayerNorm of their own before their linear map.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from genhancer_plugins import Condition, Conditioner, ConditionSpec, EncoderOutput, EncoderSpec

from .params import DivaConditionParams


class DivaConditioner(Conditioner):
    def __init__(self, params: DivaConditionParams, encoder: EncoderSpec, condition: ConditionSpec):
        super().__init__()
        if condition.token_dim is None:
            raise ValueError("conditioner diva makes condition tokens; the denoiser accepts none")
        if params.local_tokens and encoder.num_local_tokens == 0:
            raise ValueError("conditioner diva: the encoder has no local tokens; set local_tokens: 0")
        if params.local_tokens > encoder.num_local_tokens and not params.with_replacement:
            raise ValueError(f"conditioner diva: {params.local_tokens} local tokens without replacement, the encoder has "
                             f"{encoder.num_local_tokens}")
        self.num_local = params.local_tokens
        self.with_replacement = params.with_replacement
        self.uses_local_tokens = bool(self.num_local)
        self.to_token = nn.Linear(encoder.global_dim, condition.token_dim)
        self.to_local = nn.Sequential(nn.LayerNorm(encoder.local_dim), nn.Linear(encoder.local_dim, condition.token_dim)) \
            if self.num_local else None

    def select_local(self, local: Tensor) -> Tensor:
        """Indices [B, k] of the local tokens used (DIVA: independent draws, repeats allowed)."""
        batch, n = local.shape[:2]
        if self.with_replacement:
            return torch.randint(0, n, (batch, self.num_local), device=local.device)
        return torch.rand(batch, n, device=local.device).argsort(dim=1)[:, : self.num_local]

    def forward(self, encoded: EncoderOutput) -> Condition:
        tokens = self.to_token(encoded.global_token).unsqueeze(1)
        if self.to_local is not None:
            local = encoded.local_tokens
            index = self.select_local(local)
            picked = local.gather(1, index.unsqueeze(-1).expand(-1, -1, local.shape[-1]))
            tokens = torch.cat([tokens, self.to_local(picked)], dim=1)
        return Condition(tokens=tokens)
