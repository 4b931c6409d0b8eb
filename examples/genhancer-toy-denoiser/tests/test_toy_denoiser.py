"""The example plugin's own tests, as a third party writes them: only the kit
(genhancer_plugins.testing) and the package itself. Run with the package installed
(`pip install -e .`), so that its entry points register it."""

import json

from genhancer_toy_denoiser import phase, plugin

from genhancer_plugins.testing import check_components, check_denoiser, run_recipe, tiny_recipe


def test_the_registrations_are_valid():
    assert [s.name for s in check_components(plugin)] == ["toy_mlp"]
    assert [s.name for s in check_components(phase)] == ["toy_report"]


def test_the_denoiser_keeps_the_contract():
    (spec,) = check_components(plugin)
    passed = check_denoiser(spec, preset="small")
    assert "the loss's gradient reaches every condition input (what trains the encoder in stage 2)" in passed


def test_a_recipe_trains_exports_and_reports_with_it(tmp_path):
    recipe = tiny_recipe(tmp_path, denoiser={"name": "toy_mlp", "preset": "small"}, toy_report={"title": "tensors"},
                         stage1={"steps": 2, "learning_rate": 1e-3}, stage2={"steps": 2, "learning_rate": 1e-3})
    summary = run_recipe(recipe, tmp_path / "run")
    assert summary["completed"] and summary["stages"]["stage2"]["steps"] == 2
    assert (tmp_path / "run" / "export" / "model.safetensors").is_file()
    assert summary["toy_report"]["tensors"] > 0
    assert json.loads((tmp_path / "run" / "toy_report" / "report.json").read_text())["title"] == "tensors"
