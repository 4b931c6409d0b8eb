import math

import pytest
import torch
from genhancer_flux.params import RectifiedFlowParams, TimestepSampling
from genhancer_flux.rectified_flow import (
    RectifiedFlowDenoiser,
    latent_position_ids,
    pack_latents,
    sample_timesteps,
    unpack_latents,
)

from genhancer_plugins.interfaces import Condition, TargetSpec

TINY = dict(num_layers=1, num_single_layers=2, attention_head_dim=16, num_attention_heads=2,
            joint_attention_dim=32, pooled_projection_dim=24, axes_dims_rope=(4, 6, 6))


def test_logit_normal_timesteps_shape_range_and_distribution():
    torch.manual_seed(0)
    t = sample_timesteps(200_000, TimestepSampling(kind="logit_normal", scale=1.0))
    assert t.shape == (200_000,)
    assert 0 < t.min() and t.max() < 1
    # logit(t) / s must be standard normal.
    z = torch.logit(t.double())
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert abs(t.median() - 0.5) < 0.01


def test_logit_normal_scale_spreads_mass_to_the_ends():
    torch.manual_seed(0)
    narrow = sample_timesteps(50_000, TimestepSampling(scale=0.1))
    wide = sample_timesteps(50_000, TimestepSampling(scale=5.0))
    assert narrow.std() < 0.05  # s = 0.1: almost always t close to 0.5
    assert ((wide < 0.05) | (wide > 0.95)).float().mean() > 0.4
    assert ((wide - 0.5).abs() < 0.1).float().mean() < 0.1


def test_uniform_timesteps():
    torch.manual_seed(0)
    t = sample_timesteps(100_000, TimestepSampling(kind="uniform"))
    assert t.shape == (100_000,)
    assert abs(t.mean() - 0.5) < 0.01 and abs(t.var() - 1 / 12) < 0.002
    hist = torch.histc(t, bins=10, min=0, max=1) / t.numel()
    assert torch.all((hist - 0.1).abs() < 0.01)


def test_pack_unpack_round_trip_and_layout():
    x = torch.randn(3, 16, 6, 8)
    packed = pack_latents(x)
    assert packed.shape == (3, 12, 64)
    assert torch.equal(unpack_latents(packed, 16, 6, 8), x)
    # token 0 holds the top-left 2x2 patch of every channel, channel-major
    assert torch.equal(packed[0, 0].view(16, 2, 2), x[0, :, :2, :2])
    ids = latent_position_ids(6, 8)
    assert ids.shape == (12, 3) and ids[5].tolist() == [0.0, 1.0, 1.0]


def _denoiser():
    torch.manual_seed(0)
    return RectifiedFlowDenoiser(RectifiedFlowParams(**TINY), TargetSpec("continuous", (16, 4, 4)))


def _condition(batch=2):
    return Condition(pooled=torch.randn(batch, 24), tokens=torch.randn(batch, 1, 32))


def test_loss_target_is_noise_minus_data(monkeypatch):
    denoiser = _denoiser()
    x1 = torch.randn(2, 16, 4, 4)
    seen = {}

    def oracle(noisy, t, condition):
        # Recover x0 from x_t = (1 - t) x1 + t x0: the exact velocity x0 - x1.
        t_ = t.view(-1, 1, 1)
        x1p = pack_latents(x1)
        x0 = (noisy - (1 - t_) * x1p) / t_
        seen["t"] = t
        return x0 - x1p

    monkeypatch.setattr(denoiser, "velocity", oracle)
    assert denoiser.loss(x1, _condition()) < 1e-8
    monkeypatch.setattr(denoiser, "velocity", lambda noisy, t, c: torch.zeros_like(noisy))
    cond = _condition()
    torch.manual_seed(1)
    zero_loss = denoiser.loss(x1, cond)
    torch.manual_seed(1)
    x0 = torch.randn_like(pack_latents(x1))
    assert torch.allclose(zero_loss, ((x0 - pack_latents(x1)) ** 2).mean(), atol=1e-6)


def test_loss_backpropagates_to_condition_and_sample_shape():
    denoiser = _denoiser()
    cond = _condition()
    cond.pooled.requires_grad_(True)
    loss = denoiser.loss(torch.randn(2, 16, 4, 4), cond)
    loss.backward()
    assert math.isfinite(loss.item()) and cond.pooled.grad.abs().sum() > 0
    out = denoiser.sample(_condition(3), steps=3)
    assert out.shape == (3, 16, 4, 4) and torch.isfinite(out).all()


def test_rejects_odd_latents_and_discrete_targets():
    with pytest.raises(ValueError, match="even"):
        RectifiedFlowDenoiser(RectifiedFlowParams(**TINY), TargetSpec("continuous", (16, 5, 5)))
    with pytest.raises(ValueError, match="continuous"):
        RectifiedFlowDenoiser(RectifiedFlowParams(**TINY), TargetSpec("discrete", (16,), 1024))


def test_paper_denoiser_has_1_31_billion_parameters_on_meta_device():
    from genhancer_plugins.interfaces import count_parameters

    denoiser = RectifiedFlowDenoiser(RectifiedFlowParams(), TargetSpec("continuous", (16, 28, 28)), meta=True)
    assert count_parameters(denoiser) == 1_310_154_816
