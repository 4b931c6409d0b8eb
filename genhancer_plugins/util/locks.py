"""A lock on a location several runs share (the pretrained-encoder cache, a
frozen-work cache directory): the second run waits until the first is done.

``fcntl.flock`` on ``<path>.lock``: the operating system drops the lock when its
holder exits, however it exits (kill -9 included), so a crashed run never leaves
the location stuck. The lock file records the holder's pid and host, for the
message a waiting run prints.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable, Iterator


@contextlib.contextmanager
def shared_lock(path: str | Path, log: Callable[[str], None] = lambda message: None, poll_s: float = 1.0) -> Iterator[Path]:
    """Hold ``<path>.lock`` for the ``with`` block (waiting, and saying once who holds it)."""
    lock_path = Path(str(path) + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    handle = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o666)
    try:
        said = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not said:
                    log(f"waiting for {_holder(lock_path)}, which holds {lock_path} (shared with this run)")
                    said = True
                time.sleep(poll_s)
        os.ftruncate(handle, 0)
        os.write(handle, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                     "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        yield lock_path
    finally:
        os.close(handle)  # closing drops the lock


def _holder(lock_path: Path) -> str:
    try:
        owner: dict[str, Any] = json.loads(lock_path.read_text())
        return f"pid {owner['pid']} on {owner['host']} (since {owner['since']})"
    except (OSError, ValueError, KeyError):
        return "another process"
