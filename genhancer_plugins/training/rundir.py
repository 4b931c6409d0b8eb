"""One run per directory: the lock, and what a resumed run may change.

- :class:`RunLock`: ``DIR/.genhancer.lock`` records the pid, host and start of the
  run writing ``DIR``; a second run (fresh, ``--resume`` or ``--overwrite``) is refused
  naming it. A lock whose process is gone (same host) is stale and taken over.
- :func:`recipe_changes`: a resume compares its recipe with the run's. Fields that
  shape the model or the data must match; steps, logging, checkpoint cadence,
  evaluation, previews, export options and downstream phases may change, and every
  recipe used is kept (``recipe.yaml`` is the first, ``recipe-history/`` the later ones).
"""

from __future__ import annotations

import json
import os
import platform
import re
import socket
import time
from pathlib import Path
from typing import Any

from genhancer_plugins import __version__
from genhancer_plugins.recipe.files import flatten
from genhancer_plugins.util.errors import RunError
from genhancer_plugins.util.files import write_text

LOCK_FILE = ".genhancer.lock"
HISTORY_DIR = "recipe-history"

#: Dotted recipe paths a resume may change (everything else shapes the model or the data).
SAFE_ON_RESUME = [re.compile(p) for p in (
    r"^(name|description|output_dir)$",
    r"^train\.(log_every|report_to|checkpoint_every|keep_checkpoints|num_threads)$",
    r"^stage[12]\.(steps|epochs)$",
    r"^data\.num_workers$",
    r"^(eval|preview|export)(\.|$)",
)]


class RunLock:
    def __init__(self, directory: Path):
        self.path = Path(directory) / LOCK_FILE
        self.held = False

    def _owner(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    @staticmethod
    def _alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # someone else's live process
            return True
        return True

    def acquire(self, log: Any) -> None:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(2):
            try:
                handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                owner = self._owner()
                if owner and owner.get("host") == me["host"] and not self._alive(int(owner.get("pid", -1))):
                    log(f"warning: taking over the stale lock of pid {owner['pid']} (no such process) in {self.path}")
                    self.path.unlink(missing_ok=True)
                    continue
                who = (f"pid {owner.get('pid')} on {owner.get('host')}, since {owner.get('started')}" if owner
                       else "a process whose lock file is unreadable")
                raise RunError(f"{self.path.parent} is in use by another run ({who}); wait for it to end, or delete "
                               f"{self.path} if that run is gone") from None
            with os.fdopen(handle, "w") as f:
                json.dump(me, f)
            self.held = True
            return
        raise RunError(f"could not lock {self.path.parent}")

    def release(self) -> None:
        if self.held:
            owner = self._owner()
            if owner is None or owner.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False


def recipe_changes(saved_raw: dict[str, Any], new_raw: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(refused, allowed): the dotted paths where two recipes (resolved mappings) differ once
    defaults are filled in, split by :data:`SAFE_ON_RESUME`; phase sections may always change."""
    from genhancer_plugins.recipe.schema import Recipe

    saved, new = Recipe.model_validate(saved_raw), Recipe.model_validate(new_raw)
    phases = set(saved.phases()) | set(new.phases())
    a = flatten(saved.model_dump(mode="json", exclude=phases))
    b = flatten(new.model_dump(mode="json", exclude=phases))
    refused, allowed = [], []
    for path in sorted(set(a) | set(b)):
        if a.get(path) == b.get(path):
            continue
        line = f"{path}: {json.dumps(a.get(path))} -> {json.dumps(b.get(path))}"
        (allowed if any(p.match(path) for p in SAFE_ON_RESUME) else refused).append(line)
    for name in sorted(phases):
        if saved_raw.get(name) != new_raw.get(name):
            allowed.append(f"{name}: changed")
    return refused, allowed


def latest_recipe(directory: Path) -> Path | None:
    """The recipe the run in ``directory`` last ran with."""
    history = sorted((directory / HISTORY_DIR).glob("*.yaml")) if (directory / HISTORY_DIR).is_dir() else []
    if history:
        return history[-1]
    return directory / "recipe.yaml" if (directory / "recipe.yaml").is_file() else None


def record_recipe(directory: Path, resolved_yaml: str) -> Path:
    """``recipe.yaml`` for the first recipe; a later, different one goes to
    ``recipe-history/NNN.yaml``. Nothing is overwritten."""
    first = directory / "recipe.yaml"
    if not first.is_file():
        write_text(first, resolved_yaml)
        return first
    history = directory / HISTORY_DIR
    previous = sorted(history.glob("*.yaml")) if history.is_dir() else []
    latest = latest_recipe(directory)
    if latest is not None and latest.read_text() == resolved_yaml:
        return latest
    history.mkdir(exist_ok=True)
    path = history / f"{len(previous) + 1:03d}.yaml"
    write_text(path, resolved_yaml)
    return path


def library_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {"genhancer": __version__, "python": platform.python_version()}
    for name in ("torch", "transformers", "diffusers", "peft", "accelerate"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def earlier_invocations(summary: Path) -> list[float]:
    """The wall times an earlier ``run.json`` recorded (one per invocation; older files have one total)."""
    try:
        data = json.loads(summary.read_text())
    except (OSError, ValueError):
        return []
    times = data.get("invocations_s")
    if isinstance(times, list) and all(isinstance(t, (int, float)) for t in times):
        return [float(t) for t in times]
    return [float(data["wall_time_s"])] if isinstance(data.get("wall_time_s"), (int, float)) else []


def hardware(accelerator: Any) -> dict[str, Any]:
    """What the run ran on, for run.json and model cards."""
    import torch

    device = accelerator.device
    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores")
    return {"device": str(device), "device_name": name, "processes": accelerator.num_processes}
