"""Stage 2's optional global-semantics anchor: off is the paper's stage 2 bit for bit;
on, the loss gains exactly weight * d(g, g0), with its gradient."""

import pytest
import torch
from helpers import TINY, run_recipe, write_recipe

from genhancer_plugins.recipe.schema import load_recipe
from genhancer_plugins.registry.manager import load_plugins
from genhancer_plugins.training.anchor import anchor_distance, anchor_reference, make_anchor
from genhancer_plugins.training.engine import Run
from genhancer_plugins.training.stage import configure_trainable

FAST = {**TINY, "stage1": {"steps": 2, "learning_rate": 1e-3}, "stage2": {"steps": 3, "learning_rate": 1e-3}, "preview": {"images": 0}}


@pytest.mark.slow
def test_anchor_off_is_the_paper_stage_2_bit_for_bit(tmp_path):
    recipe = write_recipe(tmp_path, FAST)
    plain = run_recipe(recipe, tmp_path / "a")
    zero = run_recipe(recipe, tmp_path / "b", overrides=["stage2.anchor.weight=0", "stage2.anchor.distance=cosine"])
    assert zero["stages"]["stage2"]["losses"] == plain["stages"]["stage2"]["losses"]


def _stage2_model(tmp_path, overrides):
    tmp_path.mkdir(parents=True, exist_ok=True)
    manager = load_plugins()
    run = Run(load_recipe(write_recipe(tmp_path, FAST), overrides, manager), manager, tmp_path / "out", show_progress=False)
    run.setup_accelerator()
    run.setup_models()
    original = anchor_reference(run.model.encoder, run.recipe, "stage2")
    configure_trainable(run.model, "stage2", run.recipe, run.accelerator.device)
    with torch.no_grad():  # a trained-looking LoRA, so g differs from g0
        for name, param in run.model.encoder.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    return run, make_anchor(run.model.encoder, run.recipe.stage2.anchor, original)


@pytest.mark.parametrize("tuning", [["stage2.lora.bias=none"], ["stage2.lora.bias=lora_only"], ["stage2.encoder_tuning=full"]])
@pytest.mark.parametrize("distance", ["mse", "cosine"])
def test_anchor_adds_weight_times_distance_and_its_gradient(tmp_path, tuning, distance):
    weight = 0.7
    run, anchor = _stage2_model(tmp_path, [*tuning, f"stage2.anchor.weight={weight}", f"stage2.anchor.distance={distance}"])
    model = run.model.train()
    model.encoder.eval()  # no dropout: the two forwards below see the same encoder
    images = torch.rand(4, 3, 32, 32)
    if "stage2.encoder_tuning=full" in tuning:
        with torch.no_grad():
            for param in model.encoder.vision_parameters():
                param.add_(0.05 * torch.randn_like(param))  # a fully fine-tuned encoder: g0 must come from the frozen copy
    trained = [p for p in model.parameters() if p.requires_grad]
    model.anchor = None
    torch.manual_seed(0)
    plain = model(images)
    plain_grads = torch.autograd.grad(plain, trained, allow_unused=True)
    model.anchor = anchor
    torch.manual_seed(0)
    anchored = model(images)
    anchored_grads = torch.autograd.grad(anchored, trained, allow_unused=True)
    # the same term by hand: g from the enhanced encoder, g0 from the original (a fresh run's encoder)
    (tmp_path / "fresh").mkdir()
    manager = load_plugins()
    fresh = Run(load_recipe(write_recipe(tmp_path / "fresh", FAST), [], manager), manager, tmp_path / "fresh" / "out", show_progress=False)
    fresh.setup_accelerator()
    fresh.setup_models()  # the untouched encoder, as the run built it
    with torch.no_grad():
        g0 = fresh.model.encoder.eval()(images).global_token
    g = model.encoder(images).global_token
    term = weight * anchor_distance(g, g0, distance)
    assert float(anchored - plain) == pytest.approx(float(term), rel=1e-4, abs=1e-6) and float(term) > 0
    term_grads = torch.autograd.grad(term, trained, allow_unused=True)
    for a, p, t in zip(anchored_grads, plain_grads, term_grads):
        if t is None:
            continue
        torch.testing.assert_close(a - (p if p is not None else 0), t, rtol=1e-3, atol=1e-6)


@pytest.mark.slow
def test_the_anchor_and_its_frozen_copy_go_once_stage_2_ends(tmp_path):
    # lora_only trains biases, so the original needs a frozen copy of the encoder: it must not outlive training,
    # whether stage 2 trained now or had finished before (a resumed, finished run)
    manager = load_plugins()
    recipe = load_recipe(write_recipe(tmp_path, FAST), ["stage2.lora.bias=lora_only", "stage2.anchor.weight=1.0"], manager)
    for resume in (False, True):
        run = Run(recipe, manager, tmp_path / "out", resume=resume, show_progress=False)
        run.execute()
        assert run.results["stage2"].already_finished is resume and run.model.anchor is None
