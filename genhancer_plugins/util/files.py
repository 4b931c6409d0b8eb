"""Writing files the way a run must: JSON atomically (a kill never leaves half a
file), and every file readable as the umask says (safetensors writes 0600)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a plain ``open(..., "w")`` would give: 0666 less the umask."""
    return 0o666 & ~_umask()


def respect_umask(path: str | Path) -> None:
    """Give a file (or every file below a directory) the umask's mode, as the rest of a run's output."""
    path = Path(path)
    mode = file_mode()
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    for file in files:
        os.chmod(file, mode)


def write_text(path: str | Path, text: str) -> None:
    """Write through a temporary file in the same directory and rename: the old
    content or the new one, never a torn file."""
    path = Path(path)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, data: Any, indent: int | None = 2) -> None:
    write_text(path, json.dumps(data, indent=indent))


def save_tensors(tensors: dict[str, Any], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """safetensors' ``save_file`` (no pickles), with the umask's file mode."""
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata=metadata if metadata is not None else {"format": "pt"})
    respect_umask(path)
