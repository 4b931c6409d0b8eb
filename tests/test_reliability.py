"""A user's mistakes and a machine's faults: each ends in one clear line (exit 2),
never a hang, a traceback or a clobbered run."""

import io
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from helpers import ROOT, TINY, run_recipe, tiny_encoder_config, write_recipe
from PIL import Image

from genhancer_plugins.cli import main
from genhancer_plugins.util.errors import RunError

FAST = {**TINY, "stage1": {"steps": 2, "learning_rate": 1e-3}, "stage2": {"steps": 2, "learning_rate": 1e-3}, "preview": {"images": 0}}


def jpegs(folder, count, size=(40, 30)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
    return folder


def cli(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- severe ----------------------------------------------------------------------
def test_fewer_images_than_a_batch_is_refused_at_once(tmp_path, capsys):
    recipe = write_recipe(tmp_path, {**FAST, "data": {"name": "image_folder", "params": {"root": str(jpegs(tmp_path / "four", 4))},
                                                      "batch_size": 16}})
    start = time.perf_counter()
    code, _, err = cli(capsys, "run", recipe, "-o", tmp_path / "out", "--no-progress")
    assert code == 2 and "4 image(s) make no full batch of data.batch_size 16" in err and "at most 4" in err
    assert time.perf_counter() - start < 60


def test_a_start_up_failure_leaves_nothing_behind(tmp_path, capsys):
    bad = write_recipe(tmp_path, {**FAST, "data": {"name": "image_folder", "params": {"root": str(tmp_path / "nowhere")}}})
    code, _, err = cli(capsys, "run", bad, "-o", tmp_path / "out", "--no-progress")
    assert code == 2 and "data (image_folder): data.params.root" in err and "nowhere does not exist" in err
    assert not (tmp_path / "out").exists()  # the corrected rerun needs no --overwrite
    good = write_recipe(tmp_path, {**FAST, "data": {"name": "image_folder", "params": {"root": str(jpegs(tmp_path / "imgs", 8))},
                                                    "batch_size": 4}}, "good.yaml")
    assert cli(capsys, "run", good, "-o", tmp_path / "out", "--no-progress")[0] == 0


@pytest.mark.slow
def test_a_second_run_into_a_busy_directory_is_refused_naming_the_first(tmp_path, capsys):
    recipe = write_recipe(tmp_path, {**FAST, "stage1": {"steps": 400, "learning_rate": 1e-3}})
    out = tmp_path / "out"
    first = subprocess.Popen([sys.executable, "-m", "genhancer_plugins.cli", "run", str(recipe), "-o", str(out), "--no-progress"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(600):
            if (out / ".genhancer.lock").is_file() and (out / "recipe.yaml").is_file():
                break
            time.sleep(0.1)
        for flag in ("--overwrite", "--resume"):
            code, _, err = cli(capsys, "run", recipe, "-o", out, "--no-progress", flag)
            assert code == 2 and f"is in use by another run (pid {first.pid} on " in err
    finally:
        output, _ = first.communicate(timeout=600)
    assert first.returncode == 0, output
    summary = json.loads((out / "run.json").read_text())
    assert summary["completed"] and summary["stages"]["stage1"]["steps"] == 400
    assert not (out / ".genhancer.lock").exists()


def test_a_stale_lock_is_taken_over(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / ".genhancer.lock").write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename, "started": "earlier"}))
    code, stdout, _ = cli(capsys, "run", write_recipe(tmp_path, FAST), "-o", out, "--no-progress")
    assert code == 0 and f"taking over the stale lock of pid {dead.pid}" in stdout


@pytest.mark.slow
def test_resume_refuses_model_changes_extends_finished_stages_and_keeps_every_recipe(tmp_path, capsys):
    recipe = write_recipe(tmp_path, FAST)
    out = tmp_path / "out"
    assert cli(capsys, "run", recipe, "-o", out, "--no-progress")[0] == 0
    original = (out / "recipe.yaml").read_text()
    code, _, err = cli(capsys, "run", recipe, "-o", out, "--resume", "--set", "train.seed=5", "--set", "denoiser.params.num_layers=2")
    assert code == 2 and "train.seed" in err and "denoiser.params.num_layers" in err and "shapes the model or the data" in err
    code, _, err = cli(capsys, "run", recipe, "-o", out, "--resume", "--set", "stage1.steps=4")
    assert code == 2 and "stage1 would train longer, but stage2 already started" in err
    code, stdout, _ = cli(capsys, "run", recipe, "-o", out, "--no-progress", "--resume", "--set", "stage2.steps=5")
    assert code == 0 and "stage2.steps: 2 -> 5" in stdout
    summary = json.loads((out / "run.json").read_text())
    assert summary["stages"]["stage2"]["steps"] == 5 and summary["stages"]["stage1"]["already_finished"]
    assert [s for s, _ in summary["stages"]["stage2"]["losses"]] == [1, 2, 3, 4, 5]
    assert summary["stages"]["stage2"]["wall_time_s"] > 0
    assert (out / "recipe.yaml").read_text() == original  # never overwritten
    assert "steps: 5" in (out / "recipe-history" / "001.yaml").read_text()
    assert summary["recipe_changes_on_resume"] == ["stage2.steps: 2 -> 5"]


@pytest.mark.slow
def test_a_vision_only_tower_with_a_projection_exports_and_a_failed_export_check_keeps_the_weights(tmp_path, monkeypatch, capsys):
    from genhancer_hf_encoders.encoders import HFVisionEncoder

    recipe = write_recipe(tmp_path, {**FAST, "encoder": {"name": "clip", "preset": "tiny", "params": {"config": {"text": None, "projection_dim": 24}}}})
    out = tmp_path / "out"
    monkeypatch.setattr(HFVisionEncoder, "reload", lambda self, directory: (_ for _ in ()).throw(RunError("simulated export failure")))
    with pytest.raises(RunError, match="simulated export failure"):
        run_recipe(recipe, out)
    assert (out / "stage2" / "final" / "model.safetensors").is_file()
    monkeypatch.undo()
    summary = run_recipe(recipe, out, resume=True)  # retries only the export
    assert summary["stages"]["stage1"]["already_finished"] and summary["stages"]["stage2"]["already_finished"]
    assert summary["export"]["max_abs_diff"] < 1e-4
    config = json.loads((out / "export" / "config.json").read_text())
    assert config["architectures"] == ["CLIPVisionModelWithProjection"] and config["projection_dim"] == 24
    from transformers import CLIPVisionModelWithProjection

    _, info = CLIPVisionModelWithProjection.from_pretrained(out / "export", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]  # the projection was saved and read back


def test_yes_no_on_off_stay_the_strings_a_field_expects(tmp_path, capsys):
    recipe = write_recipe(tmp_path, TINY)
    code, stdout, _ = cli(capsys, "validate", recipe, "--set", "train.mixed_precision=no")
    assert code == 0 and "precision no" in stdout
    (tmp_path / "r.yaml").write_text((tmp_path / "recipe.yaml").read_text().replace("mixed_precision: 'no'", "mixed_precision: no")
                                     + "export:\n  enabled: yes\n")
    assert cli(capsys, "validate", tmp_path / "r.yaml")[0] == 0


# -- one line instead of a traceback -----------------------------------------------
def test_the_table_of_mistakes_each_gets_one_line(tmp_path, capsys):
    from genhancer_evaluators.synthetic_mmvp import write_synthetic_mmvp

    recipe = write_recipe(tmp_path, TINY)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    unreadable = tmp_path / "junk"
    unreadable.mkdir()
    for i in range(3):
        (unreadable / f"{i}.jpg").write_bytes(b"not an image")
    junk_recipe = write_recipe(tmp_path, {**FAST, "data": {"name": "image_folder", "params": {"root": str(unreadable)}, "batch_size": 1}}, "junk.yaml")
    bench = write_synthetic_mmvp(tmp_path / "bench", pairs_per_pattern=1)
    vision_only = tmp_path / "vision"
    from genhancer_hf_encoders.encoders import build_encoder
    from genhancer_hf_encoders.params import HFEncoderParams

    build_encoder("clip", HFEncoderParams(config=tiny_encoder_config(text=False))).save_pretrained(vision_only)
    mistakes = [
        (["validate", recipe, "--set", "denoiser.name=perceiver"], "denoiser 'perceiver' does not fit tokenizer 'vae'"),
        (["run", recipe, "-o", tmp_path / "x", "--set", "denoiser.name=perceiver"], "denoiser 'perceiver' does not fit tokenizer 'vae'"),
        (["validate", binary], "not a text file"),
        (["validate", recipe, "--set", "nosuch.deep.path=1"], "--set: nosuch: unknown field"),
        (["run", junk_recipe, "-o", tmp_path / "y", "--no-progress"], "no readable image among the 3 file(s)"),
        (["eval", "mmvp_vlm", "-p", f"root={bench}", "-m", tmp_path / "missing", "-o", tmp_path / "e1"], "cannot load"),
        (["eval", "mmvp_vlm", "-p", f"root={bench}", "-m", "openai/clip-vit-large-patch14", "-o", tmp_path / "e2"], "cannot load openai/clip-vit-large-patch14"),
        (["eval", "mmvp_vlm", "-p", f"root={bench}", "-m", vision_only, "-o", tmp_path / "e3"], "has no text tower: pass --text-from"),
        (["reconstruct", "--run", tmp_path / "nothing", "--images", binary], "not a readable image"),
        (["run", recipe, "-o", binary / "out"], "binary.yaml is not a directory"),
    ]
    for args, message in mistakes:
        code, _, err = cli(capsys, *args)
        assert code == 2, (args, err)
        assert message in err, (args, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) <= 3, err


def test_mmvp_files_with_a_missing_field_a_blank_line_or_a_corrupt_image_name_the_line_or_file(tmp_path):
    from genhancer_evaluators.mmvp import BenchmarkError, MMVPEvaluator, load_benchmark
    from genhancer_evaluators.params import MMVPParams
    from genhancer_evaluators.synthetic_mmvp import write_synthetic_mmvp

    bench = write_synthetic_mmvp(tmp_path / "bench", pairs_per_pattern=1)
    questions = bench / "Questions.csv"
    lines = questions.read_text().splitlines()
    questions.write_text("\n".join(lines[:3] + [""] + lines[3:]) + "\n")  # a blank line: skipped, numbers kept
    assert len(load_benchmark(bench)) == 9
    questions.write_text("\n".join(lines[:4] + [lines[4].rsplit(",", 1)[0]] + lines[5:]) + "\n")
    with pytest.raises(BenchmarkError, match=r"line 5: no Statement"):
        load_benchmark(bench)
    questions.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(BenchmarkError, match=f"line {len(lines) - 1} has no partner"):
        load_benchmark(bench)
    questions.write_text("\n".join(lines) + "\n")
    image = next((bench / "MLLM_VLM Images").rglob("*.jpg"))
    image.write_bytes(b"\xff\xd8 truncated")

    class Blind:
        name, has_text = "blind", True

        def image_embeddings(self, images, normalize=True):
            return torch.ones(len(images), 2)

        def text_embeddings(self, texts):
            return torch.ones(len(texts), 2)

        def logits(self, i, t):
            return t @ i.T

    from genhancer_plugins.evaluation.runner import evaluate_one

    with pytest.raises(RunError, match=f"{image.name}: not a readable image"):
        evaluate_one(MMVPEvaluator(MMVPParams(root=str(bench))), Blind(), "blind", tmp_path / "out")


def test_disk_full_and_unwritable_locations_are_one_line(tmp_path, capsys, monkeypatch):
    import safetensors.torch

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(args[1]))

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    code, _, err = cli(capsys, "run", write_recipe(tmp_path, FAST), "-o", tmp_path / "out", "--no-progress")
    assert code == 2 and "No space left on device" in err and "Traceback" not in err


