"""Fidelity to the authors' release: schedule, LoRA biases, precision, export dtype,
local-token positions, pinned image processors and the README's table of settings."""

import json
import re

import pytest
import torch
from genhancer_conditioners.cls import ClsConditioner
from genhancer_conditioners.params import ClsLocalParams
from genhancer_flux.params import RectifiedFlowParams
from genhancer_flux.rectified_flow import RectifiedFlowDenoiser, latent_position_ids, merge_token_layouts
from helpers import ROOT, TINY, run_recipe, tiny_encoder_config, write_recipe
from safetensors import safe_open
from safetensors.torch import load_file

from genhancer_plugins.cli import main
from genhancer_plugins.commands.plan import make_plan
from genhancer_plugins.interfaces import Condition, ConditionSpec, EncoderOutput, EncoderSpec, TargetSpec
from genhancer_plugins.recipe.schema import load_recipe
from genhancer_plugins.registry.manager import load_plugins
from genhancer_plugins.training.engine import Run
from genhancer_plugins.training.stage import configure_trainable

PAPER = ROOT / "recipes" / "paper" / "clip_l14_224.yaml"


def _plan(recipe, overrides=()):
    return make_plan(load_recipe(recipe, list(overrides)), load_plugins(), None)


# -- 1. schedule -------------------------------------------------------------
@pytest.mark.parametrize("name", ["clip_l14_224", "clip_l14_336", "metaclip_l14", "metaclip_h14",
                                  "siglip_so400m_224", "siglip_so400m_384"])
def test_paper_recipes_use_the_release_schedule(name):
    stages = _plan(ROOT / "recipes" / "paper" / f"{name}.yaml")["stages"]
    assert (stages["stage1"]["steps"], stages["stage2"]["steps"]) == (100_000, 10_000)
    assert stages["stage1"]["lr_schedule"] == stages["stage2"]["lr_schedule"] == "constant"
    assert (stages["stage1"]["learning_rate"], stages["stage2"]["learning_rate"]) == (1e-4, 1e-5)
    assert stages["stage2"]["lora"] == {"rank": 16, "alpha": 16.0, "dropout": 0.1, "bias": "lora_only"}


def test_validate_prints_steps_schedule_and_the_lora_bias_count(capsys):
    assert main(["validate", str(PAPER), "--recipe-only"]) == 0
    out = capsys.readouterr().out
    # ViT-L/14: 24 layers x (q, k, v, out_proj: 1024 each + fc1 4096 + fc2 1024); visual_projection has no bias
    biases = 24 * (4 * 1024 + 4096 + 1024)
    adapters = 16 * sum(i + o for i, o in [(1024, 1024)] * 4 * 24 + [(1024, 4096), (4096, 1024)] * 24 + [(1024, 768)])
    assert "100000 steps, lr 0.0001 constant" in out and "10000 steps, lr 1e-05 constant" in out
    assert f"({adapters:,}) + bias lora_only ({biases:,})" in out
    head = 1_310_154_816 + 21_115_392
    assert f"({head + adapters + biases:,})" in out


