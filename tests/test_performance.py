"""Speed options and the bench command: each option trains the same model as the default."""

import json

import pytest
import torch
from helpers import ROOT, TINY, interrupted_then_resumed, run_recipe, write_recipe

from genhancer_plugins.cli import main

FAST = {**TINY, "stage1": {"steps": 3, "learning_rate": 1e-3}, "stage2": {"steps": 3, "learning_rate": 1e-3}, "preview": {"images": 0}}


def _losses(summary, stage):
    return [loss for _, loss in summary["stages"][stage]["losses"]]


def test_bench_dry_counts_real_size_flops_without_running(capsys):
    assert main(["bench", str(ROOT / "recipes" / "paper" / "clip_l14_224.yaml"), "--dry", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    rows = {r["stage"]: r for r in result["rows"]}
    assert result["device"].startswith("meta") and result["parameters"]["denoiser"] == 1_310_154_816
    # forward + backward of the 1.31 B denoiser over 196 image tokens + 1 condition token: about 6 x params x tokens
    assert 1.0e12 < rows["stage1"]["flops_per_image"] < 1.4e12
    assert rows["stage2"]["flops_per_image"] > rows["stage1"]["flops_per_image"]  # plus the encoder's backward
    assert rows["stage1"]["images_per_s"] is None  # nothing ran


def test_bench_on_cpu_prints_the_whole_table(tmp_path, capsys):
    assert main(["bench", str(ROOT / "recipes" / "tiny.yaml"), "--batch-sizes", "2,4", "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "images/s" in out and "tokenizer_encode" in out and "peak GB" in out and "MFU" in out
    assert main(["bench", str(ROOT / "recipes" / "tiny.yaml"), "--batch-sizes", "2", "--steps", "1", "--json",
                 "--stages", "stage2", "--peak-tflops", "1"]) == 0
    row = json.loads(capsys.readouterr().out)["rows"][0]
    assert row["stage"] == "stage2" and row["images_per_s"] > 0 and set(row["split_ms"]) >= {"backward", "optimizer"}
    assert row["mfu"] == pytest.approx(row["achieved_tflops"] / 1.0)
    assert main(["bench", str(ROOT / "recipes" / "tiny.yaml"), "--batch-sizes", "two"]) == 2


@pytest.mark.slow
def test_frozen_encoder_cast_once_trains_exactly_like_autocast(tmp_path, fresh_accelerator_state):
    bf16 = {**FAST, "train": {**TINY["train"], "mixed_precision": "bf16"}, "stage2": {"enabled": False}}
    plain = run_recipe(write_recipe(tmp_path, {**bf16, "train": {**bf16["train"], "cast_frozen": False}}, "a.yaml"), tmp_path / "a")
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
    from genhancer_plugins.recipe.schema import load_recipe
    from genhancer_plugins.registry.manager import load_plugins
    from genhancer_plugins.training.engine import Run

    manager = load_plugins()
    run = Run(load_recipe(write_recipe(tmp_path, bf16, "b.yaml"), manager=manager), manager, tmp_path / "b", show_progress=False)
    cast = run.execute()
    assert _losses(cast, "stage1") == _losses(plain, "stage1")  # autocast rounds the weights the same way, once per op
    fresh = Run(load_recipe(write_recipe(tmp_path, bf16, "c.yaml"), manager=manager), manager, tmp_path / "c", show_progress=False)
    fresh.setup_accelerator()
    fresh.setup_models()
    for (name, a), b in zip(run.model.encoder.named_parameters(), fresh.model.encoder.parameters()):
        assert a.dtype == torch.float32 and torch.equal(a, b), name  # fp32 weights back, bit for bit


@pytest.mark.slow
@pytest.mark.parametrize("option", ["train.fused_optimizer=true", "train.gradient_checkpointing=true", "data.num_workers=2"])
def test_speed_options_train_the_same_model(tmp_path, option):
    recipe = write_recipe(tmp_path, FAST)
    default = run_recipe(recipe, tmp_path / "default")
    changed = run_recipe(recipe, tmp_path / "changed", overrides=[option])
    for stage in ("stage1", "stage2"):
        assert _losses(changed, stage) == pytest.approx(_losses(default, stage), rel=1e-4, abs=1e-5), option


@pytest.mark.slow
def test_loss_sync_on_logged_steps_only(tmp_path):
    recipe = write_recipe(tmp_path, {**FAST, "stage1": {"steps": 5, "learning_rate": 1e-3}, "train": {**TINY["train"], "log_every": 2}})
    default = run_recipe(recipe, tmp_path / "a")
    logged = run_recipe(recipe, tmp_path / "b", overrides=["train.loss_sync=logged"])
    steps = [s for s, _ in logged["stages"]["stage1"]["losses"]]
    assert steps == [2, 4, 5]  # logged steps and the last one
    every = dict(default["stages"]["stage1"]["losses"])
    assert all(loss == pytest.approx(every[s], rel=1e-6) for s, loss in logged["stages"]["stage1"]["losses"])


@pytest.mark.slow
def test_compiled_encoder_and_denoiser_train_the_same_model(tmp_path):
    recipe = write_recipe(tmp_path, {**FAST, "stage1": {"steps": 2, "learning_rate": 1e-3}, "stage2": {"steps": 2, "learning_rate": 1e-3}})
    default = run_recipe(recipe, tmp_path / "a")
    compiled = run_recipe(recipe, tmp_path / "b", overrides=["train.compile=true"])
    # the same first step (same noise, same weights); later steps drift apart as fused kernels round differently
    # and Adam's first updates amplify that, so only the first step is compared exactly
    for stage in ("stage1", "stage2"):
        assert _losses(compiled, stage)[0] == pytest.approx(_losses(default, stage)[0], rel=1e-4)
    assert compiled["export"]["max_abs_diff"] < 1e-4  # names unchanged: the export loads as usual


@pytest.mark.parametrize("pin,workers,persistent,on_gpu,expected", [
    ("auto", 2, "auto", True, (True, True)),     # auto: pinned on a GPU...
    ("auto", 2, "auto", False, (False, True)),   # ...not on a CPU
    (True, 0, "auto", False, (True, False)),     # asked for: pinned anyway; no workers, nothing to keep
    (False, 2, False, True, (False, False)),
])
def test_loader_pins_memory_on_a_gpu_and_keeps_workers(pin, workers, persistent, on_gpu, expected):
    from genhancer_plugins.recipe.schema import DataSettings
    from genhancer_plugins.training.stage import loader_options

    data = DataSettings(name="synthetic", batch_size=4, num_workers=workers, pin_memory=pin, persistent_workers=persistent)
    options = loader_options(data, on_gpu=on_gpu)
    assert (options["pin_memory"], options["persistent_workers"]) == expected
    assert options["num_workers"] == workers and options["drop_last"]


def test_loader_workers_restart_each_epoch_for_a_dataset_that_takes_the_epoch():
    from genhancer_plugins.recipe.schema import DataSettings
    from genhancer_plugins.training.stage import loader_options
    from genhancer_plugins.util.errors import RunError

    # a kept worker's copy of the dataset would never see set_epoch: every epoch would repeat the first
    data = DataSettings(name="image_folder", batch_size=4, num_workers=2)
    assert loader_options(data, on_gpu=False, per_epoch=True)["persistent_workers"] is False
    assert loader_options(data, on_gpu=False)["persistent_workers"] is True
    with pytest.raises(RunError, match="persistent_workers: true .* 'image_folder' reshuffles"):
        loader_options(DataSettings(name="image_folder", batch_size=4, num_workers=2, persistent_workers=True), on_gpu=False, per_epoch=True)


CACHED = {**FAST, "data": {**TINY["data"], "params": {"num_images": 16}, "fixed_crops": 2}}


@pytest.mark.slow
def test_the_cache_trains_on_exactly_the_targets_of_the_same_crops_without_it(tmp_path):
    recipe = write_recipe(tmp_path, {**CACHED, "stage1": {"steps": 6, "learning_rate": 1e-3}})
    plain = run_recipe(recipe, tmp_path / "plain")
    cold = run_recipe(recipe, tmp_path / "cold", overrides=["cache.enabled=true", f"cache.directory={tmp_path / 'shared'}"])
    warm = run_recipe(recipe, tmp_path / "warm", overrides=["cache.enabled=true", f"cache.directory={tmp_path / 'shared'}"])
    for stage in ("stage1", "stage2"):
        assert _losses(cold, stage) == _losses(plain, stage)  # bit for bit: the cache only skips recomputation
        assert _losses(warm, stage) == _losses(plain, stage)
    # 16 images x 2 crops, batch 8: stage 1's 6 steps meet 48 crops, 32 of them distinct
    assert cold["cache"]["entries"] == {"targets": 32, "global_token": 32}
    assert warm["cache"]["misses"] == 0 and warm["cache"]["hits"] > 0
    assert plain["cache"] is None


@pytest.mark.slow
def test_resume_with_the_cache_is_exact(tmp_path):
    recipe = write_recipe(tmp_path, {**CACHED, "stage1": {"steps": 6, "learning_rate": 1e-3},
                                     "train": {**TINY["train"], "checkpoint_every": 2}, "cache": {"enabled": True}})
    whole = run_recipe(recipe, tmp_path / "whole")

    resumed = interrupted_then_resumed(recipe, tmp_path / "resumed")
    for stage in ("stage1", "stage2"):
        assert _losses(resumed, stage) == pytest.approx(_losses(whole, stage), rel=1e-6)
    assert resumed["cache"]["hits"] > 0  # the shards written at the checkpoint were read back


def test_the_cache_needs_fixed_crops(tmp_path, capsys):
    code = main(["validate", str(write_recipe(tmp_path, FAST)), "--set", "cache.enabled=true"])
    assert code == 2 and "cache.enabled needs data.fixed_crops" in capsys.readouterr().err


def test_bench_builds_the_encoder_a_pretrainer_would_produce(capsys):
    from genhancer_plugins.commands.plan import make_plan
    from genhancer_plugins.recipe.schema import load_recipe
    from genhancer_plugins.registry.manager import load_plugins

    recipe = ROOT / "recipes" / "experiments" / "main.yaml"
    assert main(["bench", str(recipe), "--dry", "--json"]) == 0
    benched = json.loads(capsys.readouterr().out)["parameters"]["encoder"]
    manager = load_plugins()
    assert benched == make_plan(load_recipe(recipe, manager=manager), manager, None)["parameters"]["encoder"] != 47_233  # not the tiny preset
