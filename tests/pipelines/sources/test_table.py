"""The table connector: the committed CSV and JSONL manifests ingest to exactly their expected
outcome, and broken rows (wrong field counts, bad JSON, missing paths, bad times, bad
bytes) become rejected rows named after their physical line, never a failed file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from source_checks import assert_matches_expected, ingest_source

from pipelines.sources import table
from schemas import ManifestRecord
from schemas.sources import TableOptions


def ingest(
    tmp_path: Path, path: Path, options: dict[str, Any] | None = None
) -> dict[str, ManifestRecord]:
    """Inventory + manifest of one `table` source; rows by native id."""
    return ingest_source("table", tmp_path, path, options)


def _tone(path: Path, seconds: float = 2.0, rate_hz: int = 8000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    sf.write(path, 0.3 * np.sin(2 * np.pi * 440 * t), rate_hz, format="WAV")


def _items(path: Path, **options: Any) -> dict[str, Any]:
    groups = list(table.inventory(path, TableOptions(**options)))
    return {i.native_id: i for g in groups for i in g.items}


@pytest.fixture(scope="module")
def csv_records(
    tmp_path_factory: pytest.TempPathFactory, corpora: Path
) -> dict[str, ManifestRecord]:
    return ingest(tmp_path_factory.mktemp("csv"), corpora / "custom" / "table" / "manifest.csv")


def test_csv_manifest_matches_expected(
    csv_records: dict[str, ManifestRecord], corpora: Path
) -> None:
    assert_matches_expected(csv_records, corpora / "expected" / "custom_table.jsonl")


def test_jsonl_manifest_matches_expected(tmp_path: Path, corpora: Path) -> None:
    records = ingest(tmp_path, corpora / "custom" / "table" / "manifest.jsonl")
    assert_matches_expected(records, corpora / "expected" / "custom_table_jsonl.jsonl")
    assert records["L1"].text == "Good morning from the table."
    assert records["L5"].reject_reason == "malformed_record"  # a line cut off mid-string


def test_csv_literal_facts(csv_records: dict[str, ManifestRecord]) -> None:
    first = csv_records["L2"]  # the header is line 1
    assert (first.text, first.speaker, first.language, first.audio_path) == (
        "Good morning from the table.",
        "tom",
        "en",
        "audio/t1.wav",
    )
    assert csv_records["L3"].text == "Yes, the second row has a comma."  # quoted field
    assert csv_records["L4"].text == "Spaces around this text are stripped."
    assert (csv_records["L5"].language, csv_records["L5"].text) == ("zh", "表格里的中文句子")
    cut = csv_records["L7"]  # start 4.5, end 7.75 of audio/long.wav
    assert (cut.status, cut.offset_s, cut.duration_s) == ("ok", 4.5, 3.25)
    assert cut.declared_sample_rate_hz == 16000
    assert json.loads(cut.extra) == {"line": 7}
    reasons = {k: r.reject_reason for k, r in csv_records.items() if r.status == "rejected"}
    assert reasons == {
        "L8": "path_escape",
        "L9": "path_escape",
        "L10": "missing_audio",
        "L11": "invalid_timing",
    }
    assert (csv_records["L9"].audio_path, csv_records["L9"].speaker) == ("/etc/hostname", None)
    assert (csv_records["L11"].offset_s, csv_records["L11"].duration_s) == (6.0, None)


def test_broken_csv_rows_are_rejected_per_line(tmp_path: Path) -> None:
    _tone(tmp_path / "a.wav")
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(
        b"\xef\xbb\xbfpath,text,start,end\n"  # BOM before the header
        b"a.wav,fine,,\n"  # L2
        b"a.wav,too,many,fields,here\n"  # L3
        b"\n"  # L4 blank: skipped, still counted
        b'a.wav,"two\nlines",0.5,\n'  # L5-L6: starts on line 5, cut to the end of the file
        b"a.wav,caf\xe9,,\n"  # L7: latin-1 byte
        b"a.wav,soon,abc,1\n"  # L8: start is not a number
        b"a.wav,nan,nan,1\n"  # L9: non-finite start
        b"a.wav,neg,-1,1\n"  # L10: negative start
        b",no path,,\n"  # L11
        b'a.wav,"bad"quote,,\n'  # L12: a quote in the middle of a quoted field
        b"a.wav,only end,,1.5\n"  # L13: cut from 0 to 1.5 s
    )
    records = ingest(tmp_path, manifest)
    assert {k: r.reject_reason for k, r in records.items()} == {
        "L2": None,
        "L3": "malformed_record",
        "L5": None,
        "L7": "invalid_text_encoding",
        "L8": "invalid_timing",
        "L9": "invalid_timing",
        "L10": "invalid_timing",
        "L11": "malformed_record",
        "L12": "malformed_record",
        "L13": None,
    }
    assert (records["L5"].text, records["L5"].offset_s) == ("two\nlines", 0.5)
    assert records["L5"].duration_s == pytest.approx(1.5)  # from the header: 2.0 - 0.5
    assert (records["L13"].offset_s, records["L13"].duration_s) == (0.0, 1.5)
    assert records["L2"].duration_s == pytest.approx(2.0)


def test_broken_jsonl_rows_are_rejected_per_line(tmp_path: Path) -> None:
    _tone(tmp_path / "a.wav")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        '{"path": "a.wav", "text": "ok", "speaker": 7, "id": "u1", "lang": "EN"}\n'
        '{"text": "no path"}\n'
        "[1, 2]\n"
        "\n"
        "not json\n"
        '{"path": "a.wav", "start": 1.0, "end": 1.0}\n'
        '{"path": "a.wav", "start": "x"}\n',
        encoding="utf-8",
    )
    records = ingest(tmp_path, manifest, {"language_column": "lang"})
    assert {k: r.reject_reason for k, r in records.items()} == {
        "u1": None,
        "L2": "malformed_record",
        "L3": "malformed_record",
        "L5": "malformed_record",
        "L6": "invalid_timing",
        "L7": "invalid_timing",
    }
    assert (records["u1"].speaker, records["u1"].language) == ("7", "en")


def test_column_options_ids_and_tsv(tmp_path: Path) -> None:
    _tone(tmp_path / "clips" / "x.wav")
    manifest = tmp_path / "list.tsv"
    manifest.write_text(
        "client\tfile\tsentence\tlocale\n"
        'c1\tclips/x.wav\the said "hi", then left\t\n'
        "c2\tclips/x.wav\t\tFR\n",
        encoding="utf-8",
    )
    items = _items(
        manifest,
        path_column="file",
        text_column="sentence",
        language_column="locale",
        speaker_column="client",
        id_column="client",
        language="DE",
        require_text=True,
    )
    assert sorted(items) == ["c1", "c2"]
    assert (items["c1"].text, items["c1"].language) == ('he said "hi", then left', "de")
    assert (items["c2"].text, items["c2"].language) == (None, "fr")
    assert items["c2"].text_required
    records = ingest(
        tmp_path, manifest, {"path_column": "file", "text_column": "sentence", "require_text": True}
    )
    assert records["L3"].reject_reason == "missing_transcript"
    assert json.loads(records["L2"].extra) == {"line": 2, "client": "c1", "locale": ""}


def test_header_without_the_path_column_is_an_error(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("file,text\na.wav,x\n", encoding="utf-8")
    with pytest.raises(ValueError, match="path_column"):
        _items(manifest)


def test_rows_are_grouped_in_file_order_under_the_file_stem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(table, "GROUP_SIZE", 2)
    manifest = tmp_path / "clips.csv"
    manifest.write_text("path\n" + "".join(f"{n}.wav\n" for n in range(5)), encoding="utf-8")
    groups = list(table.inventory(manifest, TableOptions()))
    assert [(g.prefix, [i.native_id for i in g.items]) for g in groups] == [
        ("clips", ["L2", "L3"]),
        ("clips", ["L4", "L5"]),
        ("clips", ["L6"]),
    ]


def test_rows_without_an_end_are_planned_by_their_header(tmp_path: Path) -> None:
    """A row with an end keeps its declared length; one without is planned with what its
    WAV header states, from its start; a path leaving the folder is not read."""
    _tone(tmp_path / "data" / "audio" / "a.wav", seconds=2.0)
    _tone(tmp_path / "outside.wav", seconds=2.0)
    manifest = tmp_path / "data" / "clips.csv"
    manifest.write_text(
        "id,path,start,end\n"
        "whole,audio/a.wav,,\n"
        "tail,audio/a.wav,0.5,\n"
        "cut,audio/a.wav,0.5,1.0\n"
        "escape,../outside.wav,,\n"
        "missing,audio/none.wav,,\n",
        encoding="utf-8",
    )
    (group,) = table.inventory(manifest, TableOptions(id_column="id"))
    ids = [i.native_id for i in group.items]
    assert dict(zip(ids, group.planning_durations_s(), strict=True)) == {
        "whole": 2.0,
        "tail": 1.5,
        "cut": 0.5,
        "escape": 0.0,
        "missing": 0.0,
    }
    # Planning durations stay out of the items: the manifest step still probes these files.
    assert [i.duration_s for i in group.items] == [None, None, 0.5, None, None]
