"""The command line as a user meets it."""

import json
import subprocess
import sys

import pytest
from helpers import ROOT, TINY, write_recipe

from genhancer_plugins.cli import main


def test_help_explains_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for word in ("run", "validate", "plugins", "examples:"):
        assert word in text
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "--resume" in capsys.readouterr().out


@pytest.mark.parametrize("args", [["--help"], ["plugins"], ["llava", "--help"]])
def test_help_and_plugins_import_no_torch_with_every_plugin_loaded(args):
    code = ("import sys\nfrom genhancer_plugins.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            "print('TORCH', 'torch' in sys.modules)" % (args,))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert out.strip().endswith("TORCH False"), out[-500:]


def test_validate_prints_the_plan_and_exits_1_when_inputs_are_not_ready(capsys):
    # offline, without CC3M or the hub models: the plan is printed, then each input that is not ready
    assert main(["validate", str(ROOT / "recipes" / "paper" / "clip_l14_336.yaml")]) == 1
    text = capsys.readouterr().out
    assert "recipe is valid, but 4 inputs are not ready" in text
    assert "encoder (clip): params.source: hub id 'openai/clip-vit-large-patch14-336' is not in the Hugging Face cache" in text
    assert "data (image_folder): data.params.root data/cc3m/images does not exist" in text
    assert main(["validate", str(ROOT / "recipes" / "paper" / "clip_l14_336.yaml"), "--recipe-only"]) == 0
    text = capsys.readouterr().out
    assert "denoiser        1.310 B (1,310,154,816)" in text
    assert "image size 336" in text and "recipe is valid" in text
    assert "stage2:" in text and "LoRA r16/alpha 16" in text and "lr 1e-05" in text
    assert "data     image_folder" in text


def test_validate_json_with_overrides(capsys):
    assert main(["validate", str(ROOT / "recipes" / "tiny.yaml"), "--json", "--set", "stage2.mode=only"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["stages"]["stage2"]["what"].endswith("(denoiser and projector frozen)")
    assert plan["output_dir"] == "runs/tiny"


def test_recipe_errors_exit_2_with_the_file_and_field(tmp_path, capsys):
    path = write_recipe(tmp_path, {**TINY, "stage3": {}})
    assert main(["validate", str(path)]) == 2
    assert f"{path.resolve()}: stage3: unknown field" in capsys.readouterr().err
    assert main(["validate", str(tmp_path / "missing.yaml")]) == 2
    assert "recipe file not found" in capsys.readouterr().err


@pytest.mark.slow
def test_run_refuses_a_non_empty_directory_then_overwrites(tmp_path, capsys):
    recipe = write_recipe(tmp_path, TINY)
    out = tmp_path / "out"
    assert main(["run", str(recipe), "-o", str(out), "--no-progress", "--set", "stage2.steps=2"]) == 0
    assert f"enhanced encoder: {out / 'export'}" in capsys.readouterr().out
    assert main(["run", str(recipe), "-o", str(out), "--no-progress"]) == 2
    assert "is not empty; pass --resume" in capsys.readouterr().err
    assert main(["run", str(recipe), "-o", str(out), "--no-progress", "--overwrite"]) == 0
    assert json.loads((out / "run.json").read_text())["stages"]["stage2"]["steps"] == 4
