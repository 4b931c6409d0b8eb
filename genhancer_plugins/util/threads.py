"""How many CPU threads a process computes with.

torch starts as many intra-op threads as the machine has cores, in every process:
two processes on two cores then fight over them (measured here: each ran at a fifth
of its speed alone; with one thread each, at two thirds). So a process takes the cores
it may use (its CPU affinity: ``taskset``, a cluster's cgroup) divided by the
GenHancer processes computing on them: those a launcher started on this node
(``LOCAL_WORLD_SIZE``) and every other run, benchmark or test session of this user,
each of which holds a lock file in :data:`REGISTRY` while it lives (``flock``: a killed
process leaves none behind). A run looks again every :data:`REFRESH_S` seconds and
follows when one starts or ends. ``train.num_threads`` fixes the number; so does
``OMP_NUM_THREADS`` set by the user outside a launcher (a launcher sets its own).
Processes that are not GenHancer's are not counted.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from pathlib import Path

REGISTRY = Path(tempfile.gettempdir()) / f"genhancer-processes-{os.getuid()}"
REFRESH_S = 10.0


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class _Registration:
    """This process's lock file in the registry, held until it exits."""

    def __init__(self) -> None:
        self.path = REGISTRY / f"{os.getpid()}.lock"
        try:
            REGISTRY.mkdir(parents=True, exist_ok=True)
            self.handle: int | None = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a read-only /tmp: count only this process and the launcher's
            self.handle = None

    def others(self) -> int:
        """Live GenHancer processes of this user besides this one (stale files are removed)."""
        if self.handle is None:
            return 0
        count = 0
        for path in REGISTRY.glob("*.lock"):
            if path == self.path:
                continue
            try:
                handle = os.open(path, os.O_RDWR)
            except OSError:
                continue
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                path.unlink(missing_ok=True)  # its holder is gone
            except BlockingIOError:
                count += 1
            finally:
                os.close(handle)
        return count


_registration: _Registration | None = None
_state = {"requested": None, "threads": 0, "checked": 0.0}


def cpu_threads(requested: int | None = None, others: int = 0) -> tuple[int, str]:
    """(threads, why): the intra-op threads for this process beside ``others`` GenHancer processes."""
    if requested:
        return requested, "train.num_threads"
    local = int(os.environ.get("LOCAL_WORLD_SIZE") or 0)
    omp = os.environ.get("OMP_NUM_THREADS", "")
    if not local and omp.isdigit() and int(omp) > 0:
        return int(omp), "OMP_NUM_THREADS"
    cores, sharing = usable_cores(), max(local, others + 1, 1)
    return max(1, cores // sharing), f"{cores} usable core(s)" + (f" / {sharing} GenHancer processes" if sharing > 1 else "")


def set_cpu_threads(requested: int | None = None) -> str:
    """Register this process, set torch's intra-op threads; returns the start-up line's words for it."""
    import torch

    global _registration
    if _registration is None:
        _registration = _Registration()
    threads, why = cpu_threads(requested, _registration.others())
    torch.set_num_threads(threads)
    _state.update(requested=requested, threads=threads, checked=time.monotonic())
    return f"{threads} CPU thread(s) ({why})"


def refresh_cpu_threads() -> str | None:
    """At most every REFRESH_S: follow GenHancer processes that started or ended; a line when the number changed."""
    import torch

    now = time.monotonic()
    if _registration is None or _state["requested"] or now - _state["checked"] < REFRESH_S:
        return None
    _state["checked"] = now
    threads, why = cpu_threads(None, _registration.others())
    if threads == _state["threads"]:
        return None
    before, _state["threads"] = _state["threads"], threads
    torch.set_num_threads(threads)
    return f"CPU threads {before} -> {threads} ({why})"
