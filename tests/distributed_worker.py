"""Run by test_distributed.py under torchrun: one rank of a two-process run.

Records, per rank, a fingerprint of every weight at the end of each stage and
every file write aimed at the output directory, then writes a report.
"""

import builtins
import hashlib
import json
import os
import pathlib
import shutil
import sys

import safetensors.torch
import torch

recipe, output_dir, report_dir = sys.argv[1:4]
mode = sys.argv[4] if len(sys.argv) > 4 else ""  # "crash:<stage>:<step>" stops there; "resume" continues
rank = int(os.environ["RANK"])
writes = []
_open = builtins.open


def watch(path):
    path = os.path.abspath(str(path))
    if path.startswith(os.path.abspath(output_dir)):
        writes.append(path)


def opened(file, mode="r", *args, **kwargs):
    if any(flag in mode for flag in "wax+"):
        watch(file)
    return _open(file, mode, *args, **kwargs)


def wrap(owner, name, arg=0):
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        watch(args[arg])
        return original(*args, **kwargs)

    setattr(owner, name, wrapper)


builtins.open = opened
wrap(safetensors.torch, "save_file", 1)
wrap(os, "replace")
wrap(os, "rename")
wrap(shutil, "rmtree")
wrap(pathlib.Path, "mkdir")
wrap(pathlib.Path, "write_text")
wrap(pathlib.Path, "unlink")

sys.path.insert(0, os.path.dirname(__file__))
import genhancer_hf_encoders.encoders as encoders  # noqa: E402
from helpers import run_recipe  # noqa: E402

import genhancer_plugins.training.checkpoint as checkpoint  # noqa: E402
from genhancer_plugins import hookimpl  # noqa: E402
from genhancer_plugins.training.sharding import full  # noqa: E402

checkpoint.save_file = safetensors.torch.save_file
encoders.save_file = safetensors.torch.save_file

fingerprints = {}


class Fingerprint:
    @hookimpl
    def genhancer_stage_end(self, stage):
        digest = hashlib.sha256()
        for _name, module in sorted(stage.modules.items()):
            for key, tensor in sorted(module.state_dict().items()):
                digest.update(key.encode())
                digest.update(full(tensor.detach()).to(torch.float32).contiguous().numpy().tobytes())
        fingerprints[stage.stage] = {"sha256": digest.hexdigest(), "processes": stage.num_processes}


class Crash:
    @hookimpl
    def genhancer_step_end(self, step):
        _, stage, at = mode.split(":")
        if step.stage == stage and step.step == int(at):
            raise SystemExit(3)


plugins = [(Fingerprint(), "fingerprint")] + ([(Crash(), "crash")] if mode.startswith("crash") else [])
summary = run_recipe(pathlib.Path(recipe), pathlib.Path(output_dir), plugins=plugins, resume=mode == "resume")
builtins.open = _open
with _open(os.path.join(report_dir, f"rank{rank}.json"), "w") as f:
    json.dump({"fingerprints": fingerprints, "writes": writes, "num_processes": summary["num_processes"]}, f)
