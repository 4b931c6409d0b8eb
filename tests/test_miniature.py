"""The miniature world's machinery (not its science: that is docs/mini-replication.md)."""

import json
import sys
from dataclasses import asdict

import numpy as np
import pytest
import torch
from genhancer_miniature.components import PaletteTokenizer, PixelTokenizer, ShapesClassifier, ShapesDataset
from genhancer_miniature.params import PaletteParams, PixelParams, ProbeParams, ShapesClassifierParams, ShapesDataParams
from genhancer_miniature.probes import ShapesProbeEvaluator
from genhancer_miniature.world import ATTRIBUTES, FINE, caption, pairs, render, scene_at
from helpers import ROOT


def test_scenes_are_deterministic_and_pairs_differ_in_exactly_one_attribute():
    assert scene_at(3, 17) == scene_at(3, 17) and scene_at(3, 17) != scene_at(3, 18)
    assert np.array_equal(np.asarray(render(scene_at(3, 17))), np.asarray(render(scene_at(3, 17))))
    for attribute in ATTRIBUTES:
        for a, b in pairs(attribute, 20, seed=5):
            diff = {k for k, v in asdict(a).items() if asdict(b)[k] != v}
            assert diff == {attribute}
            assert not np.array_equal(np.asarray(render(a)), np.asarray(render(b)))
    assert "facing" in caption(scene_at(0, 0)) and set(FINE) == set(ATTRIBUTES) - {"shape"}


def test_attributes_vary_independently():
    scenes = [scene_at(11, i) for i in range(3000)]
    colour = np.array([s.colour for s in scenes])
    shape = np.array([s.shape for s in scenes])
    assert abs(np.corrcoef(colour, shape)[0, 1]) < 0.05
    counts = np.bincount(shape, minlength=len(ATTRIBUTES["shape"]))
    assert len(counts) == len(ATTRIBUTES["shape"]) and counts.min() > 600  # every shape, about equally often


def test_dataset_renders_at_the_encoder_size_with_labels():
    item = ShapesDataset(ShapesDataParams(num_images=10), image_size=32, seed=1)[3]
    assert item["pixel_values"].shape == (3, 32, 32) and set(item["labels"]) == set(ATTRIBUTES)


def test_tokenizers_round_trip():
    images = torch.rand(2, 3, 16, 16)
    pixels = PixelTokenizer(PixelParams(factor=4))
    assert pixels.target_spec(16).shape == (48, 4, 4)
    assert torch.allclose(pixels.decode(pixels.encode(images)), images, atol=1e-6)
    palette = PaletteTokenizer(PaletteParams(factor=4, levels=4))
    spec = palette.target_spec(16)
    assert spec.kind == "discrete" and spec.shape == (16,) and spec.vocab_size == 64
    flat = torch.zeros(1, 3, 16, 16)
    flat[:, 0] = 1.0  # pure red
    codes = palette.encode(flat)
    assert codes.unique().numel() == 1 and torch.allclose(palette.decode(codes), flat)


class OracleModel:
    """Its global token is the scene's labels, one-hot: every probe must be perfect."""

    name = "oracle"

    def image_embeddings(self, images, normalize=True):
        from genhancer_miniature.world import ATTRIBUTES as A

        feats = []
        for image in images:
            scene = self.lookup[np.asarray(image).tobytes()]
            feats.append(torch.cat([torch.nn.functional.one_hot(torch.tensor(getattr(scene, a)), len(v)).float() for a, v in A.items()]))
        return torch.stack(feats)


def test_probe_evaluator_scores_a_perfect_encoder_perfectly(monkeypatch):
    params = ProbeParams(train_images=60, test_images=40, pairs=10, coarse_head=None, attributes=["colour", "count", "shape"])
    evaluator = ShapesProbeEvaluator(params)
    oracle = OracleModel()
    oracle.lookup = {}
    import genhancer_miniature.probes as probes

    original_render = probes.render

    def remembering(scene, size=64):
        image = original_render(scene, size)
        oracle.lookup[np.asarray(image).tobytes()] = scene
        return image

    monkeypatch.setattr(probes, "render", remembering)
    result = evaluator.evaluate(oracle)
    assert result.metrics["probe_colour"] == 100.0 and result.metrics["pairs_count"] == 100.0
    assert result.metrics["probe_fine_mean"] == 100.0 and "coarse_zero_shot" not in result.metrics
    assert [r["attribute"] for r in result.rows] == ["colour", "count", "shape"]
    with pytest.raises(ValueError, match="unknown attributes"):
        ShapesProbeEvaluator(ProbeParams(attributes=["smell"]))


