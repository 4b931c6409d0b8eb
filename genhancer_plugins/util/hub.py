"""Whether a model a recipe names will load, known before a run starts.

A source is a local path (a directory in the Hugging Face layout, or a weights
file) or a hub id. A hub id loads when it is in the Hugging Face cache, or when
the hub can be reached; offline (``HF_HUB_OFFLINE``) or with the hub out of
reach, a missing id is said in one line naming it, instead of transformers'
generic message after half a minute of retries.
"""

from __future__ import annotations

import contextlib
import os
import socket
from functools import lru_cache
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

from genhancer_plugins.util.errors import RunError, first_line

#: how long the reachability check waits for the hub (seconds)
CONNECT_TIMEOUT_S = 3.0


def offline_mode() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def looks_local(source: str) -> bool:
    """A path rather than a hub id (``owner/name`` or ``name``)."""
    return source.startswith(("/", ".", "~")) or source.count("/") > 1 or Path(source).expanduser().exists()


@lru_cache(maxsize=4)
def _reachable(endpoint: str) -> bool:
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False


def hub_reachable() -> bool:
    """Whether the hub answers a connection (assumed when a proxy is configured: the proxy decides)."""
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    return _reachable(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))


def model_source_problem(source: str, revision: str | None = None, subfolder: str | None = None) -> str | None:
    """None when ``source`` will load; otherwise one line: what is missing and what to do."""
    if looks_local(source):
        path = Path(source).expanduser()
        if not path.exists():
            return f"{source}: no such file or directory"
        if path.is_dir():
            inner = path / subfolder if subfolder and (path / subfolder).is_dir() else path
            if not (inner / "config.json").is_file():
                return f"{source}: not a model directory (no config.json in {inner})"
        return None
    from huggingface_hub import try_to_load_from_cache

    config = f"{subfolder}/config.json" if subfolder else "config.json"
    try:
        if isinstance(try_to_load_from_cache(source, config, revision=revision), str):
            return None
    except ValueError as exc:  # not a valid repo id either
        return f"{source!r}: neither a local path nor a hub id ({exc})"
    fix = (f"download it where there is network (`hf download {source}`) into this machine's Hugging Face cache, "
           "or point the field at a local copy")
    if offline_mode():
        return f"hub id {source!r} is not in the Hugging Face cache and HF_HUB_OFFLINE is set: {fix}"
    if not hub_reachable():
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
        return f"hub id {source!r} is not in the Hugging Face cache and {endpoint} cannot be reached: {fix}"
    return None


@contextlib.contextmanager
def loading_from(source: str, field: str = "params.source") -> Iterator[None]:
    """Around a ``from_pretrained``: a model that does not load is one line naming the field and the id
    (the libraries' own messages often name neither)."""
    try:
        yield
    except OSError as exc:
        raise RunError(f"{field} {source!r} did not load: {first_line(exc)}") from None
