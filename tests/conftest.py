"""Fixtures only; shared helpers live in helpers.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import TINY, write_recipe

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@pytest.fixture
def tiny_recipe(tmp_path: Path) -> Path:
    return write_recipe(tmp_path, TINY)


@pytest.fixture(autouse=True)
def core_without_llava(request, monkeypatch):
    """The core's tests run with the LLaVA plugin disabled (it must need nothing of it);
    tests of the plugin itself are marked ``needs_llava``."""
    if request.node.get_closest_marker("needs_llava") is None:
        monkeypatch.setenv("GENHANCER_DISABLE_PLUGINS", "llava")
    else:
        monkeypatch.delenv("GENHANCER_DISABLE_PLUGINS", raising=False)


@pytest.fixture
def fresh_accelerator_state():
    """accelerate keeps one mixed-precision setting per process; tests that change it start and end clean."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
    yield
    AcceleratorState._reset_state()
