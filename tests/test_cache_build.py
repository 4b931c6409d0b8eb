"""`genhancer cache`: the frozen work precomputed into shards that training reads from
memory maps, equal to what the lazy fill computes, resumable, split over processes."""

import json
import os
import socket
import subprocess
import sys

import pytest
from helpers import TINY, interrupted_then_resumed, run_recipe, write_recipe

from genhancer_plugins.cli import main

FAST = {**TINY, "stage1": {"steps": 6, "learning_rate": 1e-3}, "stage2": {"steps": 2, "learning_rate": 1e-3}, "preview": {"images": 0}}
CACHED = {**FAST, "data": {**TINY["data"], "params": {"num_images": 16}, "fixed_crops": 2, "num_workers": 0}}


def _losses(summary, stage):
    return [loss for _, loss in summary["stages"][stage]["losses"]]


def test_a_precomputed_cache_trains_exactly_like_the_lazy_one_and_reads_no_entry_into_memory(tmp_path, capsys):
    from genhancer_plugins.training.cache import FrozenCache

    recipe = write_recipe(tmp_path, {**CACHED, "cache": {"enabled": True, "directory": str(tmp_path / "built")}})
    assert main(["cache", str(recipe), "--shard-items", "10", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert '{"targets": 32, "global_token": 32} entries' in out and "32 items (16 images x 2 crops) in 4 shards of 10" in out
    folder = next(p for p in (tmp_path / "built").iterdir() if p.is_dir())
    assert sorted(p.name for p in folder.glob("*.safetensors"))[:2] == ["global_token-items-0000000000-0000000010.safetensors",
                                                                        "global_token-items-0000000010-0000000020.safetensors"]
    opened = FrozenCache(tmp_path / "built", json.loads((folder / "fingerprint.json").read_text()), __import__("torch").float32, 0, 16)
    assert opened.directory == folder and opened.entries == {"targets": {}, "global_token": {}}  # only ranges in memory
    assert opened.count("targets") == 32 and opened.has("15.1", ("targets", "global_token")) and not opened.has("16.1", ("targets",))

    built = run_recipe(recipe, tmp_path / "precomputed")
    lazy = run_recipe(recipe, tmp_path / "lazy", overrides=[f"cache.directory={tmp_path / 'lazy-cache'}"])
    plain = run_recipe(recipe, tmp_path / "plain", overrides=["cache.enabled=false"])
    for stage in ("stage1", "stage2"):
        assert _losses(lazy, stage) == _losses(plain, stage)  # bit for bit: the lazy fill computes on the training batch
        # the build computes in batches of its own shape: the encoder's GEMMs round differently in the last bit
        # (global tokens within 5e-7 here), so the losses agree to float32 rounding, not bit for bit
        assert _losses(built, stage) == pytest.approx(_losses(plain, stage), rel=1e-5)
    assert built["cache"]["misses"] == 0 and built["cache"]["hits"] > 0
    assert not list(folder.glob("*-r0-*.safetensors"))  # nothing was left to fill during training


def test_a_killed_build_resumes_at_the_first_missing_shard(tmp_path, capsys):
    recipe = write_recipe(tmp_path, {**CACHED, "cache": {"enabled": True}})
    args = ["cache", str(recipe), "-o", str(tmp_path / "run"), "--shard-items", "8", "--no-progress"]
    assert main(args) == 0
    folder = next((tmp_path / "run" / "cache").iterdir())
    (folder / "targets-items-0000000016-0000000024.safetensors").unlink()
    (folder / "global_token-items-0000000024-0000000032.safetensors").rename(folder / "x.partial")  # torn mid-write
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "2 of this process's 4 shards already written" in out and out.count("written, ") == 2
    assert len(list(folder.glob("*-items-*.safetensors"))) == 8
    # the run directory holds only the cache: a run starts in it without --resume, and --overwrite keeps the cache
    summary = run_recipe(recipe, tmp_path / "run")
    assert summary["cache"]["misses"] == 0
    run_recipe(recipe, tmp_path / "run", overwrite=True)
    assert len(list(folder.glob("*-items-*.safetensors"))) == 8


@pytest.mark.slow
def test_a_run_on_a_precomputed_cache_resumes_exactly(tmp_path):
    recipe = write_recipe(tmp_path, {**CACHED, "train": {**TINY["train"], "checkpoint_every": 2},
                                     "cache": {"enabled": True, "directory": str(tmp_path / "built")}})
    assert main(["cache", str(recipe), "--shard-items", "10", "--no-progress"]) == 0
    whole = run_recipe(recipe, tmp_path / "whole")

    resumed = interrupted_then_resumed(recipe, tmp_path / "resumed")
    for stage in ("stage1", "stage2"):
        assert _losses(resumed, stage) == _losses(whole, stage)
    assert resumed["cache"]["misses"] == 0


def test_cache_needs_the_cache_on_and_fixed_crops(tmp_path, capsys):
    recipe = write_recipe(tmp_path, FAST)
    assert main(["cache", str(recipe), "-o", str(tmp_path / "run")]) == 2
    assert "genhancer cache needs cache.enabled: true and data.fixed_crops > 0" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_build_their_own_shards_and_two_processes_train_on_them(tmp_path):
    recipe = write_recipe(tmp_path, {**CACHED, "data": {**CACHED["data"], "params": {"num_images": 32}, "batch_size": 4},
                                     "cache": {"enabled": True, "directory": str(tmp_path / "built")}})
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}

    def torchrun(*args):
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
                   "-m", "genhancer_plugins.cli", *map(str, args)]
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result

    built = torchrun("cache", recipe, "--shard-items", "16", "--no-progress")
    assert "64 items (32 images x 2 crops) in 4 shards of 16, 2 process(es)" in built.stdout
    assert '{"targets": 64, "global_token": 64} entries' in built.stdout
    torchrun("run", recipe, "-o", tmp_path / "precomputed", "--no-progress")
    torchrun("run", recipe, "-o", tmp_path / "lazy", "--no-progress", "--set", f"cache.directory={tmp_path / 'lazy-cache'}")
    precomputed, lazy = (json.loads((tmp_path / name / "run.json").read_text()) for name in ("precomputed", "lazy"))
    for stage in ("stage1", "stage2"):
        assert _losses(precomputed, stage) == pytest.approx(_losses(lazy, stage), rel=1e-5)
    assert precomputed["cache"]["misses"] == 0