@pytest.mark.slow
def test_a_torn_checkpoint_falls_back_to_the_one_before(tmp_path, capsys):
    recipe = write_recipe(tmp_path, {**FAST, "stage1": {"steps": 4, "learning_rate": 1e-3}, "train": {**TINY["train"], "checkpoint_every": 1,
                                                                                                        "keep_checkpoints": 3}})
    out = tmp_path / "out"
    run_recipe(recipe, out)
    import shutil

    shutil.rmtree(out / "stage1" / "final")
    (out / "stage1" / "checkpoints" / "checkpoint-4" / "state.json").write_text('{"step": 4, "epo')  # killed mid-write
    code, stdout, _ = cli(capsys, "run", recipe, "-o", out, "--no-progress", "--resume")
    assert code == 0 and "checkpoint-4 is unreadable" in stdout and "resuming from" in stdout and "checkpoint-3" in stdout


# -- misleading output ------------------------------------------------------------
def test_report_shows_small_learning_rates(tmp_path):
    from genhancer_plugins.util.tables import format_value, markdown_table

    assert format_value(1e-3) == "1.00e-03" and format_value(1e-4) == "1.00e-04" and format_value(31.25) == "31.25"
    assert "| 1.00e-04 |" in markdown_table(["lr"], [[1e-4]])


