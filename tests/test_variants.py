"""Every training variant of the paper does what it says."""

import pytest
import torch
from genhancer_conditioners.cls import ClsConditioner
from genhancer_conditioners.params import ClsLocalParams, ClsParams
from helpers import ROOT, TINY, run_recipe, write_recipe
from safetensors.torch import load_file

from genhancer_plugins import hookimpl
from genhancer_plugins.commands.plan import make_plan
from genhancer_plugins.interfaces import Condition, ConditionSpec, EncoderOutput, EncoderSpec
from genhancer_plugins.recipe.build import build_models, resolve_components
from genhancer_plugins.recipe.schema import RecipeError, load_recipe
from genhancer_plugins.registry.manager import load_plugins

ENC = EncoderSpec(global_dim=24, local_dim=32, num_local_tokens=16, image_size=32)
COND = ConditionSpec(pooled_dim=12, token_dim=20)


def encoded(batch=3):
    return EncoderOutput(torch.randn(batch, 24), torch.randn(batch, 16, 32))


@pytest.mark.parametrize("fraction,extra", [(0.25, 4), (0.1, 2), (1.0, 16)])
def test_cls_local_adds_round_n_times_N_condition_tokens(fraction, extra):
    cond = ClsConditioner(ClsLocalParams(fraction=fraction), ENC, COND)
    out = cond(encoded())
    assert out.tokens.shape == (3, 1 + extra, 20) and out.pooled.shape == (3, 12)


def test_cls_local_with_n_zero_is_exactly_cls():
    torch.manual_seed(0)
    local = ClsConditioner(ClsLocalParams(fraction=0.0), ENC, COND)
    torch.manual_seed(0)
    plain = ClsConditioner(ClsParams(), ENC, COND)
    assert local.state_dict().keys() == plain.state_dict().keys()
    for key, value in plain.state_dict().items():
        assert torch.equal(value, local.state_dict()[key])
    x = encoded()
    a, b = local(x), plain(x)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.pooled, b.pooled)


def test_local_token_selection_random_per_sample_or_evenly_spaced():
    even = ClsConditioner(ClsLocalParams(fraction=0.25, selection="even"), ENC, COND)
    index = even.select_local(torch.zeros(2, 16, 32))
    assert index.tolist() == [[0, 5, 10, 15], [0, 5, 10, 15]]
    rand = ClsConditioner(ClsLocalParams(fraction=0.25), ENC, COND)
    torch.manual_seed(0)
    picks = rand.select_local(torch.zeros(64, 16, 32))
    assert picks.shape == (64, 4) and len({tuple(p) for p in picks.tolist()}) > 10
    assert all(len(set(p)) == 4 and p == sorted(p) for p in picks.tolist())
    # the selected tokens really are the chosen patches
    x = encoded(2)
    torch.manual_seed(5)
    out = rand(x)
    torch.manual_seed(5)
    chosen = rand.select_local(x.local_tokens)
    manual = rand.to_local(torch.stack([x.local_tokens[b, chosen[b]] for b in range(2)]))
    assert torch.allclose(out.tokens[:, 1:], manual)


class DenoiserInputs:
    """Records the condition every denoiser call receives."""

    def __init__(self):
        self.shapes = []

    @hookimpl
    def genhancer_run_start(self, run):
        denoiser = run.modules["denoiser"]
        original = denoiser.loss

        def spy(targets, condition: Condition):
            self.shapes.append(tuple(condition.tokens.shape))
            return original(targets, condition)

        denoiser.loss = spy


@pytest.mark.slow
@pytest.mark.parametrize("denoiser,tokenizer", [("rectified_flow", "vae"), ("perceiver", "vq")])
def test_both_denoisers_receive_the_local_tokens(tmp_path, denoiser, tokenizer):
    recipe = write_recipe(tmp_path, {**TINY, "conditioner": {"name": "cls_local", "params": {"fraction": 0.25}},
                                     "tokenizer": {"name": tokenizer, "preset": "tiny"},
                                     "denoiser": {"name": denoiser, "preset": "tiny"},
                                     "stage1": {"steps": 2}, "stage2": {"steps": 1}})
    spy = DenoiserInputs()
    run_recipe(recipe, tmp_path / "out", plugins=[(spy, "spy")])
    # tiny CLIP: 32 px / patch 8 = 16 local tokens -> 1 + round(0.25 * 16) = 5 condition tokens
    assert spy.shapes and all(shape[:2] == (8, 5) for shape in spy.shapes)


class TrainableAtFirstStep:
    def __init__(self):
        self.first = {}

    @hookimpl
    def genhancer_step_end(self, step):
        if step.step == 1 and step.stage not in self.first:
            encoder = step.modules["encoder"]
            self.first[step.stage] = sorted(n for n, p in encoder.named_parameters() if p.requires_grad)


