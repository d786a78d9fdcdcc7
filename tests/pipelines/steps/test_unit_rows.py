"""The rows every step reads (`pipelines.lake.views`), with one column naming, and the cut
each row describes (`pipelines.audio.rows.segment_of`): a decided row carries the
measured `duration_s` and the manifest's `declared_duration_s`; only segments are cut
by the declared duration."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from pipelines.audio.rows import segment_of
from pipelines.lake.atomic import write_parquet_atomic
from pipelines.lake.paths import Lake
from pipelines.lake.views import accepted_rows, decided_rows, unit_manifest
from schemas import (
    MANIFEST_ARROW_SCHEMA,
    QUALITY_ARROW_SCHEMA,
    ManifestRecord,
    QualityRecord,
)

UNIT = "s.all.00000"


def _manifest(utterance_id: str, **fields: object) -> dict:
    return ManifestRecord(
        utterance_id=utterance_id,
        source="s",
        corpus_kind="audio_folder",
        unit=UNIT,
        audio_path=f"{utterance_id[2:]}.wav",
        language="en",
        text=f"text of {utterance_id}",
        speaker="spk1",
        split="train",
        **fields,  # type: ignore[arg-type]
    ).model_dump(mode="json")


def _decision(utterance_id: str, **fields: object) -> dict:
    return QualityRecord(
        utterance_id=utterance_id,
        source="s",
        unit=UNIT,
        language="en",
        policy_version="v1",
        **fields,  # type: ignore[arg-type]
    ).model_dump(mode="json")


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    """One unit: `s/b` a 2 s segment at 1 s (measured 1.98 s), `s/a` a whole file
    (declared 3 s, measured 2.9 s), `s/c` rejected by the policy."""
    lake = Lake(tmp_path / "lake")
    manifest = [
        _manifest("s/b", offset_s=1.0, duration_s=2.0, is_segment=True),
        _manifest("s/a", duration_s=3.0),
        _manifest("s/c", duration_s=1.0),
    ]
    decisions = [
        _decision("s/b", status="accepted", duration_s=1.98, declared_duration_s=2.0),
        _decision("s/a", status="accepted", duration_s=2.9, declared_duration_s=3.0),
        _decision("s/c", status="rejected", reject_stage="policy", reject_rule="min_snr_db"),
    ]
    write_parquet_atomic(
        lake.manifest("s", UNIT), pa.Table.from_pylist(manifest, schema=MANIFEST_ARROW_SCHEMA)
    )
    write_parquet_atomic(
        lake.quality("s", UNIT), pa.Table.from_pylist(decisions, schema=QUALITY_ARROW_SCHEMA)
    )
    return lake


def test_unit_manifest_names_the_declared_duration(lake: Lake) -> None:
    rows = unit_manifest(lake, "s", UNIT)
    assert "duration_s" not in rows.columns
    assert rows["declared_duration_s"].to_list() == [2.0, 3.0, 1.0]


def test_decided_rows_keep_file_order_and_one_naming(lake: Lake) -> None:
    rows = decided_rows(lake, "s", UNIT)
    assert rows["utterance_id"].to_list() == ["s/b", "s/a", "s/c"]
    assert rows["duration_s"].to_list() == [1.98, 2.9, None]
    # The declared duration is the manifest's, even where the decision recorded none.
    assert rows["declared_duration_s"].to_list() == [2.0, 3.0, 1.0]
    assert rows["text"][0] == "text of s/b" and rows["split"][0] == "train"
    assert rows["status"].to_list() == ["accepted", "accepted", "rejected"]


def test_accepted_rows_are_sorted_and_accepted_only(lake: Lake) -> None:
    rows = accepted_rows(lake, "s", UNIT)
    assert rows["utterance_id"].to_list() == ["s/a", "s/b"]
    assert {"audio_path", "audio_member", "offset_s", "is_segment", "speaker"} <= set(rows.columns)


def test_segments_are_cut_by_the_declared_duration_whole_files_to_their_end(lake: Lake) -> None:
    whole, segment = (segment_of(r) for r in accepted_rows(lake, "s", UNIT).to_dicts())
    assert (segment.audio_path, segment.offset_s, segment.duration_s) == ("b.wav", 1.0, 2.0)
    assert (whole.audio_path, whole.offset_s, whole.duration_s) == ("a.wav", 0.0, None)


def test_a_quality_file_without_its_manifest_is_an_inconsistent_lake(lake: Lake) -> None:
    lake.manifest("s", UNIT).unlink()
    with pytest.raises(FileNotFoundError, match="inconsistent"):
        decided_rows(lake, "s", UNIT)


def test_a_manifest_repeating_an_id_is_refused(lake: Lake) -> None:
    repeated = [_manifest("s/a", duration_s=3.0)] * 2 + [
        _manifest("s/b", offset_s=1.0, duration_s=2.0, is_segment=True),
        _manifest("s/c", duration_s=1.0),
    ]
    write_parquet_atomic(
        lake.manifest("s", UNIT), pa.Table.from_pylist(repeated, schema=MANIFEST_ARROW_SCHEMA)
    )
    with pytest.raises(ValueError, match="twice"):
        decided_rows(lake, "s", UNIT)