def test_eval_labels_every_model_uniquely():
    from genhancer_plugins.evaluation.runner import model_labels

    assert model_labels(["runs/a/export", "runs/b/export"]) == ["a_export", "b_export"]
    assert model_labels(["runs/a/export", "openai/clip"]) == ["export", "clip"]


@pytest.mark.slow
def test_no_progress_keeps_the_plain_step_lines_and_eval_refuses_to_overwrite(tmp_path, capsys):
    recipe = write_recipe(tmp_path, {**FAST, "train": {**TINY["train"], "log_every": 1}})
    code, stdout, _ = cli(capsys, "run", recipe, "-o", tmp_path / "out", "--no-progress")
    assert code == 0 and "stage1 step 1/2 loss" in stdout and "stage2 step 2/2 loss" in stdout
    from genhancer_evaluators.synthetic_mmvp import write_synthetic_mmvp

    bench = write_synthetic_mmvp(tmp_path / "bench", pairs_per_pattern=1)
    args = ["eval", "mmvp_vlm", "-p", f"root={bench}", "-m", tmp_path / "out" / "export", "-o", tmp_path / "e"]
    assert cli(capsys, *args)[0] == 0
    code, _, err = cli(capsys, *args)
    assert code == 2 and "holds earlier results; pass --overwrite" in err
    assert cli(capsys, *args, "--overwrite")[0] == 0