@pytest.mark.slow
def test_end_to_end_trains_the_encoder_from_step_zero(tmp_path):
    recipe = write_recipe(tmp_path, {**TINY, "schedule": "end_to_end"})
    spy = TrainableAtFirstStep()
    summary = run_recipe(recipe, tmp_path / "out", plugins=[(spy, "spy")])
    assert list(summary["stages"]) == ["stage2"]
    assert spy.first["stage2"] and all("lora_" in n for n in spy.first["stage2"])
    assert not (tmp_path / "out" / "stage1").exists()
    final = load_file(tmp_path / "out/stage2/final/model.safetensors")
    assert any(k.startswith("denoiser.") for k in final)
    with pytest.raises(RecipeError, match="end_to_end"):
        load_recipe(recipe, ["stage2.mode=only"])


@pytest.mark.slow
def test_stage2_only_leaves_denoiser_and_projector_bit_identical(tmp_path):
    recipe = write_recipe(tmp_path, {**TINY, "stage2": {**TINY["stage2"], "mode": "only"}})
    run_recipe(recipe, tmp_path / "out")
    s1 = load_file(tmp_path / "out/stage1/final/model.safetensors")
    s2 = load_file(tmp_path / "out/stage2/final/model.safetensors")
    heads = [k for k in s1 if k.startswith(("denoiser.", "conditioner."))]
    assert heads and all(torch.equal(s1[k], s2[k]) for k in heads)
    assert any("lora_" in k for k in s2)


@pytest.mark.slow
def test_full_fine_tuning_changes_the_vision_tower_without_lora(tmp_path):
    recipe = write_recipe(tmp_path, {**TINY, "stage2": {**TINY["stage2"], "encoder_tuning": "full"}})
    summary = run_recipe(recipe, tmp_path / "out")
    final = load_file(tmp_path / "out/stage2/final/model.safetensors")
    assert not any("lora_" in k for k in final)
    assert "encoder.model.vision_model.encoder.layers.0.mlp.fc1.weight" in final
    assert not any(k.startswith("encoder.model.text_model") for k in final)
    assert summary["export"]["max_abs_diff"] < 1e-4


def _built_denoiser(recipe, meta=True):
    """The denoiser the engine builds from a recipe (the registry's factory, the recipe's params)."""
    manager = load_plugins()
    return build_models(resolve_components(load_recipe(recipe, manager=manager), manager), meta=meta)["denoiser"]


@pytest.mark.parametrize("preset,double,single", [("flux-n1", 1, 2), ("flux-n2", 2, 4), ("flux-n3", 3, 6), ("flux-n4", 4, 8)])
def test_rectified_flow_size_presets(tmp_path, preset, double, single):
    recipe = write_recipe(tmp_path, {**TINY, "denoiser": {"name": "rectified_flow", "preset": preset}})
    transformer = _built_denoiser(recipe).transformer
    assert (len(transformer.transformer_blocks), len(transformer.single_transformer_blocks)) == (double, single)
    assert transformer.config.num_attention_heads == 24 and transformer.config.attention_head_dim == 128  # FLUX widths


@pytest.mark.parametrize("kind,scale,low,high", [("uniform", 1.0, 0.27, 0.31), ("logit_normal", 0.5, 0.08, 0.14),
                                                 ("logit_normal", 5.0, 0.36, 0.43)])
def test_timestep_sampler_is_a_recipe_field(tmp_path, monkeypatch, kind, scale, low, high):
    import genhancer_flux.rectified_flow as rf

    recipe = write_recipe(tmp_path, {**TINY, "denoiser": {"name": "rectified_flow", "preset": "tiny",
                                                          "params": {"timesteps": {"kind": kind, "scale": scale}}}})
    denoiser = _built_denoiser(recipe, meta=False)
    drawn = []
    original = rf.sample_timesteps
    monkeypatch.setattr(rf, "sample_timesteps", lambda *a, **k: drawn.append(original(*a, **k)) or drawn[-1])
    torch.manual_seed(0)
    condition = Condition(pooled=torch.randn(4000, 24), tokens=torch.randn(4000, 1, 32))
    with torch.no_grad():
        denoiser.loss(torch.randn(4000, 16, 4, 4), condition)
    t = drawn[0]
    # the loss draws t as the recipe says: uniform std 0.289; sigmoid(0.5 eps) std ~0.12; sigmoid(5 eps) piles up near 0 and 1
    assert low < float(t.std()) < high and abs(float(t.mean()) - 0.5) < 0.02


@pytest.mark.parametrize("recipe", sorted((ROOT / "recipes" / "ablations").glob("*.yaml")), ids=lambda p: p.stem)
def test_ablation_recipes_validate_offline(recipe):
    plan = make_plan(load_recipe(recipe), load_plugins(), None)
    assert plan["parameters"]["denoiser"] > 0
    stem = recipe.stem
    if stem == "end_to_end":
        assert list(plan["stages"]) == ["stage2"]
    if stem == "full_finetune":
        assert plan["stages"]["stage2"]["what"].startswith("encoder vision tower (full fine-tuning)")
    if stem == "local_tokens":
        assert plan["components"]["conditioner"]["name"] == "cls_local"
