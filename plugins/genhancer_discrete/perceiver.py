"""Denoiser ``perceiver``: the paper's lightweight discrete denoiser.

How the paper's wording maps to this code:

* "code-index embeddings plus positions": ``embed`` (codebook + 1 rows; the
  extra row is the learned [MASK] embedding) plus a learned ``position``
  table, one row per code position.
* "a fraction of positions replaced by a learned mask embedding": per sample,
  a ratio r ~ U(mask_ratio_min, mask_ratio_max) (0.5..0.9 by default, Table 8),
  and round(r * L) positions (at least one) chosen uniformly at random.
* "each layer lets the token sequence attend, through cross-attention, to
  keys/values made of the sequence itself concatenated with the projected
  condition tokens": :class:`PerceiverLayer`: queries = LN(x); keys/values =
  concat(LN(x), condition tokens); then an MLP; both residual, pre-norm.
  Six layers by default (Table 5: 2/4/6/8).
* "cross-entropy on the masked positions only": ``loss`` gathers logits at
  masked positions; unmasked positions contribute nothing.

Sampling is iterative masked decoding (MaskGIT-style, cosine schedule): start
fully masked, predict every masked code, keep the most confident ones, repeat.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genhancer_plugins import Condition, ConditionSpec, Denoiser, TargetSpec

from .params import PerceiverParams


class PerceiverLayer(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm_q = nn.LayerNorm(width)
        self.norm_cond = nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(self, x: Tensor, condition: Tensor) -> Tensor:
        q = self.norm_q(x)
        kv = torch.cat([q, self.norm_cond(condition)], dim=1)
        x = x + self.attention(q, kv, kv, need_weights=False)[0]
        return x + self.mlp(self.norm_mlp(x))


class PerceiverDenoiser(Denoiser):
    def __init__(self, params: PerceiverParams, target: TargetSpec):
        super().__init__()
        if target.kind != "discrete" or target.vocab_size is None or len(target.shape) != 1:
            raise ValueError(f"perceiver needs discrete [L] code indices with a vocabulary (a `vq` tokenizer), got {target}")
        self.params = params
        self.length = target.shape[0]
        self.vocab_size = target.vocab_size
        self.mask_id = target.vocab_size
        self.condition_spec = ConditionSpec(pooled_dim=None, token_dim=params.width)
        self.embed = nn.Embedding(target.vocab_size + 1, params.width)
        self.position = nn.Parameter(torch.zeros(1, self.length, params.width))
        nn.init.normal_(self.position, std=0.02)
        self.layers = nn.ModuleList(
            PerceiverLayer(params.width, params.num_heads, params.mlp_ratio) for _ in range(params.num_layers)
        )
        self.norm_out = nn.LayerNorm(params.width)
        self.head = nn.Linear(params.width, target.vocab_size)

    def logits(self, codes: Tensor, condition: Condition) -> Tensor:
        """Logits [B, L, vocab] for a sequence in which masked positions hold ``mask_id``."""
        if condition.tokens is None:
            raise ValueError("perceiver needs condition tokens from the conditioner")
        x = self.embed(codes) + self.position
        cond = condition.tokens.to(x.dtype)
        for layer in self.layers:
            x = layer(x, cond)
        return self.head(self.norm_out(x))

    def draw_mask(self, batch: int, device: torch.device) -> Tensor:
        """Boolean [B, L]: per sample, round(r * L) random positions, r ~ U(min, max)."""
        p = self.params
        ratio = p.mask_ratio_min + (p.mask_ratio_max - p.mask_ratio_min) * torch.rand(batch, 1, device=device)
        count = (ratio * self.length).round().clamp(min=1)
        ranks = torch.rand(batch, self.length, device=device).argsort(dim=1).argsort(dim=1)
        return ranks < count

    def loss(self, targets: Tensor, condition: Condition) -> Tensor:
        mask = self.draw_mask(targets.shape[0], targets.device)
        inputs = targets.masked_fill(mask, self.mask_id)
        logits = self.logits(inputs, condition)
        # the mean over masked positions, without indexing by the mask: shapes stay known (FLOPs on the meta device)
        per_position = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none").view_as(mask)
        return (per_position * mask).sum() / mask.sum().clamp(min=1)

    @torch.no_grad()
    def save_pretrained(self, directory: Path) -> None:
        """``config.json`` (parameters and target) + ``model.safetensors``; :meth:`from_pretrained` reads it."""
        from genhancer_plugins import save_tensors

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {"params": self.params.model_dump(mode="json"), "length": self.length, "vocab_size": self.vocab_size}
        (directory / "config.json").write_text(json.dumps(config, indent=2))
        save_tensors({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, directory / "model.safetensors")

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "PerceiverDenoiser":
        from safetensors.torch import load_file

        directory = Path(directory)
        config = json.loads((directory / "config.json").read_text())
        model = cls(PerceiverParams(**config["params"]), TargetSpec("discrete", (config["length"],), config["vocab_size"]))
        model.load_state_dict(load_file(directory / "model.safetensors"))
        return model

    def sample(self, condition: Condition, steps: int = 12) -> Tensor:
        batch = condition.tokens.shape[0]
        device = condition.tokens.device
        codes = torch.full((batch, self.length), self.mask_id, dtype=torch.long, device=device)
        for step in range(1, steps + 1):
            masked = codes == self.mask_id
            probs = self.logits(codes, condition).float().softmax(-1)
            confidence, guess = probs.max(-1)
            codes = torch.where(masked, guess, codes)
            remaining = int(self.length * math.cos(math.pi / 2 * step / steps))
            if remaining <= 0:
                break
            # re-mask the least confident of this step's new guesses
            confidence = confidence.masked_fill(~masked, float("inf"))
            remask = confidence.argsort(dim=1)[:, :remaining]
            codes.scatter_(1, remask, self.mask_id)
        return codes
