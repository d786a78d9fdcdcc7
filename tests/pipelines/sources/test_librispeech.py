"""LibriSpeech connector: the committed corpus through inventory and manifest, defects included."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from pipelines.lake.paths import Lake
from pipelines.sources.librispeech import SPEAKER_COLUMNS, read_pipe_table
from pipelines.steps.inventory import inventory_source
from pipelines.steps.manifest import manifest_records
from pipelines.units import read_unit_items
from schemas import ManifestRecord, SourceConfig, UnitLimits, UnitPlan

DURATION_TOLERANCE_S = 1e-3


def _ingest(
    root: Path, work: Path, limits: UnitLimits | None = None, **options: object
) -> tuple[list[UnitPlan], dict[str, ManifestRecord]]:
    """Inventory + manifest of the corpus at `root`: the plans and each input's row by native id."""
    source = SourceConfig(name="libri", kind="librispeech", path=str(root), options=options)
    lake = Lake(work / "lake")
    plans = inventory_source(source, work, lake, limits or UnitLimits())
    records: dict[str, ManifestRecord] = {}
    for plan in plans:
        for record in manifest_records(source, work, lake, plan.unit):
            native_id = record.utterance_id.removeprefix("libri/")
            assert native_id not in records, f"{native_id} appears twice"
            records[native_id] = record
    return plans, records


@pytest.fixture(scope="module")
def ingested(
    corpora: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[list[UnitPlan], dict[str, ManifestRecord]]:
    return _ingest(corpora / "librispeech" / "LibriSpeech", tmp_path_factory.mktemp("libri"))


def test_every_input_matches_the_expected_outcome(
    ingested: tuple[list[UnitPlan], dict[str, ManifestRecord]],
    load_expected: Callable[[str], list[dict]],
    assert_matches_expected: Callable[..., None],
) -> None:
    plans, records = ingested
    assert_matches_expected(
        plans, records, load_expected("librispeech"), DURATION_TOLERANCE_S, compare_sample_rate=True
    )


def test_good_utterance_literally(
    ingested: tuple[list[UnitPlan], dict[str, ManifestRecord]],
) -> None:
    record = ingested[1]["1272-128104-0000"]
    assert record.status == "ok"
    assert record.text == "THE LAMP WAS LIT BEFORE THE SUN WENT DOWN"
    assert record.speaker == "1272"
    assert record.language == "en"
    assert record.split == "dev-clean-2"
    assert record.audio_path == "dev-clean-2/1272/128104/1272-128104-0000.flac"
    assert record.offset_s == 0.0
    assert record.declared_sample_rate_hz == 16000
    assert record.duration_s is not None and 0.5 < record.duration_s < 10.0
    # An apostrophe survives as written.
    assert ingested[1]["1272-135031-0001"].text == "HE DIDN'T SAY A WORD ABOUT THE STORM"


def test_speaker_and_chapter_metadata_land_in_extra(
    ingested: tuple[list[UnitPlan], dict[str, ManifestRecord]],
) -> None:
    extra = json.loads(ingested[1]["2428-83699-0000"].extra)
    assert extra["chapter"] == "83699"
    assert extra["speaker_sex"] == "F"
    assert extra["speaker_name"] == "June Ashby"
    assert extra["speaker_subset"] == "dev-clean-2"
    assert extra["chapter_title"] == "Market Day"
    assert extra["chapter_project_title"] == "Notes From A River Town"
    assert extra["chapter_book_id"] == "4368"
    assert extra["chapter_subset"] == "dev-clean-2"


def test_each_broken_input_is_rejected_with_its_reason(
    ingested: tuple[list[UnitPlan], dict[str, ManifestRecord]],
) -> None:
    records = ingested[1]
    reasons = {
        "1272-128104-0003": "missing_audio",  # transcript line, no flac
        "1272-135031-0002": "missing_transcript",  # flac, no transcript line
        "2428-83699-0002": "truncated_audio",  # found by the header probe
        "103-1240-0002": "invalid_text_encoding",  # a latin-1 line
        "1034-121119.trans:L3": "malformed_record",  # an id with no text
    }
    for native_id, reason in reasons.items():
        assert records[native_id].status == "rejected", native_id
        assert records[native_id].reject_reason == reason, native_id
    assert records["1272-135031-0002"].text is None
    assert records["103-1240-0002"].text is None
    # The other lines of the latin-1 file are still read.
    assert records["103-1240-0001"].text == "WE COVERED THE ROSES WITH OLD SACKS"
    assert records["1034-121119.trans:L3"].speaker == "1034"


def test_a_chapter_stays_in_one_unit_named_by_its_split(corpora: Path, tmp_path: Path) -> None:
    root = corpora / "librispeech" / "LibriSpeech"
    plans, _ = _ingest(root, tmp_path, UnitLimits(max_utterances=1))
    lake = Lake(tmp_path / "lake")
    chapters_by_unit = {
        plan.unit: {
            (i.split, i.extra["chapter"])
            for i in read_unit_items(lake.inventory_items("libri", plan.unit))
        }
        for plan in plans
    }
    # Five chapters, each one unit of its own despite the one-utterance limit.
    assert len(plans) == 5
    assert all(len(chapters) == 1 for chapters in chapters_by_unit.values())
    assert sorted(chapters_by_unit) == [
        "libri.dev-clean-2.00000",
        "libri.dev-clean-2.00001",
        "libri.dev-clean-2.00002",
        "libri.train-clean-5.00000",
        "libri.train-clean-5.00001",
    ]
    for unit, chapters in chapters_by_unit.items():
        ((split, _),) = chapters
        assert unit.split(".")[1] == split


def test_splits_option_reads_only_those_splits(corpora: Path, tmp_path: Path) -> None:
    _, records = _ingest(
        corpora / "librispeech" / "LibriSpeech", tmp_path, splits=["train-clean-5"]
    )
    assert {r.split for r in records.values()} == {"train-clean-5"}
    assert "103-1240-0000" in records and "1272-128104-0000" not in records


def test_pipe_table_keeps_a_name_that_contains_pipes(tmp_path: Path) -> None:
    speakers = tmp_path / "SPEAKERS.TXT"
    speakers.write_text(
        ";ID  |SEX| SUBSET           |MINUTES| NAME\n"
        "14   | F | train-clean-360  | 25.03 | Kristin LeMoine\n"
        "60   | M | train-clean-100  | 20.18 | |CBW|Simon\n",
        encoding="utf-8",
    )
    table = read_pipe_table(speakers, SPEAKER_COLUMNS)
    assert table["14"] == {
        "sex": "F",
        "subset": "train-clean-360",
        "minutes": "25.03",
        "name": "Kristin LeMoine",
    }
    assert table["60"]["name"] == "|CBW|Simon"
