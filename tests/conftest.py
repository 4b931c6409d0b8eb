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
