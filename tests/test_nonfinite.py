"""A NaN or inf loss, gradient or weight never trains on silently, is never saved, and is never
exported as completed (train.nonfinite: stop, or skip for at most max_skipped_steps in a row)."""

import json

import pytest
import torch
from helpers import TINY, run_recipe, write_recipe

from genhancer_plugins import RunError, hookimpl

RECIPE = {**TINY, "train": {**TINY["train"], "checkpoint_every": 2}, "preview": {"images": 0}}


class Poison:
    """Sets one denoiser weight to NaN at the end of ``step`` of ``stage`` (what a diverging update does)."""

    def __init__(self, stage, step):
        self.stage, self.step = stage, step

    @hookimpl
    def genhancer_step_end(self, step):
        if step.stage == self.stage and step.step == self.step:
            with torch.no_grad():
                next(step.modules["denoiser"].parameters()).view(-1)[0] = float("nan")


def test_a_diverged_stage_stops_before_saving_and_names_the_last_good_checkpoint(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RunError) as stop:
        run_recipe(write_recipe(tmp_path, RECIPE), out, plugins=[(Poison("stage1", 3), "poison")])
    message = str(stop.value)
    assert "stage1: the loss, its gradient or the weights became non-finite (NaN or inf) between step 3 and step 4" in message
    assert f"the last good checkpoint is {out / 'stage1' / 'checkpoints' / 'checkpoint-2'}" in message and "--resume" in message
    assert not (out / "stage1" / "checkpoints" / "checkpoint-4").exists() and not (out / "stage1" / "final").exists()
    assert not (out / "export").exists()
    if (out / "run.json").exists():
        assert json.loads((out / "run.json").read_text())["completed"] is False


def test_skipping_never_saves_non_finite_weights(tmp_path):
    # skipping drops an update whose loss or gradient is not finite; weights that are not finite stop the stage anyway
    recipe = write_recipe(tmp_path, {**RECIPE, "train": {**RECIPE["train"], "nonfinite": "skip", "max_skipped_steps": 2}})
    with pytest.raises(RunError, match=r"became non-finite \(NaN or inf\) between step 1 and step 2"):
        run_recipe(recipe, tmp_path / "out", plugins=[(Poison("stage1", 1), "poison")])
    assert not (tmp_path / "out" / "stage1" / "checkpoints" / "checkpoint-2").exists()


def test_the_skip_policy_skips_only_the_non_finite_steps(tmp_path):
    from accelerate import Accelerator

    from genhancer_plugins.recipe.schema import TrainSettings
    from genhancer_plugins.training.nonfinite import NonFiniteGuard

    guard = NonFiniteGuard("stage1", TrainSettings(nonfinite="skip", max_skipped_steps=2), Accelerator(cpu=True), tmp_path)
    bad, good = torch.ones(()), torch.zeros(())
    assert [guard.skip_update(c, i) for i, c in enumerate([bad, good, bad, bad])] == [True, False, True, True]
    with pytest.raises(RunError, match="3 steps in a row"):
        guard.skip_update(bad, 4)


def test_an_encoder_with_non_finite_weights_is_never_exported(tmp_path):
    from genhancer_hf_encoders.encoders import build_encoder
    from genhancer_hf_encoders.params import HFEncoderParams
    from helpers import tiny_encoder_config

    from genhancer_plugins.training.export import export_encoder

    encoder = build_encoder("clip", HFEncoderParams(config=tiny_encoder_config()))
    with torch.no_grad():
        next(encoder.vision_parameters().__iter__()).view(-1)[0] = float("nan")
    with pytest.raises(RunError, match="outputs are not finite"):
        export_encoder(encoder, torch.rand(2, 3, 32, 32), tmp_path / "export", "float32", "x", "", lambda m: None)
    assert not (tmp_path / "export").exists()
