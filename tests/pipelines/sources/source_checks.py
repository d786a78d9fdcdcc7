"""Shared helpers of the custom-audio connector tests: ingest one source, compare with
the generator's expected outcome."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipelines.lake.paths import Lake
from pipelines.steps.inventory import inventory_source
from pipelines.steps.manifest import manifest_records
from schemas import ManifestRecord, SourceConfig, UnitLimits


def ingest_source(
    kind: str, tmp_path: Path, path: Path, options: dict[str, Any] | None = None
) -> dict[str, ManifestRecord]:
    """Inventory + manifest of one source, as the pipeline runs them; rows by native id."""
    source = SourceConfig(name="src", kind=kind, path=str(path), options=options or {})
    lake = Lake(tmp_path / "lake")
    plans = inventory_source(source, tmp_path, lake, UnitLimits())
    records = [r for p in plans for r in manifest_records(source, tmp_path, lake, p.unit)]
    by_id = {r.utterance_id.removeprefix("src/"): r for r in records}
    assert len(by_id) == len(records), "native ids must be unique"
    return by_id


def assert_matches_expected(records: dict[str, ManifestRecord], expected_file: Path) -> None:
    """Every expected row has a record with the same outcome and facts, and nothing else."""
    expected = [json.loads(line) for line in expected_file.read_text().splitlines() if line]
    assert sorted(records) == sorted(e["native_id"] for e in expected)
    for row in expected:
        record = records[row["native_id"]]
        got = {
            "status": record.status,
            "reason": record.reject_reason,
            "text": record.text,
            "speaker": record.speaker,
            "language": record.language,
            "split": record.split,
            "subsets": record.subsets,
            "audio_path": record.audio_path,
            "audio_member": record.audio_member,
            "sample_rate_hz": record.declared_sample_rate_hz,
        }
        assert got == {k: row[k] for k in got}, row["native_id"]
        assert record.offset_s == pytest.approx(row["offset_s"], abs=1e-9), row["native_id"]
        if row["duration_s"] is None:
            assert record.duration_s is None, row["native_id"]
        else:
            assert record.duration_s == pytest.approx(row["duration_s"], abs=1e-3)
