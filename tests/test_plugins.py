"""Plugin discovery through entry points: listing, failure isolation, a third-party package."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, TINY, fake_distribution, write_recipe

GENHANCER = [sys.executable, "-m", "genhancer_plugins.cli"]


def genhancer(*args, extra_path=None, check=True):
    env = dict(os.environ)
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), env.get("PYTHONPATH", "")])
    result = subprocess.run([*GENHANCER, *args], capture_output=True, text=True, env=env)
    if check and result.returncode:
        raise AssertionError(f"genhancer {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def test_plugins_lists_every_builtin_with_its_distribution():
    listing = json.loads(genhancer("plugins", "--json").stdout)
    found = {(c["kind"], c["name"]): c for c in listing["components"]}
    for key in [("encoder", "clip"), ("encoder", "siglip"), ("conditioner", "cls"), ("tokenizer", "vae"),
                ("denoiser", "rectified_flow"), ("dataset", "synthetic"), ("dataset", "image_folder")]:
        assert key in found, key
        assert found[key]["distribution"] == "genhancer" and found[key]["version"]
    assert "flux-n2" in found[("denoiser", "rectified_flow")]["presets"]
    assert listing["failures"] == []
    text = genhancer("plugins").stdout
    assert "denoisers:" in text and "rectified_flow" in text and "genhancer 0.1.0" in text


def test_a_broken_plugin_is_reported_and_everything_else_still_works(tmp_path):
    fake_distribution(
        tmp_path, "broken_plugins", {"explodes": "broken_on_import", "bad_register": "broken_on_register"},
        {
            "broken_on_import": "raise ImportError('needs libfoo 9')\n",
            "broken_on_register": (
                "from genhancer_plugins import hookimpl\n"
                "@hookimpl\ndef genhancer_components():\n    raise RuntimeError('registry exploded')\n"
            ),
        },
    )
    result = genhancer("plugins", extra_path=tmp_path)
    assert "plugin 'explodes' (entry point 'broken_on_import' from broken_plugins 1.0) failed to import: ImportError: needs libfoo 9" in result.stderr
    assert "plugin 'bad_register' (entry point 'broken_on_register' from broken_plugins 1.0) failed to register: RuntimeError: registry exploded" in result.stderr
    assert "rectified_flow" in result.stdout and "clip" in result.stdout
    listing = json.loads(genhancer("plugins", "--json", extra_path=tmp_path).stdout)
    assert {f["plugin"] for f in listing["failures"]} == {"explodes", "bad_register"}
    # recipes using healthy plugins still validate; the error for a missing one points at the failures
    recipe = write_recipe(tmp_path, TINY)
    assert genhancer("validate", str(recipe), extra_path=tmp_path).returncode == 0
    bad = write_recipe(tmp_path, {**TINY, "denoiser": {"name": "from_broken"}}, "bad.yaml")
    result = genhancer("validate", str(bad), extra_path=tmp_path, check=False)
    assert result.returncode == 2
    assert "denoiser.name: no denoiser named 'from_broken'" in result.stderr and "some plugins failed to load" in result.stderr


EXAMPLE = ROOT / "examples" / "genhancer-toy-denoiser"


def _install_example(site: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", "--target", str(site), str(EXAMPLE)],
        check=True, capture_output=True, text=True,
    )


@pytest.mark.slow
def test_the_example_plugin_passes_its_own_tests_written_with_the_kit_alone(tmp_path):
    site = tmp_path / "site"
    _install_example(site)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
                            capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
    # and those tests import nothing of genhancer but the public API and the kit
    import ast

    for path in [*EXAMPLE.rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("genhancer_plugins"):
                assert node.module in ("genhancer_plugins", "genhancer_plugins.testing"), (path, node.module)
                if path.parent.name == "tests":
                    assert node.module == "genhancer_plugins.testing", path


@pytest.mark.slow
def test_third_party_package_registers_a_denoiser_a_phase_and_a_command(tmp_path):
    site = tmp_path / "site"
    _install_example(site)
    listing = json.loads(genhancer("plugins", "--json", extra_path=site).stdout)
    toy = [c for c in listing["components"] if c["name"] == "toy_mlp"]
    assert toy and toy[0]["kind"] == "denoiser"
    assert (toy[0]["distribution"], toy[0]["version"]) == ("genhancer-toy-denoiser", "0.3.1")
    recipe = write_recipe(tmp_path, {**TINY, "denoiser": {"name": "toy_mlp", "preset": "small"}})
    plan = json.loads(genhancer("validate", str(recipe), "--json", extra_path=site).stdout)
    assert plan["components"]["denoiser"]["provided_by"] == "genhancer-toy-denoiser 0.3.1"
    out = tmp_path / "out"
    genhancer("run", str(recipe), "--output-dir", str(out), "--no-progress", extra_path=site)
    summary = json.loads((out / "run.json").read_text())
    assert summary["completed"] and summary["stages"]["stage2"]["steps"] == 4
    assert summary["resolved_recipe"]["denoiser"]["name"] == "toy_mlp"
    assert (out / "export" / "model.safetensors").is_file()
    # a second downstream model, added without touching the core: its phase runs after the export when a recipe
    # has its section, and its command joins the command line
    phased = write_recipe(tmp_path, {**TINY, "stage1": {"steps": 1}, "stage2": {"steps": 1}, "toy_report": {"title": "tensors"}},
                          "phased.yaml")
    plan = json.loads(genhancer("validate", str(phased), "--json", extra_path=site).stdout)
    assert plan["phases"]["toy_report"]["provided_by"] == "genhancer-toy-denoiser 0.3.1"
    genhancer("run", str(phased), "-o", str(tmp_path / "phased"), "--no-progress", extra_path=site)
    report = json.loads((tmp_path / "phased" / "run.json").read_text())["toy_report"]
    assert report["tensors"] > 0 and report["encoder"] == str(tmp_path / "phased" / "export")
    printed = genhancer("toy-report", str(tmp_path / "phased"), extra_path=site).stdout
    assert printed.startswith(f"tensors: {report['tensors']} tensors in ")
    # without the plugin the section is an error naming the phases that exist
    refused = genhancer("validate", str(phased), check=False)
    assert refused.returncode == 2 and "toy_report: unknown field" in refused.stderr
