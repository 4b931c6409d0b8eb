"""Failures found before anything runs, one line for each common mistake, shared state
locked, threads that fit the cores: what a new user's first hour must not lose time to."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import ROOT, TINY, write_recipe

from genhancer_plugins.cli import main
from genhancer_plugins.util.errors import RunError

FAST = {**TINY, "stage1": {"steps": 2, "learning_rate": 1e-3}, "stage2": {"steps": 2, "learning_rate": 1e-3}, "preview": {"images": 0}}


def cli(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- every phase's inputs, before the first one starts --------------------------------
@pytest.mark.needs_llava
def test_a_llava_recipe_whose_data_are_missing_is_refused_before_anything_trains(tmp_path, capsys):
    llava = {
        "language_model_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                                  "num_key_value_heads": 2, "max_position_embeddings": 256},
        "tokenizer_corpus": [str(tmp_path / "corpus.txt")],
        "pretrain": {"data": str(tmp_path / "pretrain.json"), "learning_rate": 1e-3},
        "finetune": {"data": str(tmp_path / "finetune.json"), "image_folder": str(tmp_path / "images"), "learning_rate": 1e-4,
                     "deepspeed": "zero4"},
        "eval": [{"name": "multiple_choice", "params": {"file": str(tmp_path / "eval.jsonl")}}],
    }
    recipe = write_recipe(tmp_path, {**FAST, "llava": llava})
    code, out, _ = cli(capsys, "validate", recipe)
    assert code == 1 and "recipe is valid, but 6 inputs are not ready" in out
    for line in (f"llava: pretrain.data: LLaVA data file {tmp_path / 'pretrain.json'} not found",
                 f"llava: finetune.data: LLaVA data file {tmp_path / 'finetune.json'} not found",
                 f"llava: finetune.image_folder: image folder {tmp_path / 'images'} not found",
                 "llava: finetune.deepspeed: zero4 is neither zero2, zero3 nor a DeepSpeed config file",
                 f"llava: tokenizer_corpus: {tmp_path / 'corpus.txt'} not found",
                 f"llava: eval: multiple_choice: {tmp_path / 'eval.jsonl'} not found"):
        assert f"  {line}" in out, (line, out)
    start = time.perf_counter()
    code, out, err = cli(capsys, "run", recipe, "-o", tmp_path / "run", "--no-progress")
    assert code == 2 and "6 inputs are not ready, nothing was started" in err and "llava: finetune.data" in err
    assert time.perf_counter() - start < 30 and not (tmp_path / "run").exists() and "stage1" not in out


def test_a_cache_location_that_is_a_file_is_refused_at_once(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GENHANCER_CACHE", str(tmp_path / "cache-file"))
    (tmp_path / "cache-file").write_text("not a directory")
    recipe = write_recipe(tmp_path, {**FAST, "pretrain": {"name": "shapes_classifier", "params": {"steps": 2}}})
    start = time.perf_counter()
    code, _, err = cli(capsys, "run", recipe, "-o", tmp_path / "run")
    assert code == 2 and f"pretrain (shapes_classifier): cache (GENHANCER_CACHE) {tmp_path / 'cache-file' / 'pretrained'}: " \
                         f"{tmp_path / 'cache-file'} is not a directory" in err
    assert time.perf_counter() - start < 30 and not (tmp_path / "run").exists()
    shared = write_recipe(tmp_path, {**FAST, "data": {**TINY["data"], "fixed_crops": 1},
                                     "cache": {"enabled": True, "directory": str(tmp_path / "cache-file")}}, "shared.yaml")
    code, out, _ = cli(capsys, "validate", shared)
    assert code == 1 and f"  cache.directory: frozen-work cache {tmp_path / 'cache-file'} exists and is not a directory" in out


def test_a_hub_model_that_will_not_load_names_the_component_field_and_id_without_waiting(tmp_path, capsys, monkeypatch):
    from genhancer_plugins.util import hub

    recipe = write_recipe(tmp_path, {**FAST, "encoder": {"name": "clip", "params": {"source": "nobody/no-such-clip", "config": None}}})
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = cli(capsys, "run", recipe, "-o", tmp_path / "run")
    assert code == 2 and "encoder (clip): params.source: hub id 'nobody/no-such-clip' is not in the Hugging Face cache and " \
                         "HF_HUB_OFFLINE is set" in err
    # online, but the hub out of reach: said after one short connection attempt, not half a minute of retries
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    hub._reachable.cache_clear()
    start = time.perf_counter()
    code, _, err = cli(capsys, "run", recipe, "-o", tmp_path / "run")
    assert code == 2 and "'nobody/no-such-clip' is not in the Hugging Face cache and http://127.0.0.1:9 cannot be reached" in err
    assert time.perf_counter() - start < hub.CONNECT_TIMEOUT_S + 20
    # a local path that is not there, and a directory that is no model
    (tmp_path / "empty").mkdir()
    for source, message in ((tmp_path / "gone", "no such file or directory"), (tmp_path / "empty", "not a model directory (no config.json")):
        code, _, err = cli(capsys, "run", recipe, "-o", tmp_path / "run", "--set", f"encoder.params.source={source}")
        assert code == 2 and f"encoder (clip): params.source: {source}: {message}" in err


def test_a_model_that_fails_to_load_after_the_check_still_names_its_component(tmp_path, monkeypatch):
    from genhancer_plugins.recipe.build import build_models, resolve_components
    from genhancer_plugins.recipe.schema import load_recipe
    from genhancer_plugins.registry.manager import load_plugins

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    manager = load_plugins()
    recipe = write_recipe(tmp_path, {**FAST, "encoder": {"name": "clip", "params": {"source": "nobody/no-such-clip", "config": None}}})
    with pytest.raises(RunError, match=r"^encoder \(clip\): params.source 'nobody/no-such-clip' did not load: "):
        build_models(resolve_components(load_recipe(recipe, manager=manager), manager))


def test_mistakes_about_the_machine_are_one_line(tmp_path, capsys, monkeypatch):
    recipe = write_recipe(tmp_path, FAST)
    if not torch.cuda.is_available():
        code, _, err = cli(capsys, "run", recipe, "-o", tmp_path / "run", "--set", "train.mixed_precision=fp16")
        assert code == 2 and "train.mixed_precision: fp16 needs a CUDA GPU and none is available" in err and "Traceback" not in err
        code, _, err = cli(capsys, "eval", "zeroshot", "-m", tmp_path, "-o", tmp_path / "e", "--device", "cuda")
        assert code == 2 and "--device cuda: this torch" in err and "sees no CUDA GPU; use --device cpu" in err
        code, _, err = cli(capsys, "bench", recipe, "--device", "cuda:1")
        assert code == 2 and "sees no CUDA GPU" in err
    code, _, err = cli(capsys, "bench", recipe, "--device", "gpu")
    assert code == 2 and "--device 'gpu': expected cpu, cuda or cuda:N" in err
    # a tracker that is not installed: refused before training, with the command that installs it
    from genhancer_plugins.recipe import preflight

    monkeypatch.setitem(preflight.TRACKERS, "wandb", ("genhancer_no_such_module", "wandb"))
    code, _, err = cli(capsys, "run", recipe, "-o", tmp_path / "run", "--set", "train.report_to=[wandb]")
    assert code == 2 and "train.report_to: wandb is not installed: `pip install wandb`" in err
    assert not (tmp_path / "run").exists()


def test_silent_mistakes_are_refused_in_one_line(tmp_path, capsys):
    recipe = write_recipe(tmp_path, FAST)
    mistakes = [
        (["run", recipe, "-o", tmp_path / "never-ran", "--resume"], f"--resume: {tmp_path / 'never-ran'} does not exist"),
        (["--disable-plugin", "nosuch", "plugins"], "--disable-plugin nosuch: no such plugin; installed: "),
        (["reconstruct", "--run", tmp_path, "--images", recipe, "--steps", "0"], "--steps 0: sampling needs at least 1 step"),
        (["eval", "zeroshot", "-p", "root", "-m", tmp_path, "-o", tmp_path / "e"], "--param/-p 'root': expected KEY=VALUE, for example root="),
        (["validate", ROOT / "recipes" / "paper" / "base.yaml"], "base.yaml: a base recipe to extend (abstract: true), not one to run; "
                                                                  "run one that extends it, e.g. clip_l14_224.yaml"),
    ]
    for args, message in mistakes:
        code, _, err = cli(capsys, *args)
        assert code == 2 and message in err and "Traceback" not in err, (args, err)
    assert not (tmp_path / "never-ran").exists()


@pytest.mark.slow
def test_a_report_is_not_overwritten_and_counts_every_invocation(tmp_path, capsys):
    recipe = write_recipe(tmp_path, FAST)
    out = tmp_path / "run"
    assert cli(capsys, "run", recipe, "-o", out, "--no-progress")[0] == 0
    first = json.loads((out / "run.json").read_text())
    assert cli(capsys, "run", recipe, "-o", out, "--no-progress", "--resume", "--set", "stage2.steps=4")[0] == 0
    summary = json.loads((out / "run.json").read_text())
    assert len(summary["invocations_s"]) == 2 and summary["invocations_s"][0] == first["wall_time_s"]
    assert summary["wall_time_s"] == pytest.approx(sum(summary["invocations_s"]), abs=0.02)
    assert cli(capsys, "report", out, "-o", tmp_path / "report")[0] == 0
    page = (tmp_path / "report" / "report.md").read_text()
    assert f"| {summary['wall_time_s']} |" in page
    (tmp_path / "report" / "report.md").write_text("my notes")
    code, _, err = cli(capsys, "report", out, "-o", tmp_path / "report")
    assert code == 2 and "report.md exists; pass --overwrite" in err
    assert (tmp_path / "report" / "report.md").read_text() == "my notes"
    assert cli(capsys, "report", out, "-o", tmp_path / "report", "--overwrite")[0] == 0


# -- Ctrl-C ----------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])  # Ctrl-C, and a scheduler ending the job
def test_ctrl_c_says_where_it_stopped_and_the_command_that_continues(tmp_path, stop):
    recipe = write_recipe(tmp_path, {**FAST, "stage1": {"steps": 200, "learning_rate": 1e-3},
                                     "train": {**FAST.get("train", {}), "checkpoint_every": 5}})
    out = tmp_path / "run"
    env = dict(os.environ, GENHANCER_RESUME_HINT="make demo")
    command = [sys.executable, "-m", "genhancer_plugins.cli", "run", str(recipe), "-o", str(out), "--no-progress"]
    running = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for _ in range(1200):
            if list((out / "stage1" / "checkpoints").glob("checkpoint-*/state.json")) or running.poll() is not None:
                break
            time.sleep(0.1)
        running.send_signal(stop)
        _, err = running.communicate(timeout=120)
    finally:
        running.kill()
    assert running.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("genhancer: interrupted in stage1; a resume continues from its checkpoint at step ")
    assert lines[0].endswith(f"of 200; continue with: genhancer run {recipe} --output-dir {out} --resume --no-progress (or: make demo)")
    assert not (out / ".genhancer.lock").exists()
    summary = json.loads((out / "run.json").read_text())
    assert summary["completed"] is False and summary["invocations_s"][0] > 0  # the interrupted time counts
    resumed = subprocess.run([sys.executable, "-m", "genhancer_plugins.cli", "run", str(recipe), "--output-dir", str(out), "--resume",
                              "--no-progress"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "stage1: resuming from " in resumed.stdout and json.loads((out / "run.json").read_text())["completed"]


# -- shared state ----------------------------------------------------------------------
HOLD = """
import sys, time
from genhancer_plugins.util.locks import shared_lock
with shared_lock(sys.argv[1]):
    print("held", flush=True)
    if len(sys.argv) > 2:  # "training" for a second, then the result in place
        time.sleep(1)
        import pathlib; pathlib.Path(sys.argv[2]).mkdir(parents=True); (pathlib.Path(sys.argv[2]) / "pretrain.json").write_text("{}")
    else:
        time.sleep(600)