def _readme_settings_table():
    text = (ROOT / "README.md").read_text()
    section = text.split("### Ours vs the release", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert len(rows) >= 12, "the README's settings table lost rows"
    parsed = []
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        parsed.append((cells[0].strip("`"), cells[2].strip("`")))
    return parsed


def _lookup(plan, path):
    node = plan
    for key in path.split("."):
        node = node[int(key)] if isinstance(node, list) else node[key]
    return node


def test_readme_settings_table_matches_what_validate_prints(capsys):
    assert main(["validate", str(PAPER), "--json", "--recipe-only"]) == 0
    plan = json.loads(capsys.readouterr().out)
    for path, shown in _readme_settings_table():
        value = _lookup(plan, path)
        if isinstance(value, float):
            assert float(shown) == pytest.approx(value, rel=1e-3), path
        elif isinstance(value, list):
            assert [float(v) for v in re.findall(r"[\d.]+(?:e-?\d+)?", shown)] == pytest.approx(value, rel=1e-3), path
        else:
            assert shown == str(value), path


# -- 2. LoRA biases ----------------------------------------------------------
def _setup(tmp_path, overrides=()):
    tmp_path.mkdir(parents=True, exist_ok=True)
    run = Run(load_recipe(write_recipe(tmp_path, TINY), list(overrides)), load_plugins(), tmp_path / "out", show_progress=False)
    run.setup_accelerator()
    run.setup_models()
    return run


@pytest.mark.parametrize("bias", ["none", "lora_only", "all"])
def test_lora_bias_setting_chooses_the_trainable_biases(tmp_path, bias):
    run = _setup(tmp_path, [f"stage2.lora.bias={bias}"])
    configure_trainable(run.model, "stage2", run.recipe, run.accelerator.device)
    encoder = run.model.encoder
    trainable = {n for n, p in encoder.named_parameters() if p.requires_grad}
    biases = {n for n in trainable if n.endswith("bias")}
    assert {n for n in trainable - biases} and all("lora_" in n for n in trainable - biases)
    adapted = {n for n in biases if ".base_layer." in n}
    if bias == "none":
        assert not biases
    elif bias == "lora_only":
        # every adapted layer with a bias (q/k/v/out_proj, fc1, fc2 in 2 layers), nothing else
        assert biases == adapted and len(adapted) == 2 * 6
    else:
        assert adapted and biases - adapted  # layer norms too
        assert not any("text_model" in n for n in biases)
    plan = _plan(write_recipe(tmp_path, TINY, "plan.yaml"), [f"stage2.lora.bias={bias}"])
    counted = sum(p.numel() for n, p in encoder.named_parameters() if p.requires_grad)
    head = sum(p.numel() for p in run.model.denoiser.parameters()) + sum(p.numel() for p in run.model.conditioner.parameters())
    assert plan["stages"]["stage2"]["trainable"] == counted + head


@pytest.mark.slow
def test_lora_only_biases_train_and_are_merged_into_the_export(tmp_path):
    from transformers import CLIPModel

    recipe = write_recipe(tmp_path, {**TINY, "stage2": {"steps": 3, "learning_rate": 1e-2, "lora": {"bias": "lora_only"}}})
    summary = run_recipe(recipe, tmp_path / "out")
    final = load_file(tmp_path / "out" / "stage2" / "final" / "model.safetensors")
    key = "encoder.model.vision_model.encoder.layers.0.self_attn.q_proj.base_layer.bias"
    assert key in final
    torch.manual_seed(0)
    original = _setup(tmp_path / "fresh").model.encoder.model.vision_model.encoder.layers[0].self_attn.q_proj.bias
    assert not torch.allclose(final[key], original.detach())  # the bias trained
    exported = CLIPModel.from_pretrained(tmp_path / "out" / "export")
    torch.testing.assert_close(exported.vision_model.encoder.layers[0].self_attn.q_proj.bias.detach(), final[key])
    assert summary["export"]["max_abs_diff"] < 1e-4  # the export reproduces the trained encoder's outputs


# -- 6. precision ------------------------------------------------------------
def test_tokenizer_encodes_in_fp32_under_bf16_autocast(tmp_path, fresh_accelerator_state):
    run = _setup(tmp_path, ["train.mixed_precision=bf16"])
    assert run.accelerator.mixed_precision == "bf16"
    pipeline = run.model
    assert all(p.dtype == torch.float32 for p in pipeline.tokenizer.parameters())
    images = torch.rand(2, 3, 32, 32)
    torch.manual_seed(3)
    plain = pipeline.targets(images)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.manual_seed(3)
        mixed = pipeline.targets(images)
        # without the guard the same encode would run its convolutions in bf16
        torch.manual_seed(3)
        unguarded = pipeline.tokenizer.encode(images)
    assert mixed.dtype == torch.float32 and torch.equal(plain, mixed)
    assert not torch.equal(plain, unguarded)


@pytest.mark.slow
def test_export_dtype_bfloat16_rounds_the_weights_like_the_release(tmp_path):
    from transformers import AutoConfig

    recipe = write_recipe(tmp_path, {**TINY, "stage1": {"steps": 1}, "stage2": {"steps": 1}, "export": {"dtype": "bfloat16"}})
    summary = run_recipe(recipe, tmp_path / "out")
    export = tmp_path / "out" / "export"
    with safe_open(str(export / "model.safetensors"), "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys() if f.get_tensor(k).is_floating_point()}
    assert dtypes == {torch.bfloat16}
    assert str(AutoConfig.from_pretrained(export).dtype).endswith("bfloat16")
    assert summary["export"]["dtype"] == "bfloat16"
    assert summary["export"]["max_abs_diff"] < 1e-4  # the reload matches the rounded encoder exactly
    assert summary["export"]["rounding_max_abs_diff"] > 0  # and rounding did change the outputs
    assert json.loads((export / "genhancer.json").read_text())["dtype"] == "bfloat16"


# -- 7. local-token positions ------------------------------------------------
ENC = EncoderSpec(global_dim=24, local_dim=32, num_local_tokens=16, image_size=32)  # a 4 x 4 patch grid
COND = ConditionSpec(pooled_dim=24, token_dim=32)


def test_local_tokens_carry_their_patch_row_and_column():
    even = ClsConditioner(ClsLocalParams(fraction=0.25, selection="even"), ENC, COND)  # patches 0, 5, 10, 15
    out = even(EncoderOutput(torch.randn(2, 24), torch.randn(2, 16, 32)))
    positions = out.token_positions
    assert positions.shape == (2, 5, 2) and torch.isnan(positions[:, 0]).all()
    expected = torch.tensor([[0.125, 0.125], [0.375, 0.375], [0.625, 0.625], [0.875, 0.875]])  # (i + 0.5) / 4
    assert torch.equal(positions[0, 1:], expected) and torch.equal(positions[1, 1:], expected)
    off = ClsConditioner(ClsLocalParams(fraction=0.25, selection="even", local_positions=False), ENC, COND)
    assert off(EncoderOutput(torch.randn(2, 24), torch.randn(2, 16, 32))).token_positions is None


def _flux():
    params = RectifiedFlowParams(num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
                                 joint_attention_dim=32, pooled_projection_dim=24, axes_dims_rope=[4, 6, 6])
    torch.manual_seed(0)
    return RectifiedFlowDenoiser(params, TargetSpec("continuous", (16, 8, 8)))  # a 4 x 4 grid of packed tokens


def test_flux_txt_ids_put_local_tokens_on_the_image_token_grid():
    flux = _flux()
    positions = torch.tensor([[[float("nan")] * 2, [0.125, 0.125], [0.875, 0.375]]])
    ids = flux.condition_ids(Condition(pooled=torch.zeros(1, 24), tokens=torch.zeros(1, 3, 32), token_positions=positions))
    # the patch centred at 1/8 of the side lies on image token 0 of 4; 7/8 on token 3; 3/8 on token 1
    assert ids[0].tolist() == [[0, 0, 0], [0, 0, 0], [0, 3, 1]]
    image_ids = latent_position_ids(8, 8)
    assert image_ids[3 * 4 + 1].tolist() == [0, 3, 1]  # the same coordinates as that image token
    assert flux.condition_ids(Condition(pooled=torch.zeros(1, 24), tokens=torch.zeros(1, 3, 32))).abs().sum() == 0


def test_flux_positions_change_the_prediction_and_differing_rows_share_one_call():
    flux = _flux().eval()
    noisy, t = torch.randn(3, 16, 64), torch.rand(3)
    tokens, pooled = torch.randn(3, 3, 32), torch.randn(3, 24)
    nan = [float("nan")] * 2
    # differing picks; the third sample draws one patch twice (selection with replacement)
    positions = torch.tensor([[nan, [0.125, 0.125], [0.375, 0.875]], [nan, [0.875, 0.625], [0.625, 0.125]],
                              [nan, [0.375, 0.875], [0.375, 0.875]]])
    calls = []
    flux.transformer.register_forward_hook(lambda module, args, output: calls.append(1))
    with torch.no_grad():
        batched = flux.velocity(noisy, t, Condition(pooled, tokens, positions))
        assert len(calls) == 1  # one batched call over the union of the samples' token layouts
        single = [flux.velocity(noisy[i : i + 1], t[i : i + 1], Condition(pooled[i : i + 1], tokens[i : i + 1], positions[i : i + 1]))
                  for i in range(3)]
        unplaced = flux.velocity(noisy, t, Condition(pooled, tokens))
    torch.testing.assert_close(batched, torch.cat(single), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(batched, unplaced, atol=1e-4)
    # the condition tokens' gradients are those of the per-sample calls too (training goes through this path)
    grads = []
    for run_batched in (True, False):
        leaf = tokens.clone().requires_grad_()
        if run_batched:
            out = flux.velocity(noisy, t, Condition(pooled, leaf, positions))
        else:
            out = torch.cat([flux.velocity(noisy[i : i + 1], t[i : i + 1], Condition(pooled[i : i + 1], leaf[i : i + 1], positions[i : i + 1]))
                             for i in range(3)])
        out.square().sum().backward()
        grads.append(leaf.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-4, rtol=1e-4)


def test_merged_token_layout_keeps_every_token_once():
    ids = torch.tensor([[[0, 0, 0], [0, 1, 1], [0, 1, 1]], [[0, 0, 0], [0, 2, 3], [0, 1, 1]]], dtype=torch.float32)
    tokens = torch.arange(6, dtype=torch.float32).view(2, 3, 1)
    merged, shared, present = merge_token_layouts(tokens, ids)
    assert shared.shape[0] == 4 and present.sum(1).tolist() == [3, 3]  # (0,0,0), (0,1,1) twice, (0,2,3)
    assert sorted(merged[0][present[0]].flatten().tolist()) == [0, 1, 2] and merged[1][~present[1]].abs().sum() == 0


# -- 5. image processors -----------------------------------------------------
def test_image_processors_are_pinned_to_the_pil_backend(tmp_path, monkeypatch):
    from genhancer_hf_encoders.encoders import build_encoder
    from genhancer_hf_encoders.image_text import load_image_text_model
    from genhancer_hf_encoders.params import HFEncoderParams
    from genhancer_hf_encoders.processors import backend_of
    from transformers import AutoImageProcessor
    from transformers.image_processing_backends import PilBackend

    source = tmp_path / "clip"
    fresh = build_encoder("clip", HFEncoderParams(config=tiny_encoder_config(text=False)))
    assert isinstance(fresh.processor, PilBackend)
    fresh.save_pretrained(source)
    calls = []
    original = AutoImageProcessor.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        calls.append(kwargs.get("backend"))
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(AutoImageProcessor, "from_pretrained", classmethod(spy))
    loaded = build_encoder("clip", HFEncoderParams(source=str(source)))
    evaluated = load_image_text_model(str(source))
    assert calls == ["pil", "pil"]
    assert backend_of(loaded.processor) == backend_of(evaluated.processor) == "pil"
