"""Two torch processes on the same cores: torch's default threads against GenHancer's share.

Each process trains a small MLP (a forward, a backward, no optimiser: the thread
contention is what is measured) for ``--seconds``. Variants, interleaved round by
round (the machine is shared and noisy):

- ``alone``: one process, torch's default threads (one per core);
- ``default x2``: two processes at once, each with torch's default threads;
- ``shared x2``: two processes at once, each calling ``set_cpu_threads()`` as a run does
  (each sees the other registered and takes its share of the usable cores).

    python benchmarks/cpu_threads.py                      # 3 rounds of 8 s
    python benchmarks/cpu_threads.py --rounds 5 --seconds 10

Prints steps/s per process (min / median / max over rounds and processes) and, for the
pairs, the throughput of both together as a ratio to ``alone``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

WORK = """
import sys, time, torch
mode, seconds = sys.argv[1], float(sys.argv[2])
if mode == "shared":
    from genhancer_plugins.util.threads import set_cpu_threads
    set_cpu_threads()
ready = sys.stdin.readline()  # both processes start computing together
if mode == "shared":  # what a run's step-end check does within REFRESH_S: see the other process
    from genhancer_plugins.util import threads
    threads.REFRESH_S = 0.0
    threads.refresh_cpu_threads()
torch.manual_seed(0)
x, layer = torch.randn(256, 512), torch.nn.Sequential(torch.nn.Linear(512, 512), torch.nn.GELU(), torch.nn.Linear(512, 512))
start, steps = time.perf_counter(), 0
while time.perf_counter() - start < seconds:
    layer(x).square().mean().backward()
    steps += 1
print(torch.get_num_threads(), steps / (time.perf_counter() - start), flush=True)
"""


def run_together(mode: str, count: int, seconds: float, registry: str) -> list[tuple[int, float]]:
    env = dict(os.environ, TMPDIR=registry)  # a registry of its own: other GenHancer processes do not count here
    env.pop("OMP_NUM_THREADS", None)
    procs = [subprocess.Popen([sys.executable, "-c", WORK, mode, str(seconds)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=env) for _ in range(count)]
    time.sleep(3.0)  # imports done, registrations in place
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + 120)
        threads, rate = out.split()
        results.append((int(threads), float(rate)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    variants = {"alone": ("default", 1), "default x2": ("default", 2), "shared x2": ("shared", 2)}
    rates: dict[str, list[float]] = {name: [] for name in variants}
    totals: dict[str, list[float]] = {name: [] for name in variants}
    threads: dict[str, set[int]] = {name: set() for name in variants}
    with tempfile.TemporaryDirectory() as registry:
        for _ in range(args.rounds):
            for name, (mode, count) in variants.items():
                results = run_together(mode, count, args.seconds, registry)
                rates[name] += [rate for _, rate in results]
                totals[name].append(sum(rate for _, rate in results))
                threads[name] |= {t for t, _ in results}
    alone = statistics.median(totals["alone"])
    print(f"{'variant':<12} {'threads':>7} {'steps/s per process (min / median / max)':>42} {'both together / alone':>22}")
    for name in variants:
        r = rates[name]
        print(f"{name:<12} {','.join(map(str, sorted(threads[name]))):>7} "
              f"{min(r):>14.1f} / {statistics.median(r):>8.1f} / {max(r):>8.1f}     {statistics.median(totals[name]) / alone:>18.2f}")
    print(f"({args.rounds} rounds of {args.seconds:g} s, interleaved; command: python benchmarks/cpu_threads.py "
          f"--rounds {args.rounds} --seconds {args.seconds:g})")


if __name__ == "__main__":
    main()
