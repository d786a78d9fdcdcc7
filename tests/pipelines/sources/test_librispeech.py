"""LibriSpeech connector: the committed corpus through inventory and manifest, defects included."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from pipelines.audio.headers import header_duration_s
from pipelines.lake.paths import Lake
from pipelines.sources.librispeech import SPEAKER_COLUMNS, read_pipe_table
from pipelines.steps.inventory import inventory_source
from pipelines.steps.manifest import manifest_records
from pipelines.units import read_unit_items
from schemas import InventoryItem, ManifestRecord, SourceConfig, UnitLimits, UnitPlan

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


def _unit_items(work: Path, plans: list[UnitPlan]) -> dict[str, list[InventoryItem]]:
    lake = Lake(work / "lake")
    return {p.unit: list(read_unit_items(lake.inventory_items("libri", p.unit))) for p in plans}


def _header_s(root: Path, item: InventoryItem) -> float:
    """What planning counts for one item: its FLAC header's duration, 0 s without a file."""
    if item.problem is not None or item.audio_path is None:
        return 0.0
    return header_duration_s(root / item.audio_path) or 0.0


def test_units_are_planned_by_the_durations_the_flac_headers_state(
    corpora: Path, tmp_path: Path
) -> None:
    """LibriSpeech states no durations; the FLAC headers do, to the sample the manifest
    probe finds, so a unit's declared duration is the sum of its files'."""
    root = corpora / "librispeech" / "LibriSpeech"
    plans, records = _ingest(root, tmp_path)
    items_by_unit = _unit_items(tmp_path, plans)
    for plan in plans:
        expected_s = sum(_header_s(root, i) for i in items_by_unit[plan.unit])
        assert plan.declared_duration_s == pytest.approx(expected_s, abs=1e-3)
        assert plan.declared_duration_s > 0
    for unit_items in items_by_unit.values():
        for item in unit_items:
            record = records[item.native_id]
            if record.status == "ok":
                assert _header_s(root, item) == pytest.approx(record.duration_s, abs=1e-6)


@pytest.mark.parametrize("max_duration_s", [5.0, 1.0])
def test_units_honour_max_duration_inside_a_chapter(
    corpora: Path, tmp_path: Path, max_duration_s: float
) -> None:
    """A chapter's utterances share no recording, so units are cut utterance by utterance:
    each is at most `max_duration_s` unless it is a single longer utterance (every one is
    longer than 1 s), and keeps its split's name."""
    root = corpora / "librispeech" / "LibriSpeech"
    plans, records = _ingest(root, tmp_path, UnitLimits(max_duration_s=max_duration_s))
    items_by_unit = _unit_items(tmp_path, plans)
    assert sum(p.n_inputs for p in plans) == len(records) == 17
    assert len(plans) > 5  # more units than chapters
    # Utterances last 1.5 to 2.3 s: two fit in 5 s, none in 1 s. Inputs without a file
    # (a transcript line with no flac) count 0 s and ride along.
    max_with_audio = 2 if max_duration_s == 5.0 else 1
    for plan in plans:
        items = items_by_unit[plan.unit]
        assert plan.declared_duration_s <= max_duration_s or plan.n_inputs == 1, plan
        assert sum(_header_s(root, i) > 0 for i in items) <= max_with_audio, plan
        assert {i.split for i in items} == {plan.unit.split(".")[1]}


def test_units_honour_max_utterances_inside_a_chapter(corpora: Path, tmp_path: Path) -> None:
    root = corpora / "librispeech" / "LibriSpeech"
    plans, _ = _ingest(root, tmp_path, UnitLimits(max_utterances=1))
    assert len(plans) == 17 and all(p.n_inputs == 1 for p in plans)
    assert [p.unit for p in plans][:2] == ["libri.dev-clean-2.00000", "libri.dev-clean-2.00001"]
    assert sum(p.unit.startswith("libri.train-clean-5.") for p in plans) == 6


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