def test_pretrainer_trains_once_and_caches_by_its_parameters(tmp_path):
    params = ShapesClassifierParams(image_size=32, steps=3, batch_size=4)
    messages = []
    first = ShapesClassifier(params).encoder_params(tmp_path, messages.append)
    assert any("training the shapes classifier" in m for m in messages)
    assert json.loads((tmp_path / "pretrained" / ShapesClassifier(params).key / "pretrain.json").read_text())["params"]["steps"] == 3
    messages.clear()
    assert ShapesClassifier(params).encoder_params(tmp_path, messages.append) == first and messages == []
    assert ShapesClassifier(params.model_copy(update={"steps": 4})).key != ShapesClassifier(params).key
    for name in ("model.safetensors", "config.json", "preprocessor_config.json", "coarse_head.safetensors"):
        assert (tmp_path / "pretrained" / ShapesClassifier(params).key / name).is_file()


def _reproduce_driver():
    """tools/reproduce_mini.py's main: an application beside the package, loaded by path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("reproduce_mini", ROOT / "tools" / "reproduce_mini.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module.main


@pytest.mark.slow
@pytest.mark.needs_llava  # the MLLM twin
def test_reproduce_mini_machinery_end_to_end(tmp_path, monkeypatch):
    main = _reproduce_driver()
    monkeypatch.setenv("GENHANCER_CACHE", str(tmp_path / "cache"))
    doc = tmp_path / "docs" / "mini.md"
    args = ["--recipes", str(ROOT / "recipes"), "--runs", str(tmp_path / "runs"), "--doc", str(doc), "--experiments", "main", "local_tokens", "discrete",
            "--set", "stage1.steps=2", "--set", "stage2.steps=2", "--set", "pretrain.params.steps=3",
            "--set", "pretrain.params.image_size=32", "--set", "data.batch_size=4", "--set", "preview.sampling_steps=2",
            "--probe", "train_images=30", "--probe", "test_images=20", "--probe", "pairs=5",
            "--twin-images", "16", "--twin-pairs", "1", "--set", "llava.pretrain.max_steps=1", "--set", "llava.finetune.max_steps=1",
            "--seeds", "1", "2", "--sweep", "lr_5e-05", "lr_5e-03", "anchor_0.1_at_5e-03"]
    assert main(args) == 0
    page = doc.read_text()
    assert "## Verdicts" in page and "CLS only beats CLS + local tokens" in page and "The discrete denoiser" in page
    assert "| original |" in page and "| main |" in page and "| discrete |" in page
    assert (doc.parent / "mini" / "probes.png").is_file() and (doc.parent / "mini" / "main-stage1.png").is_file()
    section = page.split("## Verdicts")[1].split("\n## ")[0]
    verdicts = [line.rsplit("**", 2)[-2] for line in section.splitlines() if line.startswith("| ") and line.endswith("** |")]
    assert len(verdicts) == 6 and "## The MLLM twin" in page and set(verdicts) <= {"reproduced", "unclear", "not reproduced (the opposite holds)"}
    assert "GenHancer keeps global semantics" in page and "## Global semantics kept?" in page
    table3 = [line for line in page.split("## Global semantics kept?")[1].split("\n## ")[0].splitlines() if line.startswith("| ") and "**" in line]
    assert {line.split(" | ")[0][2:] for line in table3} == {"main", "local_tokens", "discrete", "lr_5e-05", "lr_5e-03", "anchor_0.1_at_5e-03"}
    assert "## The trade-off a user picks from" in page and (doc.parent / "mini" / "frontier.png").is_file()
    assert "| main (lr 5e-4) |" in page and "| anchor 0.1 (lr 5e-03) |" in page and "| lr 5e-05 |" in page
    # the twin per attribute, for main's tower and the control tower, beside the towers' probe changes
    twin = page.split("## The MLLM twin")[1].split("\n## ")[0]
    for row in ("| original |", "| enhanced |", "| MLLM change |", "| tower's probe change, main (lr 5e-4) |",
                "| enhanced (lr 5e-03) |", "| MLLM change (lr 5e-03) |", "| tower's probe change, lr 5e-03 |"):
        assert row in twin, row
    assert "colour_accuracy" in twin and (tmp_path / "runs" / "twin-lr_5e-03" / "seed2" / "run.json").is_file()
    # the control's twin trains only its enhanced tower's LLaVA; the original one is main's twin's, same seed
    control = json.loads((tmp_path / "runs" / "twin-lr_5e-03" / "seed2" / "run.json").read_text())["llava"]
    assert list(control["towers"]) == ["enhanced"] and set(control["eval"]["multiple_choice"]) == {"enhanced"}
    # sweep points start stage 2 from main's stage 1 of their seed instead of training it again
    anchor = json.loads((tmp_path / "runs" / "anchor_0.1_at_5e-03" / "seed2" / "run.json").read_text())["resolved_recipe"]
    assert anchor["stage1"]["enabled"] is False and anchor["stage2"]["init_from"] == str(tmp_path / "runs" / "main" / "seed2")
    assert anchor["stage2"]["anchor"]["weight"] == 0.1 and float(anchor["stage2"]["learning_rate"]) == 5e-3
    assert not (tmp_path / "runs" / "anchor_0.1_at_5e-03" / "seed2" / "stage1").exists()
    assert json.loads((tmp_path / "runs" / "local_tokens" / "seed2" / "run.json").read_text())["resolved_recipe"]["stage1"].get("enabled", True)
    # finished runs are kept: a second call trains nothing
    stamp = (tmp_path / "runs" / "main" / "seed1" / "run.json").stat().st_mtime
    assert main(args) == 0
    assert (tmp_path / "runs" / "main" / "seed1" / "run.json").stat().st_mtime == stamp


def _reproduce_module():
    import importlib

    _reproduce_driver()
    return importlib.import_module("reproduce_mini")


@pytest.mark.slow
def test_main_stage1_checkpoint_equals_a_shorter_stage1(tmp_path, monkeypatch):
    """What lets stage1_100/200 reuse main's stage 1: with a constant rate, no warm-up and per-step seeds,
    the checkpoint at step k of a longer stage 1 is exactly a k-step stage 1."""
    from safetensors.torch import load_file

    from genhancer_plugins.recipe.schema import load_recipe
    from genhancer_plugins.registry.manager import load_plugins
    from genhancer_plugins.training.engine import Run

    monkeypatch.setenv("GENHANCER_CACHE", str(tmp_path / "cache"))
    manager = load_plugins()
    common = ["stage2.enabled=false", "export.enabled=false", "eval=[]", "data.batch_size=4", "preview.images=0",
              "pretrain.params.steps=3", "pretrain.params.image_size=32", "train.checkpoint_every=2", "train.keep_checkpoints=4"]
    for steps in (4, 2):
        loaded = load_recipe(ROOT / "recipes" / "experiments" / "main.yaml", [*common, f"stage1.steps={steps}"], manager)
        Run(loaded, manager, tmp_path / f"steps{steps}", show_progress=False).execute()
    longer = load_file(tmp_path / "steps4" / "stage1" / "checkpoints" / "checkpoint-2" / "model.safetensors")
    shorter = load_file(tmp_path / "steps2" / "stage1" / "final" / "model.safetensors")
    assert longer.keys() == shorter.keys() and all(torch.equal(longer[k], shorter[k]) for k in longer)
    assert not all(torch.equal(longer[k], v) for k, v in load_file(tmp_path / "steps4" / "stage1" / "final" / "model.safetensors").items())


def test_reproduce_mini_names_a_failed_run_and_waits_for_what_a_run_needs(tmp_path):
    module = _reproduce_module()
    # an experiment named twice (say, in the paper's list and on a Fig. 1 axis) is one run per seed, not two
    jobs, _ = module.experiment_jobs(ROOT / "recipes", tmp_path, [1, 2], [], [*module.EXPERIMENTS, "main"], module.SWEEP)
    assert len({job.out for job in jobs}) == len(jobs) == 2 * (len(set(module.EXPERIMENTS)) + len(module.SWEEP)) + 2
    # runs that read main's frozen-work cache start after main's run of their seed
    sibling = next(job for job in jobs if job.out == tmp_path / "timesteps_s5" / "seed2")
    assert tmp_path / "main" / "seed2" in sibling.after and "cache.enabled=true" in sibling.sets
    broken = module.Job("broken seed 1", tmp_path / "missing.yaml", [], tmp_path / "broken")
    with pytest.raises(RuntimeError, match="broken seed 1 failed"):
        module.run_jobs([broken], 2, lambda message: None)
    waiting = module.Job("waiting seed 1", tmp_path / "missing.yaml", [], tmp_path / "waiting", after=(tmp_path / "never",))
    with pytest.raises(RuntimeError, match="waiting seed 1: waits for"):
        module.run_jobs([waiting], 2, lambda message: None)


@pytest.mark.slow
def test_reproduce_mini_draws_fig1_with_a_pretrained_denoiser_and_a_diva_style_arm(tmp_path, monkeypatch):
    main = _reproduce_driver()
    monkeypatch.setenv("GENHANCER_CACHE", str(tmp_path / "cache"))
    doc = tmp_path / "docs" / "mini.md"
    experiments = ["main", "stage1_100", "stage1_200", "denoiser_n1", "denoiser_n3", "local_tokens", "local_tokens_25",
                   "pretrained_denoiser", "diva"]
    args = ["--recipes", str(ROOT / "recipes"), "--runs", str(tmp_path / "runs"), "--doc", str(doc), "--experiments", *experiments,
            "--set", "stage1.steps=2", "--set", "stage2.steps=2", "--set", "pretrain.params.steps=3",
            "--set", "pretrain.params.image_size=32", "--set", "data.batch_size=4", "--set", "preview.images=0",
            "--probe", "train_images=30", "--probe", "test_images=20", "--probe", "pairs=5", "--no-twin", "--sweep",
            "--seeds", "1", "2", "--jobs", "2"]
    assert main(args) == 0
    page = doc.read_text()
    section = page.split("## Better generation, better encoder? (the paper's Fig. 1)")[1].split("\n## ")[0]
    for row in ("| (i) stage-1 length: 100, 200, 400 steps | stage1 100 |", "| (ii) denoiser size: 1+2, 2+4, 3+6 blocks | denoiser n3 |",
                "| (iii) local tokens in the condition: 0, 25 %, 50 % | local tokens 25 |",
                "| (iv) random vs pretrained denoiser | pretrained denoiser |", "| (iv) random vs pretrained denoiser | diva |"):
        assert row in section, row
    verdicts = [line for line in section.splitlines() if line.startswith("| ") and line.endswith("** |")]
    assert len(verdicts) == 5 and "GenHancer beats the DIVA-style baseline (main vs diva)" in verdicts[-1]
    assert (doc.parent / "mini" / "fig1.png").is_file()
    quality = json.loads((tmp_path / "runs" / "diva" / "seed2" / "reconstruction.json").read_text())
    assert quality["images"] == 32 and 0 < quality["psnr_db"] < 60
    # the pretrained networks are trained once and every seed starts from them
    for arm, pretraining in (("pretrained_denoiser", "denoiser_pretraining"), ("diva", "diva_pretraining")):
        recipe = json.loads((tmp_path / "runs" / arm / "seed1" / "run.json").read_text())["resolved_recipe"]
        assert recipe["denoiser"]["params"]["source"] == str(tmp_path / "runs" / pretraining / "seed100" / "stage1" / "final" / "denoiser")
    # the stage-1 length axis starts stage 2 from main's stage-1 checkpoint at its length (here every stage 1 is 2 steps)
    shorter = json.loads((tmp_path / "runs" / "stage1_100" / "seed2" / "run.json").read_text())["resolved_recipe"]
    checkpoint = tmp_path / "runs" / "main" / "seed2" / "stage1" / "checkpoints" / "checkpoint-2" / "model.safetensors"
    assert shorter["stage1"]["enabled"] is False and shorter["stage2"]["init_from"] == str(checkpoint)
    # main fills its seed's frozen-work cache; a run with the same frozen tower and scenes reads it (nothing recomputed)
    filled = json.loads((tmp_path / "runs" / "main" / "seed2" / "run.json").read_text())["cache"]
    read = json.loads((tmp_path / "runs" / "denoiser_n3" / "seed2" / "run.json").read_text())["cache"]
    assert filled["misses"] > 0 and read["misses"] == 0 and read["hits"] > 0 and read["directory"] == filled["directory"]
    assert json.loads((tmp_path / "runs" / "local_tokens" / "seed2" / "run.json").read_text())["cache"] is None
    diva = json.loads((tmp_path / "runs" / "diva" / "seed1" / "run.json").read_text())["resolved_recipe"]
    assert diva["schedule"] == "end_to_end" and diva["stage2"]["optimizer"] == "sgd" and diva["denoiser"]["params"]["train_network"] is False