"""


def _holder(*args):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, *map(str, args)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_shared_lock_waits_for_its_holder_and_a_killed_holder_never_leaves_it_stuck(tmp_path):
    from genhancer_plugins.util.locks import shared_lock

    holder = _holder(tmp_path / "cache" / "entry")
    said = []
    killer = subprocess.Popen([sys.executable, "-c", f"import time, os; time.sleep(1.5); os.kill({holder.pid}, 9)"])
    start = time.perf_counter()
    with shared_lock(tmp_path / "cache" / "entry", said.append, poll_s=0.1):
        waited = time.perf_counter() - start
    killer.wait()
    holder.wait()
    assert waited > 1.0 and len(said) == 1 and f"waiting for pid {holder.pid} on " in said[0]
    with shared_lock(tmp_path / "cache" / "entry", said.append):  # free again at once
        pass
    assert len(said) == 1


def test_a_second_run_waits_for_the_pretrainer_of_the_first_and_reuses_its_result(tmp_path):
    from genhancer_miniature.components import ShapesClassifier
    from genhancer_miniature.params import ShapesClassifierParams

    pretrainer = ShapesClassifier(ShapesClassifierParams(steps=2))
    target = tmp_path / "pretrained" / pretrainer.key
    holder = _holder(target, target)  # another run, training the same encoder into the shared cache
    said = []
    start = time.perf_counter()
    answer = pretrainer.encoder_params(tmp_path, said.append)
    holder.wait()
    assert answer["source"] == str(target) and time.perf_counter() - start > 0.5
    assert any("waiting for pid" in line for line in said) and not any("training the shapes classifier" in line for line in said)


# -- threads ---------------------------------------------------------------------------
def test_threads_follow_the_usable_cores_and_the_local_processes(monkeypatch):
    from genhancer_plugins.util import threads

    monkeypatch.setattr(threads, "usable_cores", lambda: 16)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert threads.cpu_threads() == (16, "16 usable core(s)")
    assert threads.cpu_threads(others=3) == (4, "16 usable core(s) / 4 GenHancer processes")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # a launcher's own default: the share of the cores wins
    assert threads.cpu_threads() == (4, "16 usable core(s) / 4 GenHancer processes")
    assert threads.cpu_threads(3) == (3, "train.num_threads")
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user's own choice
    assert threads.cpu_threads() == (2, "OMP_NUM_THREADS")


REGISTERED = """
import time
from genhancer_plugins.util.threads import set_cpu_threads
print(set_cpu_threads(), flush=True)
time.sleep(600)
"""


def test_a_second_genhancer_process_halves_the_threads_and_its_end_restores_them(tmp_path, monkeypatch):
    from genhancer_plugins.util import threads

    registry = tmp_path / f"genhancer-processes-{os.getuid()}"  # where the other process, with TMPDIR here, registers
    monkeypatch.setattr(threads, "REGISTRY", registry)
    monkeypatch.setattr(threads, "_registration", None)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "REFRESH_S", 0.0)
    for name in ("OMP_NUM_THREADS", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    before = torch.get_num_threads()
    env = dict(os.environ, TMPDIR=str(tmp_path))
    try:
        assert threads.set_cpu_threads() == "2 CPU thread(s) (2 usable core(s))"
        other = subprocess.Popen([sys.executable, "-c", REGISTERED], stdout=subprocess.PIPE, text=True, env=env)
        assert other.stdout.readline().strip() == "1 CPU thread(s) (2 usable core(s) / 2 GenHancer processes)"
        assert threads.refresh_cpu_threads() == "CPU threads 2 -> 1 (2 usable core(s) / 2 GenHancer processes)"
        assert torch.get_num_threads() == 1
        other.kill()
        other.wait()
        assert threads.refresh_cpu_threads() == "CPU threads 1 -> 2 (2 usable core(s))"
        assert [p.name for p in threads.REGISTRY.iterdir()] == [f"{os.getpid()}.lock"]  # the killed one's file is gone
    finally:
        torch.set_num_threads(before)


def test_the_start_up_line_says_how_many_threads_and_num_threads_may_change_on_resume(tmp_path, capsys):
    recipe = write_recipe(tmp_path, FAST)
    before = torch.get_num_threads()
    try:
        code, out, _ = cli(capsys, "run", recipe, "-o", tmp_path / "run", "--no-progress", "--set", "train.num_threads=1")
        assert code == 0 and "precision no, 1 CPU thread(s) (train.num_threads)" in out
        code, out, _ = cli(capsys, "run", recipe, "-o", tmp_path / "run", "--no-progress", "--resume", "--set", "train.num_threads=2")
        assert code == 0 and "train.num_threads: 1 -> 2" in out
    finally:
        torch.set_num_threads(before)


def test_bench_says_which_batch_did_not_fit_and_goes_on_with_the_others(tmp_path, monkeypatch):
    from genhancer_plugins.commands import bench
    from genhancer_plugins.recipe.schema import load_recipe
    from genhancer_plugins.registry.manager import load_plugins

    count, step = bench.count_flops, bench._timed_step

    def count_small(model, batch, device):  # as on a full GPU: the FLOP count's batch of 2 does not fit
        if batch > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return count(model, batch, device)

    def step_small(model, optimizer, images, frozen, autocast):
        if images.shape[0] >= 4:
            raise RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 1073741824 bytes")
        return step(model, optimizer, images, frozen, autocast)

    monkeypatch.setattr(bench, "count_flops", count_small)
    monkeypatch.setattr(bench, "_timed_step", step_small)
    manager = load_plugins()
    said = []
    result = bench.run_bench(load_recipe(write_recipe(tmp_path, FAST), manager=manager), manager, [1, 4], ["stage1"], steps=1,
                             warmup=0, device="cpu", log=said.append)
    fitted, too_big = result["rows"]
    assert fitted["images_per_s"] > 0 and fitted["flops_per_image"] > 0 and fitted["error"] is None
    assert too_big["error"] == "out of memory" and too_big["images_per_s"] is None
    assert "bench: stage1: counting FLOPs at batch 2 ran out of memory; counting at batch 1" in said
    assert "bench: stage1 at batch 4 did not fit in memory; going on with the other batch sizes" in said
    assert "out of memory" in bench.render_bench(result)


def test_the_demo_checkpoints_often_enough_that_ctrl_c_loses_little():
    from genhancer_plugins.recipe.schema import load_recipe

    recipe = load_recipe(ROOT / "recipes" / "experiments" / "main.yaml").recipe
    every = recipe.train.checkpoint_every
    # the demo trains ~0.15 s/step on 2 cores (README): 100 steps is ~15-40 s of work at risk, under a minute even on busy cores
    assert 0 < every <= 100 and recipe.stage1.steps // every >= 4
