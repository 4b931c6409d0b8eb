"""`genhancer push`: the files and the model card of a finished run, the refusals, and the
call into huggingface_hub with its own offline behaviour (no upload happens in tests)."""

import json
import os
import time

import pytest
import yaml
from helpers import TINY, run_recipe, write_recipe

from genhancer_plugins.cli import main


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    from genhancer_evaluators.synthetic_mmvp import write_synthetic_mmvp

    root = tmp_path_factory.mktemp("push")
    bench = write_synthetic_mmvp(root / "bench", pairs_per_pattern=1)
    recipe = write_recipe(root, {**TINY, "stage1": {"steps": 2, "learning_rate": 1e-3}, "stage2": {"steps": 2, "learning_rate": 1e-3},
                                 "preview": {"images": 0}, "eval": [{"name": "mmvp_vlm", "params": {"root": str(bench)}}]})
    run_recipe(recipe, root / "run")
    return root / "run"


def card_of(stdout):
    card = stdout.split("\n\n", 1)[1]
    front = yaml.safe_load(card.split("---\n")[1])
    return card, front


def test_a_dry_run_lists_the_files_and_writes_a_card_with_the_evaluation(finished, capsys):
    assert main(["push", str(finished), "--repo-id", "me/tiny-genhancer", "--dry-run", "--with-denoiser"]) == 0
    out = capsys.readouterr().out
    files = out.splitlines()[0].removeprefix("files: ").split(", ")
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "genhancer.json", "README.md"} <= set(files)
    assert any(name.startswith("denoiser/") for name in files)
    card, front = card_of(out)
    summary = json.loads((finished / "run.json").read_text())
    enhanced = summary["eval"]["mmvp_vlm"]["enhanced"]
    (result,) = front["model-index"][0]["results"]
    assert front["model-index"][0]["name"] == "tiny-genhancer" and result["dataset"]["name"] == "mmvp_vlm"
    assert {m["name"]: m["value"] for m in result["metrics"]} == {k: round(v, 2) for k, v in enhanced.items()}
    assert "| average |" in card and "**mmvp_vlm**" in card  # the table, original vs enhanced, per pattern
    assert f"- seed 0, 1 process(es), precision {summary['mixed_precision']}, hardware: {summary['hardware']['device_name']}" in card
    assert "Drop-in for: LLaVA-1.5's training scripts" in card and "```yaml\nname: test-tiny" in card
    assert 'AutoModel.from_pretrained("me/tiny-genhancer")' in card


def test_an_upload_goes_through_huggingface_hub_and_fails_in_one_line_offline(finished, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    code = main(["push", str(finished), "--repo-id", "me/tiny-genhancer", "--private", "--revision", "v1"])
    err = capsys.readouterr().err
    assert code == 2 and "push to me/tiny-genhancer: OfflineModeIsEnabled: " in err and "nothing was committed" in err
    assert len(err.strip().splitlines()) == 1


def test_unfinished_busy_stale_and_badly_named_pushes_are_refused(finished, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    cases = []
    summary = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**summary, "completed": False}))
    cases.append(("me/x", "the run did not complete"))
    for args_repo, message in cases:
        assert main(["push", str(run), "--repo-id", args_repo, "--dry-run"]) == 2 and message in capsys.readouterr().err
    (run / "run.json").write_text(json.dumps(summary))
    (run / ".genhancer.lock").write_text("{}")
    assert main(["push", str(run), "--repo-id", "me/x", "--dry-run"]) == 2 and "is in use by a run" in capsys.readouterr().err
    (run / ".genhancer.lock").unlink()
    later = time.time() + 60
    os.utime(run / "stage2" / "final" / "model.safetensors", (later, later))
    assert main(["push", str(run), "--repo-id", "me/x", "--dry-run"]) == 2 and "trained after the export" in capsys.readouterr().err
    assert main(["push", str(finished), "--repo-id", "no-slash", "--dry-run"]) == 2 and "expected ORG/NAME" in capsys.readouterr().err


def test_the_card_says_which_mllm_families_take_the_tower():
    from genhancer_plugins.commands.push import drop_in

    assert drop_in("clip", 1024, 336, 14).startswith("LLaVA-1.5: a drop-in `--vision_tower`")
    assert "LLaVA-NeXT checkpoint" in drop_in("clip", 1024, 336, 14)
    assert "not an existing LLaVA-1.5 or LLaVA-NeXT checkpoint" in drop_in("clip", 1024, 224, 14)
    so400m = drop_in("siglip", 1152, 384, 14)
    assert so400m.startswith("an existing LLaVA-OneVision checkpoint") and "not the original LLaVA-1.5 repository" in so400m
    assert "nor an existing LLaVA-1.5, -NeXT or -OneVision checkpoint" in drop_in("siglip", 1152, 224, 14)