@pytest.mark.slow
def test_exported_and_checkpoint_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        run_recipe(write_recipe(tmp_path, {**FAST, "train": {**TINY["train"], "checkpoint_every": 1}}), tmp_path / "out")
    finally:
        os.umask(old)
    for path in [tmp_path / "out" / "export" / "model.safetensors", tmp_path / "out" / "run.json",
                 tmp_path / "out" / "stage2" / "final" / "model.safetensors", tmp_path / "out" / "stage2" / "final" / "denoiser" / "config.json",
                 *(tmp_path / "out" / "stage1" / "checkpoints").rglob("*.safetensors")]:
        assert oct(path.stat().st_mode & 0o777) == "0o644", path


def test_huge_images_decode_at_reduced_size_or_are_skipped(tmp_path):
    from genhancer_datasets.common import load_image
    from genhancer_datasets.image_folder import ImageFolder
    from genhancer_datasets.params import ImageFolderParams

    big = io.BytesIO()
    Image.new("RGB", (4000, 3000), (10, 200, 30)).save(big, format="JPEG")
    decoded = load_image(big.getvalue(), min_side=64)
    assert decoded.size == (500, 375)  # 1/8 scale: both sides still >= 64
    Image.new("RGB", (3000, 3000)).save(tmp_path / "0.png")
    Image.new("RGB", (60, 60)).save(tmp_path / "1.png")
    folder = ImageFolder(ImageFolderParams(root=str(tmp_path), max_pixels=1_000_000), image_size=32)
    item = folder[0]
    assert item["skipped"] == ["0.png (ValueError: 3000x3000 pixels, above data.params.max_pixels (1000000))"] and item["key"] == "1.png"


def test_an_image_refused_by_pils_decompression_bomb_guard_is_skipped_with_the_reason(tmp_path, monkeypatch):
    from genhancer_datasets.image_folder import ImageFolder
    from genhancer_datasets.params import ImageFolderParams

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # a 20000x20000 image against the real limit, at a test's size
    Image.new("RGB", (100, 100)).save(tmp_path / "0.png")
    folder = ImageFolder(ImageFolderParams(root=str(tmp_path), max_pixels=None), image_size=32)
    with pytest.raises(ValueError, match=r"no readable image .*0.png \(DecompressionBombError: Image size \(10000 pixels\) exceeds limit"):
        folder[0]


