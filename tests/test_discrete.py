"""The discrete path: VQ tokenizer and Perceiver denoiser."""

import json

import pytest
import torch
from genhancer_discrete.params import PerceiverParams, VQParams
from genhancer_discrete.perceiver import PerceiverDenoiser
from genhancer_discrete.vq import build_vq
from helpers import ROOT, TINY, run_recipe, write_recipe

from genhancer_plugins.commands.plan import make_plan
from genhancer_plugins.interfaces import Condition, TargetSpec
from genhancer_plugins.recipe.build import build_models, resolve_components
from genhancer_plugins.recipe.schema import load_recipe
from genhancer_plugins.registry.manager import load_plugins

TINY_VQ = {
    "block_out_channels": [8, 8, 8, 8], "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4, "latent_channels": 8, "layers_per_block": 1,
    "norm_num_groups": 4, "num_vq_embeddings": 64, "mid_block_add_attention": False,
}


def perceiver(**kw):
    torch.manual_seed(0)
    params = PerceiverParams(**{"num_layers": 2, "width": 32, "num_heads": 2, **kw})
    return PerceiverDenoiser(params, TargetSpec("discrete", (16,), vocab_size=64))


def cond(batch=4, tokens=1):
    return Condition(tokens=torch.randn(batch, tokens, 32))


@pytest.mark.parametrize("lookup", [False, True])
def test_vq_tokenizer_round_trip_shapes(lookup):
    torch.manual_seed(0)
    tok = build_vq(VQParams(config={**TINY_VQ, "lookup_from_codebook": lookup}))
    assert tok.target_spec(32) == TargetSpec("discrete", (16,), vocab_size=64)
    images = torch.rand(2, 3, 32, 32)
    codes = tok.encode(images)
    assert codes.shape == (2, 16) and codes.dtype == torch.long
    assert 0 <= codes.min() and codes.max() < 64
    decoded = tok.decode(codes)
    assert decoded.shape == (2, 3, 32, 32) and 0 <= decoded.min() and decoded.max() <= 1
    assert torch.equal(tok.encode(images), codes)  # frozen and deterministic
    with pytest.raises(ValueError, match="multiple of"):
        tok.target_spec(36)


def test_mask_ratio_is_drawn_per_sample_in_range():
    model = perceiver()
    torch.manual_seed(1)
    mask = model.draw_mask(4000, torch.device("cpu"))
    counts = mask.sum(1).float()
    assert counts.min() >= round(0.5 * 16) and counts.max() <= round(0.9 * 16)
    assert counts.std() > 1  # varies per sample
    assert abs(counts.mean() / 16 - 0.7) < 0.02
    fixed = perceiver(mask_ratio_min=0.25, mask_ratio_max=0.25).draw_mask(100, torch.device("cpu"))
    assert torch.all(fixed.sum(1) == 4)


def test_loss_ignores_unmasked_positions(monkeypatch):
    model = perceiver()
    targets = torch.randint(0, 64, (4, 16))
    torch.manual_seed(3)
    mask = model.draw_mask(4, torch.device("cpu"))
    monkeypatch.setattr(model, "draw_mask", lambda batch, device: mask)
    captured = {}
    original = model.logits

    def spy(codes, condition):
        out = original(codes, condition)
        out.retain_grad()
        captured["logits"], captured["codes"] = out, codes
        return out

    monkeypatch.setattr(model, "logits", spy)
    loss = model.loss(targets, cond())
    loss.backward()
    grad = captured["logits"].grad
    assert torch.all(grad[~mask] == 0) and grad[mask].abs().sum() > 0
    # masked positions were fed as the mask token, the others as themselves
    assert torch.all(captured["codes"][mask] == 64) and torch.equal(captured["codes"][~mask], targets[~mask])
    # the value equals cross-entropy over the masked positions alone
    expected = torch.nn.functional.cross_entropy(captured["logits"][mask], targets[mask])
    assert torch.allclose(loss, expected)


def test_condition_reaches_every_layer_through_keys_and_values():
    model = perceiver().eval()
    codes = torch.full((2, 16), 64)
    a = model.logits(codes, Condition(tokens=torch.randn(2, 1, 32)))
    b = model.logits(codes, Condition(tokens=torch.randn(2, 1, 32)))
    assert (a - b).abs().max() > 1e-4
    more = model.logits(codes, Condition(tokens=torch.randn(2, 5, 32)))  # extra condition tokens: extra keys/values
    assert more.shape == a.shape
    assert model.condition_spec.pooled_dim is None and model.condition_spec.token_dim == 32


def test_iterative_decoding_fills_every_position():
    out = perceiver().eval().sample(cond(3), steps=4)
    assert out.shape == (3, 16) and out.max() < 64 and out.min() >= 0


@pytest.mark.parametrize("preset,layers", [("perceiver-2", 2), ("perceiver-4", 4), ("perceiver-6", 6), ("perceiver-8", 8)])
def test_perceiver_presets(tmp_path, preset, layers):
    path = write_recipe(tmp_path, {**TINY, "tokenizer": {"name": "vq", "preset": "tiny"},
                                   "denoiser": {"name": "perceiver", "preset": preset, "params": {"width": 32, "num_heads": 2}}})
    manager = load_plugins()
    denoiser = build_models(resolve_components(load_recipe(path, manager=manager), manager), meta=True)["denoiser"]
    assert len(denoiser.layers) == layers  # the model the engine builds, not only the plan


@pytest.mark.parametrize("name,size", [("discrete_clip_l14_224", 224), ("discrete_siglip_so400m_224", 224), ("discrete_siglip_so400m_384", 384)])
def test_paper_discrete_recipes_validate_offline(name, size):
    plan = make_plan(load_recipe(ROOT / "recipes" / "paper" / f"{name}.yaml"), load_plugins(), None)
    assert plan["target"] == {"kind": "discrete", "shape": [(size // 16) ** 2]}
    assert plan["components"]["tokenizer"]["params"]["source"] == "amused/amused-256"
    assert plan["components"]["denoiser"]["params"]["num_layers"] == 6


@pytest.mark.slow
def test_tiny_discrete_recipe_runs_end_to_end_with_export(tmp_path):
    summary = run_recipe(ROOT / "recipes" / "tiny_discrete.yaml", tmp_path / "out",
                         overrides=["stage1.steps=5", "stage2.steps=3", "data.params.num_images=48"])
    assert summary["completed"] and summary["stages"]["stage2"]["steps"] == 3
    assert summary["stages"]["stage1"]["losses"][0][1] > 3.0  # about ln(64) at the start
    assert summary["export"]["max_abs_diff"] < 1e-4
    assert json.loads((tmp_path / "out/export/genhancer.json").read_text())["recipe"] == "tiny_discrete"
