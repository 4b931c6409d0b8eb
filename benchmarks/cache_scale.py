"""Does a process's memory grow with the frozen-work cache? A 10,000-entry and a
100,000-entry cache, each built by `genhancer cache` with two processes, then read by a
two-process training run for one epoch of stage 1 (every entry read once).

The tiny recipe's sizes (tiny CLIP, tiny VAE, 32 px synthetic images, 2 fixed crops per
image): an entry is small, so what is measured is what the cache costs to index and
read, not the entries themselves. Peak RSS is the largest process's (``ru_maxrss`` of
the waited-for descendants: the build's and the run's workers, measured apart).

    python benchmarks/cache_scale.py                  # about 10 min on 2 cores
    python benchmarks/cache_scale.py --sizes 2000,20000 --keep /tmp/scale

Prints, per size: entries, shards, disk, build time and its peak RSS, training time and its
peak RSS, and the 100k/10k RSS ratio (the issue's bound: 1.3).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from genhancer_plugins.testing import TINY_RECIPE  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measured(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(seconds, peak RSS in GB of the largest process) of a command run to its end in a fresh child."""
    probe = ("import resource, subprocess, sys, json, time; start = time.perf_counter(); "
             "code = subprocess.run(sys.argv[1:]).returncode; "
             "print(json.dumps([code, time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))")
    result = subprocess.run([sys.executable, "-c", probe, *command], capture_output=True, text=True, env=env)
    code, seconds, peak_kb = json.loads(result.stdout.strip().splitlines()[-1])
    if code:
        raise SystemExit(f"{' '.join(command)} failed ({code}):\n{result.stderr[-3000:]}")
    return seconds, peak_kb / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="entries per cache (2 crops per image)")
    parser.add_argument("--keep", help="work here and keep it (default: a temporary directory, removed)")
    args = parser.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="genhancer-cache-scale-"))
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    rows = []
    try:
        for size in [int(s) for s in args.sizes.split(",")]:
            work = root / f"n{size}"
            work.mkdir(parents=True, exist_ok=True)
            recipe = {**TINY_RECIPE, "data": {"name": "synthetic", "params": {"num_images": size // 2}, "batch_size": 64,
                                              "fixed_crops": 2, "num_workers": 1},
                      "cache": {"enabled": True, "directory": str(work / "cache")}, "preview": {"images": 0},
                      "stage1": {"epochs": 1, "learning_rate": 1e-3}, "stage2": {"steps": 2, "learning_rate": 1e-3},
                      "train": {**TINY_RECIPE["train"], "log_every": 100}, "export": {"enabled": False}}
            path = work / "recipe.yaml"
            path.write_text(yaml.safe_dump(recipe, sort_keys=False))
            launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
            build_s, build_gb = measured([*launch, "--master_port", str(free_port()), "-m", "genhancer_plugins.cli", "cache",
                                          str(path), "--no-progress"], env)
            train_s, train_gb = measured([*launch, "--master_port", str(free_port()), "-m", "genhancer_plugins.cli", "run",
                                          str(path), "-o", str(work / "run"), "--no-progress"], env)
            summary = json.loads((work / "run" / "run.json").read_text())
            shards = list((work / "cache").glob("*/*-items-*.safetensors"))
            disk_mb = sum(p.stat().st_size for p in shards) / 2**20
            rows.append({"entries": size, "shards": len(shards), "disk_mb": round(disk_mb, 1), "build_s": round(build_s, 1),
                         "build_peak_rss_gb": round(build_gb, 3), "train_s": round(train_s, 1), "train_peak_rss_gb": round(train_gb, 3),
                         "misses": summary["cache"]["misses"], "hits": summary["cache"]["hits"]})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\n{'entries':>8} {'files':>6} {'disk MB':>8} {'build s':>8} {'build RSS GB':>12} {'train s':>8} {'train RSS GB':>12} {'hits':>8} {'misses':>6}")
    for r in rows:
        print(f"{r['entries']:>8,} {r['shards']:>6} {r['disk_mb']:>8} {r['build_s']:>8} {r['build_peak_rss_gb']:>12} {r['train_s']:>8} "
              f"{r['train_peak_rss_gb']:>12} {r['hits']:>8,} {r['misses']:>6}")
    if len(rows) >= 2:
        print(f"peak RSS, largest / smallest cache: build {rows[-1]['build_peak_rss_gb'] / rows[0]['build_peak_rss_gb']:.2f}x, "
              f"training {rows[-1]['train_peak_rss_gb'] / rows[0]['train_peak_rss_gb']:.2f}x")
    print(f"(command: python benchmarks/cache_scale.py --sizes {args.sizes}; peak RSS of the largest of 2 processes)")


if __name__ == "__main__":
    main()
