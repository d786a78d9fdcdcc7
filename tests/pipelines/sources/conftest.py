"""Shared check for connector tests: the ingest outcome equals the generator's expectation."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from schemas import ManifestRecord, UnitPlan

FIELDS = (
    "text",
    "speaker",
    "language",
    "split",
    "subsets",
    "audio_path",
    "audio_member",
    "offset_s",
)


def _assert_matches_expected(
    plans: list[UnitPlan],
    records: dict[str, ManifestRecord],
    expected: list[dict],
    duration_tolerance_s: float,
    compare_sample_rate: bool,
) -> None:
    assert set(records) == {row["native_id"] for row in expected}
    assert sum(p.n_inputs for p in plans) == len(expected)
    for row in expected:
        record = records[row["native_id"]]
        where = row["native_id"]
        assert (record.status, record.reject_reason) == (row["status"], row["reason"]), (
            where,
            record.reject_message,
        )
        for key in FIELDS:
            assert getattr(record, key) == row[key], (where, key)
        if row["duration_s"] is None:
            assert record.duration_s is None, where
        else:
            assert record.duration_s == pytest.approx(row["duration_s"], abs=duration_tolerance_s)
        if compare_sample_rate and row["status"] == "ok":
            assert record.declared_sample_rate_hz == row["sample_rate_hz"], where


@pytest.fixture(scope="session")
def assert_matches_expected() -> Callable[..., None]:
    """`(plans, records_by_native_id, expected, duration_tolerance_s, compare_sample_rate)`:
    same ids, statuses, reasons and fields as the expected file, every input counted once."""
    return _assert_matches_expected


# The custom-audio connector tests import their shared helpers from `source_checks.py`
# beside this file (pytest's importlib mode does not put test folders on sys.path).
sys.path.insert(0, str(Path(__file__).resolve().parent))
