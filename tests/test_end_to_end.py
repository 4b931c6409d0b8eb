"""The tiny recipe end to end: stages, export, reload with plain transformers, resume."""

import json

import pytest
import torch
from helpers import TINY, run_recipe, tiny_encoder_config, write_recipe
from safetensors.torch import load_file

from genhancer_plugins import hookimpl
from genhancer_plugins.util.errors import RunError

pytestmark = pytest.mark.slow


class CaptureEncoder:
    """Records the in-training encoder's outputs at the end of stage 2 (LoRA not merged yet)."""

    def __init__(self, images):
        self.images = images
        self.outputs = None

    @hookimpl
    def genhancer_stage_end(self, stage):
        if stage.stage == "stage2":
            encoder = stage.modules["encoder"]
            encoder.eval()
            with torch.no_grad():
                self.outputs = encoder(self.images)
            encoder.train()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    recipe = write_recipe(tmp, TINY)
    torch.manual_seed(123)
    capture = CaptureEncoder(torch.rand(3, 3, 32, 32))
    summary = run_recipe(recipe, tmp / "out", plugins=[(capture, "capture")])
    return tmp / "out", summary, capture


def test_run_writes_the_documented_layout(finished_run):
    out, summary, _ = finished_run
    for path in ("run.json", "recipe.yaml", "stage1/final/model.safetensors", "stage2/final/model.safetensors",
                 "export/config.json", "export/model.safetensors", "export/preprocessor_config.json",
                 "export/README.md", "export/genhancer.json"):
        assert (out / path).is_file(), path
    saved = json.loads((out / "run.json").read_text())
    assert saved["completed"] and saved["stages"]["stage1"]["steps"] == 6 and saved["stages"]["stage2"]["steps"] == 4
    assert all(isinstance(saved["stages"][s]["final_loss"], float) for s in ("stage1", "stage2"))
    assert saved["versions"]["torch"] and saved["resolved_recipe"]["name"] == "test-tiny" and saved["wall_time_s"] > 0
    assert saved["export"]["max_abs_diff"] < 1e-4
    # stage 2 hands on LoRA weights, projector and denoiser; never the frozen base encoder
    final = load_file(out / "stage2/final/model.safetensors")
    enc = [k for k in final if k.startswith("encoder.")]
    assert enc and all("lora_" in k for k in enc)


