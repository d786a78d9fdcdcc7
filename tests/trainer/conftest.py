"""Shared fixtures of the trainer tests: the tiny release (`tiny_release.py`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# Test modules import the builder from `tiny_release.py` beside this file (pytest's
# importlib mode does not put test folders on sys.path).
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny_release import TinyRelease, build_tiny_release


@pytest.fixture(scope="session")
def tiny_release(tmp_path_factory: pytest.TempPathFactory) -> TinyRelease:
    """A tiny real lake with release ``tiny-v1`` (see `tiny_release.py`), built once."""
    return build_tiny_release(tmp_path_factory.mktemp("tiny_release"))