def test_list_file_entries_stay_below_the_list_files_folder(tmp_path):
    from genhancer_datasets.image_folder import ImageFolder
    from genhancer_datasets.params import ImageFolderParams

    jpegs(tmp_path / "data" / "imgs", 2)
    jpegs(tmp_path / "elsewhere", 1)
    listing = tmp_path / "data" / "list.jsonl"
    listing.write_text('{"image": "imgs/0.jpg"}\n{"image": "../elsewhere/0.jpg"}\n')
    with pytest.raises(ValueError, match=r"entry '../elsewhere/0.jpg' lies outside .*allow_outside_paths"):
        ImageFolder(ImageFolderParams(list_file=str(listing)), image_size=32)
    assert len(ImageFolder(ImageFolderParams(list_file=str(listing), allow_outside_paths=True), image_size=32)) == 2


# -- the first hour ------------------------------------------------------------------
def test_validate_names_missing_data_and_shows_remote_code(tmp_path, capsys):
    code, stdout, _ = cli(capsys, "validate", ROOT / "recipes" / "paper" / "clip_l14_224.yaml", "--set", "encoder.params.trust_remote_code=true")
    assert code == 1 and "  data (image_folder): data.params.root data/cc3m/images does not exist" in stdout
    assert "trust_remote_code: true (runs Python code shipped with the checkpoint)" in stdout


def test_the_probe_table_has_a_legend_and_flags_a_global_semantics_drop():
    from genhancer_miniature.params import ProbeParams
    from genhancer_miniature.probes import ShapesProbeEvaluator

    from genhancer_plugins.evaluation.runner import EvalResult

    evaluator = ShapesProbeEvaluator(ProbeParams())
    results = {"original": EvalResult({"probe_colour": 40.0, "probe_shape": 99.0, "coarse_zero_shot": 99.5}, "probe_colour"),
               "enhanced": EvalResult({"probe_colour": 55.0, "probe_shape": 98.5, "coarse_zero_shot": 64.0}, "probe_colour")}
    legend = evaluator.legend(results, "original")
    assert "coarse_zero_shot" in legend and "fine-grained: colour" in legend
    assert "WARNING: coarse_zero_shot fell by 35.5 points" in legend and "probe_shape fell" not in legend


@pytest.mark.slow
def test_pretraining_resumes_from_its_checkpoint_to_the_same_weights(tmp_path, monkeypatch):
    import genhancer_miniature.components as components
    from genhancer_miniature.components import ShapesClassifier
    from genhancer_miniature.params import ShapesClassifierParams
    from safetensors.torch import load_file

    params = ShapesClassifierParams(image_size=32, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, steps=200, batch_size=8)
    whole = ShapesClassifier(params).encoder_params(tmp_path / "a", lambda m: None)
    saves = []
    original = components.save_checkpoint

    def killed_after_the_first_checkpoint(*args, **kwargs):
        original(*args, **kwargs)
        saves.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr(components, "save_checkpoint", killed_after_the_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        ShapesClassifier(params).encoder_params(tmp_path / "b", lambda m: None)
    monkeypatch.undo()
    lines = []
    resumed = ShapesClassifier(params).encoder_params(tmp_path / "b", lines.append)
    assert any("resuming the shapes classifier at step 100/200" in line for line in lines)
    assert any("min left" in line for line in lines)
    a, b = load_file(f"{whole['source']}/model.safetensors"), load_file(f"{resumed['source']}/model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_reconstruct_never_retrains_a_missing_pretrained_encoder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GENHANCER_CACHE", str(tmp_path / "empty-cache"))
    run = tmp_path / "run"
    (run / "stage1" / "final").mkdir(parents=True)
    (run / "stage1" / "final" / "state.json").write_text("{}")
    (run / "recipe.yaml").write_text((ROOT / "recipes" / "experiments" / "main.yaml").read_text())
    Image.new("RGB", (64, 64)).save(tmp_path / "x.png")
    start = time.perf_counter()
    code, _, err = cli(capsys, "reconstruct", "--run", run, "--images", tmp_path / "x.png")
    assert code == 2 and "is not in the cache" in err and time.perf_counter() - start < 30
