"""`genhancer rehearse`: every phase of a recipe at its widths with random weights on synthetic
inputs, an interruption and a resume in each stage, a one-line failure naming the phase and the
component, and a forecast of the real job."""

import json

import pytest
from helpers import ROOT, TINY, fake_distribution, genhancer, write_recipe


def _rehearse(*args, extra_path=None):
    result = genhancer("rehearse", *args, "--json", extra_path=extra_path)
    return result, (json.loads(result.stdout) if result.stdout.strip().startswith("{") else None)


def _phases(report):
    return [(p["phase"], p["status"]) for p in report["phases"]]


@pytest.mark.slow
def test_the_tiny_recipe_rehearses_every_phase_and_resumes_each_stage(tmp_path):
    recipe = write_recipe(tmp_path, {**TINY, "eval": [{"name": "mmvp_vlm", "params": {"root": "nowhere/MMVP_VLM"}}],
                                     "data": {"name": "image_folder", "params": {"root": "nowhere/images"}, "batch_size": 8}})
    out = tmp_path / "out"
    result, report = _rehearse(recipe, "-o", out, "--depth", "1", "--steps", "1")
    assert result.returncode == 0, result.stderr
    phases = _phases(report)
    for expected in [("stage1", "interrupted"), ("stage1 (resumed from step 1)", "ok"), ("stage2", "interrupted"),
                     ("stage2 (resumed from step 1)", "ok"), ("export (write, reload check)", "ok"), ("eval original", "ok")]:
        assert expected in phases, (expected, phases)
    stage1 = next(p for p in report["phases"] if p["phase"] == "stage1 (resumed from step 1)")
    assert stage1["steps"] == 1 and stage1["peak_memory_gb"] > 0 and stage1["trained_parameters"] < stage1["total_parameters"]
    assert "encoder.config.vision.num_hidden_layers 2 -> 1" in report["shortened"]
    assert report["eval"]["mmvp_vlm"]["original"]["average"] >= 0 and "enhanced" in report["eval"]["mmvp_vlm"]
    summary = json.loads((out / "run" / "run.json").read_text())
    assert summary["completed"] and summary["stages"]["stage2"]["resumed_from"].endswith("checkpoint-1")
    forecast = report["forecast"]["stages"]
    assert [s["phase"] for s in forecast] == ["stage1", "stage2"] and forecast[0]["steps"] == 6 and forecast[0]["flops_per_step"] > 0
    assert not (ROOT / "nowhere").exists()  # the recipe's own paths were never touched


def _broken_denoiser(site):
    return fake_distribution(site, "broken_dist", {"broken": "broken_denoiser"}, {"broken_denoiser": (
        "from genhancer_plugins import ComponentSpec, hookimpl\n"
        "import genhancer_flux\n"
        "base = next(s for s in genhancer_flux.genhancer_components() if s.name == 'rectified_flow')\n"
        "def build(params, target, meta=False):\n"
        "    denoiser = base.factory(params, target=target, meta=meta)\n"
        "    def loss(targets, condition):\n"
        "        raise RuntimeError('shape mismatch at real width')\n"
        "    denoiser.loss = loss\n"
        "    return denoiser\n"
        "@hookimpl\ndef genhancer_components():\n"
        "    return [ComponentSpec(kind='denoiser', name='breaks', factory=build, params=base.params, presets=base.presets)]\n")})


@pytest.mark.slow
def test_a_phase_that_breaks_is_named_with_its_component_in_one_line(tmp_path):
    site = _broken_denoiser(tmp_path / "site")
    recipe = write_recipe(tmp_path, {**TINY, "denoiser": {"name": "breaks", "preset": "tiny"}})
    result = genhancer("rehearse", recipe, "-o", tmp_path / "out", extra_path=site)
    assert result.returncode == 1
    line = next(line for line in result.stdout.splitlines() if "rehearsal FAILED" in line)
    assert line.startswith("rehearsal FAILED in stage1 (denoiser 'breaks' (broken_dist)): RuntimeError: shape mismatch at real width")
    assert f"(full log: {tmp_path / 'out' / 'rehearsal.log'})" in line
    assert "Traceback" in (tmp_path / "out" / "rehearsal.log").read_text() and "Traceback" not in result.stdout + result.stderr


def test_bad_options_and_a_used_output_are_one_line(tmp_path):
    recipe = write_recipe(tmp_path, TINY)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("")
    for args, message in ((["--depth", "0"], "positive integers"), (["--mfu", "3"], "--mfu 3.0"), (["-o", tmp_path / "used"], "is not empty"),
                          (["--gpu", "Z80"], "known GPUs are")):
        result = genhancer("rehearse", recipe, *args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)


@pytest.mark.slow
@pytest.mark.needs_llava
def test_the_llava_twin_rehearses_both_towers_and_its_benchmarks(tmp_path):
    result, report = _rehearse(ROOT / "recipes" / "llava_tiny.yaml", "-o", tmp_path / "out", "--set", "pretrain.params.steps=20")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    llava = report["downstream"]["llava"]
    assert set(llava["towers"]) == {"original", "enhanced"}
    for tower in llava["towers"].values():
        assert {name: phase["steps"] for name, phase in tower["phases"].items()} == {"pretrain": 1, "finetune": 1}


@pytest.mark.slow
def test_the_discrete_twin_rehearses_too(tmp_path):
    result, report = _rehearse(ROOT / "recipes" / "tiny_discrete.yaml", "-o", tmp_path / "out")
    assert result.returncode == 0, result.stderr[-2000:]
    assert ("export (write, reload check)", "ok") in _phases(report)


class FirstOption:
    name = "first-option"

    def choose(self, image, question, options):
        return 0, [0.0] * len(options)


@pytest.mark.needs_llava
def test_every_evaluator_reads_its_own_rehearsal_copy(tmp_path):
    """Each evaluator's synthetic copy is in the layout its reader checks (the reader runs when the
    evaluator is built); the LLaVA benchmarks also score a model on it."""
    from genhancer_plugins import load_plugins

    manager = load_plugins()
    placeholders = {"root": "unused", "file": "unused", "image_folder": "unused"}
    for name, registered in sorted(manager.components["evaluator"].items()):
        spec = registered.spec
        assert spec.rehearsal is not None, f"{name} has no rehearsal copy"
        fields = spec.params.model_fields
        params = spec.params.model_validate({k: v for k, v in placeholders.items() if k in fields and fields[k].is_required()})
        evaluator = spec.factory(spec.rehearsal(params, tmp_path / name))
        if spec.scores == "mllm":
            assert evaluator.evaluate(FirstOption()).metrics, name
