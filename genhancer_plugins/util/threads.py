"""How many CPU threads a process computes with.

torch starts as many intra-op threads as the machine has cores, in every process:
two processes on two cores then fight over them, and each runs many times slower.
A process here takes the cores it may use (its CPU affinity, e.g. under ``taskset``
or a cluster's cgroup) divided by the processes a launcher started on this node
(``LOCAL_WORLD_SIZE``). ``train.num_threads`` overrides it; so does
``OMP_NUM_THREADS`` when set by the user (outside a launcher, which sets its own).
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cpu_threads(requested: int | None = None) -> tuple[int, str]:
    """(threads, why): the intra-op threads for this process, and where the number comes from."""
    if requested:
        return requested, "train.num_threads"
    local = int(os.environ.get("LOCAL_WORLD_SIZE") or 0)
    omp = os.environ.get("OMP_NUM_THREADS", "")
    if not local and omp.isdigit() and int(omp) > 0:
        return int(omp), "OMP_NUM_THREADS"
    cores = usable_cores()
    threads = max(1, cores // max(local, 1))
    return threads, f"{cores} usable core(s)" + (f" / {local} local processes" if local > 1 else "")


def set_cpu_threads(requested: int | None = None) -> str:
    """Set torch's intra-op threads; returns the start-up line's words for it."""
    import torch

    threads, why = cpu_threads(requested)
    torch.set_num_threads(threads)
    return f"{threads} CPU thread(s) ({why})"
