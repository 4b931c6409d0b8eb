"""Reconstruction grids during runs and on demand, and the comparison report."""


import pytest
from genhancer_evaluators.synthetic_mmvp import write_synthetic_mmvp
from helpers import TINY, run_recipe, write_recipe
from PIL import Image

from genhancer_plugins.cli import main
from genhancer_plugins.training.reconstruct import HEADER

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    bench = write_synthetic_mmvp(tmp / "bench", pairs_per_pattern=1)
    base = {**TINY, "preview": {"images": 3, "sampling_steps": 2, "every": 2},
            "eval": [{"name": "mmvp_vlm", "params": {"root": str(bench)}}]}
    run_recipe(write_recipe(tmp, base, "a.yaml"), tmp / "continuous")
    discrete = {**base, "tokenizer": {"name": "vq", "preset": "tiny"}, "denoiser": {"name": "perceiver", "preset": "tiny"}}
    run_recipe(write_recipe(tmp, discrete, "b.yaml"), tmp / "discrete")
    return tmp


@pytest.mark.parametrize("run", ["continuous", "discrete"])
def test_runs_write_grids_at_stage_ends_and_every_n_steps(two_runs, run):
    grid = Image.open(two_runs / run / "stage1" / "reconstructions.png")
    assert grid.size == (2 * 128 + 6, HEADER + 3 * 132)  # labelled columns input | reconstruction, a row per image
    steps = sorted(p.name for p in (two_runs / run / "stage1" / "reconstructions").iterdir())
    assert steps == ["step-2.png", "step-4.png"]  # every 2 of 6 steps, the last one is the stage-end grid
    assert (two_runs / run / "stage2" / "reconstructions.png").is_file()


def test_reconstruct_command(two_runs, capsys):
    images = sorted(str(p) for p in (two_runs / "bench" / "MLLM_VLM Images" / "Color").iterdir())
    out = two_runs / "grid.png"
    assert main(["reconstruct", "--run", str(two_runs / "discrete"), "--images", *images, "--steps", "3", "-o", str(out)]) == 0
    assert "reconstructions (stage2)" in capsys.readouterr().out
    assert Image.open(out).size == (2 * 128 + 6, HEADER + len(images) * 132)
    assert main(["reconstruct", "--run", str(two_runs / "discrete"), "--images", *images, "-o", str(out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(["reconstruct", "--run", str(two_runs / "continuous"), "--stage", "stage1", "--images", images[0]]) == 0
    assert (two_runs / "continuous" / "reconstructions-stage1.png").is_file()
    assert main(["reconstruct", "--run", str(two_runs / "bench"), "--images", images[0]]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_report_compares_runs(two_runs, capsys):
    out = two_runs / "report"
    assert main(["report", str(two_runs / "continuous"), str(two_runs / "discrete"), "-o", str(out)]) == 0
    page = (out / "report.md").read_text()
    assert "| tokenizer.name | vae | vq |" in page and "| denoiser.name | rectified_flow | perceiver |" in page
    assert "### mmvp_vlm" in page and "continuous original" in page and "| average |" in page
    assert (out / "losses.png").stat().st_size > 1000 and "![loss curves](losses.png)" in page
    links = [line.split("](")[1].rstrip(")") for line in page.splitlines() if line.startswith("![") and "reconstructions" in line]
    assert len(links) == 4 and all((out / link).resolve().is_file() for link in links)
