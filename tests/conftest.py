"""Shared fixtures: the committed test corpora and their expected ingest outcomes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

CORPORA = Path(__file__).resolve().parent / "data" / "corpora"


def _load_expected(name: str) -> list[dict]:
    path = CORPORA / "expected" / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


@pytest.fixture(scope="session")
def load_expected() -> Callable[[str], list[dict]]:
    """The generator's expected manifest outcome for one corpus, one dict per input."""
    return _load_expected


@pytest.fixture(scope="session")
def corpora() -> Path:
    """Root of the committed test corpora."""
    if not (CORPORA / "expected").is_dir():
        pytest.fail(f"committed test corpora missing at {CORPORA}")
    return CORPORA


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the tests marked `slow` first, in their collected order.

    `python3 dev.py test` hands whole test files to two pytest-xdist workers in this
    order; starting the few long files first lets both workers finish together,
    instead of one running a four-minute test alone at the end.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
