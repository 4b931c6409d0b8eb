"""The toy denoiser: rectified flow with an MLP on flattened latents, conditioned on the
pooled vector only (no condition tokens)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genhancer_plugins import Condition, ConditionSpec, Denoiser, TargetSpec


class ToyMLPDenoiser(Denoiser):
    def __init__(self, hidden: int, cond_dim: int, target: TargetSpec):
        super().__init__()
        if target.kind != "continuous":
            raise ValueError("toy_mlp needs continuous targets (a VAE tokenizer), not code indices")
        self.shape = tuple(target.shape)
        size = 1
        for d in target.shape:
            size *= d
        self.condition_spec = ConditionSpec(pooled_dim=cond_dim, token_dim=None)
        self.net = nn.Sequential(nn.Linear(size + cond_dim + 1, hidden), nn.SiLU(), nn.Linear(hidden, size))

    def velocity(self, x: torch.Tensor, t: torch.Tensor, condition: Condition) -> torch.Tensor:
        return self.net(torch.cat([x, condition.pooled, t[:, None]], dim=1))

    def loss(self, targets: torch.Tensor, condition: Condition) -> torch.Tensor:
        # every draw from torch's global generator: the engine seeds it per step, so resume is exact
        x1 = targets.flatten(1)
        x0 = torch.randn_like(x1)
        t = torch.rand(x1.shape[0], device=x1.device)
        noisy = (1 - t[:, None]) * x1 + t[:, None] * x0
        return F.mse_loss(self.velocity(noisy, t, condition), x0 - x1)

    @torch.no_grad()
    def sample(self, condition: Condition, steps: int = 20) -> torch.Tensor:
        x = torch.randn(condition.pooled.shape[0], self.net[-1].out_features, device=condition.pooled.device)
        for i in range(steps):
            t = torch.full((x.shape[0],), 1 - i / steps, device=x.device)
            x = x - self.velocity(x, t, condition) / steps
        return x.view(-1, *self.shape)