def test_export_reloads_with_plain_transformers_and_matches_training(finished_run):
    from transformers import AutoImageProcessor, CLIPModel, CLIPVisionModel

    out, _, capture = finished_run
    export = out / "export"
    keys = load_file(export / "model.safetensors").keys()
    assert any(k.startswith("vision_model.") for k in keys) and any(k.startswith("text_model.") for k in keys)
    assert not any("lora" in k for k in keys)
    model = CLIPModel.from_pretrained(export).eval()
    processor = AutoImageProcessor.from_pretrained(export)
    images = capture.images
    mean = torch.tensor(processor.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(processor.image_std).view(1, 3, 1, 1)
    with torch.no_grad():
        vision = model.vision_model(pixel_values=(images - mean) / std)
        global_token = model.visual_projection(vision.pooler_output)
    assert (global_token - capture.outputs.global_token).abs().max() < 1e-4
    assert (vision.last_hidden_state[:, 1:] - capture.outputs.local_tokens).abs().max() < 1e-4
    # What LLaVA-1.5 does: a vision-only class on the same directory, no missing keys.
    tower, info = CLIPVisionModel.from_pretrained(export, output_loading_info=True)
    assert not info["missing_keys"]
    meta = json.loads((export / "genhancer.json").read_text())
    assert meta["encoder"]["has_text_tower"] and meta["text_tower_from"] is None
    assert "test-tiny" in (export / "README.md").read_text()


def test_the_export_changed_the_encoder(finished_run, tmp_path):
    """Stage 2 really trained the encoder: the export differs from the original weights."""
    out, _, _ = finished_run
    from genhancer_hf_encoders import _presets
    from genhancer_hf_encoders.encoders import build_encoder
    from genhancer_hf_encoders.params import HFEncoderParams

    torch.manual_seed(0)  # the run's seed: identical random initialisation
    original = build_encoder("clip", HFEncoderParams(**_presets()["clip"]["tiny"]))
    exported = load_file(out / "export/model.safetensors")
    base = original.hub_state_dict()
    assert torch.equal(base["text_model.embeddings.token_embedding.weight"], exported["text_model.embeddings.token_embedding.weight"])
    diff = (base["vision_model.encoder.layers.0.self_attn.q_proj.weight"] - exported["vision_model.encoder.layers.0.self_attn.q_proj.weight"]).abs().max()
    assert diff > 0


def test_refuses_non_empty_output_dir(finished_run, tmp_path):
    out, _, _ = finished_run
    recipe = write_recipe(tmp_path, TINY)
    with pytest.raises(RunError, match="not empty; pass --resume .* or --overwrite"):
        run_recipe(recipe, out)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(RunError, match="notes.txt"):
        run_recipe(recipe, tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


class StopAt:
    def __init__(self, stage, step):
        self.stage, self.step = stage, step

    @hookimpl
    def genhancer_step_end(self, step):
        if step.stage == self.stage and step.step == self.step:
            raise KeyboardInterrupt


@pytest.mark.parametrize("stop_stage,stop_step", [("stage1", 5), ("stage2", 3)])
def test_resume_after_a_crash_matches_an_uninterrupted_run(tmp_path, stop_stage, stop_step):
    data = {**TINY, "train": {**TINY["train"], "checkpoint_every": 2}}
    recipe = write_recipe(tmp_path, data)
    run_recipe(recipe, tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe, tmp_path / "crashed", plugins=[(StopAt(stop_stage, stop_step), "stop")])
    checkpoints = sorted(p.name for p in (tmp_path / "crashed" / stop_stage / "checkpoints").iterdir())
    assert checkpoints[-1] == f"checkpoint-{stop_step - 1}"  # the newest one before the crash
    assert not (tmp_path / "crashed" / stop_stage / "final").exists()
    summary = run_recipe(recipe, tmp_path / "crashed", resume=True)
    assert summary["stages"][stop_stage]["resumed_from"].endswith(f"checkpoint-{stop_step - 1}")
    a = load_file(tmp_path / "straight/stage2/final/model.safetensors")
    b = load_file(tmp_path / "crashed/stage2/final/model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key
    ea = load_file(tmp_path / "straight/export/model.safetensors")
    eb = load_file(tmp_path / "crashed/export/model.safetensors")
    assert max((ea[k] - eb[k]).abs().max().item() for k in ea) < 1e-6


def test_stage2_from_a_given_stage1_output(finished_run, tmp_path):
    out, _, _ = finished_run
    recipe = write_recipe(tmp_path, {**TINY, "stage1": {"enabled": False}, "stage2": {**TINY["stage2"], "init_from": str(out)}})
    summary = run_recipe(recipe, tmp_path / "s2")
    assert "stage1" not in summary["stages"] and summary["stages"]["stage2"]["steps"] == 4
    # the first stage-2 loss starts where stage 1 left the denoiser, not from scratch
    fresh = write_recipe(tmp_path, {**TINY, "stage1": {"enabled": False}}, "fresh.yaml")
    scratch = run_recipe(fresh, tmp_path / "scratch")
    assert summary["stages"]["stage2"]["losses"][0][1] < scratch["stages"]["stage2"]["losses"][0][1]


def test_vision_only_source_exports_hub_layout(tmp_path):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    vision = CLIPVisionModel(CLIPVisionConfig(**tiny_encoder_config()["vision"]))
    vision.save_pretrained(tmp_path / "src")
    from transformers import CLIPImageProcessor
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(tmp_path / "src")
    recipe = write_recipe(tmp_path, {**TINY, "encoder": {"name": "clip", "preset": "tiny", "params": {"source": str(tmp_path / "src")}}})
    run_recipe(recipe, tmp_path / "out")
    keys = load_file(tmp_path / "out/export/model.safetensors").keys()
    assert keys and all(k.startswith("vision_model.") for k in keys)
    tower, info = CLIPVisionModel.from_pretrained(tmp_path / "out/export", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    meta = json.loads((tmp_path / "out/export/genhancer.json").read_text())
    assert meta["text_tower_from"] == str(tmp_path / "src")


def test_metrics_go_to_tensorboard_when_asked(tmp_path):
    recipe = write_recipe(tmp_path, TINY)
    run_recipe(recipe, tmp_path / "out", overrides=["train.report_to=[tensorboard]", "train.log_every=1"])
    events = list((tmp_path / "out" / "logs").rglob("events.out.tfevents.*"))
    assert events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    assert len(acc.Scalars("stage1/loss")) == 6 and len(acc.Scalars("stage2/lr")) == 4


def test_gradient_accumulation_counts_optimisation_steps(tmp_path):
    recipe = write_recipe(tmp_path, {**TINY, "train": {**TINY["train"], "gradient_accumulation_steps": 2},
                                     "stage1": {"steps": 3}, "stage2": {"steps": 2}})
    steps = []

    class Count:
        @hookimpl
        def genhancer_step_end(self, step):
            steps.append((step.stage, step.step))

    summary = run_recipe(recipe, tmp_path / "out", plugins=[(Count(), "count")])
    assert steps == [("stage1", 1), ("stage1", 2), ("stage1", 3), ("stage2", 1), ("stage2", 2)]
    assert summary["stages"]["stage1"]["steps"] == 3
