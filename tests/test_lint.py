"""Lint (ruff, the rules in pyproject.toml) over the whole tree, and a type check of the
public API (mypy, the files in pyproject.toml)."""

import subprocess
import sys

import pytest
from helpers import ROOT


def _tool(*args):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=ROOT)


def test_ruff_finds_nothing():
    result = _tool("ruff", "check", "--output-format", "concise", ".")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_the_public_api_type_checks():
    result = _tool("mypy")
    assert result.returncode == 0, result.stdout + result.stderr
