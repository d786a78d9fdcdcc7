"""The audio_folder connector: the committed folder corpus ingests to exactly its expected
outcome, and the walk's rules (sorting, hidden files, linked folders, transcript choice,
groups) hold on small trees built here."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from source_checks import assert_matches_expected, ingest_source

from pipelines.lake.paths import Lake
from pipelines.sources import audio_folder
from pipelines.units import plan_units
from schemas import ManifestRecord, UnitLimits
from schemas.sources import AudioFolderOptions

HEADER_DURATION_TOLERANCE_S = {".mp3": 0.03, ".opus": 0.03}


def ingest(
    tmp_path: Path, path: Path, options: dict[str, Any] | None = None
) -> dict[str, ManifestRecord]:
    """Inventory + manifest of one `audio_folder` source; rows by native id."""
    return ingest_source("audio_folder", tmp_path, path, options)


def _tone(path: Path, seconds: float = 0.2, rate_hz: int = 8000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    sf.write(path, 0.3 * np.sin(2 * np.pi * 440 * t), rate_hz, format="WAV")


def _text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture(scope="module")
def folder_records(
    tmp_path_factory: pytest.TempPathFactory, corpora: Path
) -> dict[str, ManifestRecord]:
    return ingest(tmp_path_factory.mktemp("folder"), corpora / "custom" / "folder")


def test_folder_corpus_matches_expected(
    folder_records: dict[str, ManifestRecord], corpora: Path
) -> None:
    assert_matches_expected(folder_records, corpora / "expected" / "custom_folder.jsonl")


def test_folder_corpus_literal_facts(folder_records: dict[str, ManifestRecord]) -> None:
    a2 = folder_records["speaker_a/a2"]  # transcript in a .lab file
    assert (a2.status, a2.text, a2.speaker) == (
        "ok",
        "The second file keeps its words in a lab file.",
        "speaker_a",
    )
    assert (a2.audio_path, a2.declared_sample_rate_hz) == ("speaker_a/a2.flac", 44100)
    b1 = folder_records["speaker_b/b1"]  # sidecar padded with spaces: stripped
    assert b1.text == "An mp3 file recorded at twenty two kilohertz."
    assert json.loads(b1.extra) == {"transcript_path": "speaker_b/b1.txt"}
    c1 = folder_records["speaker_c/c1"]  # no transcript: fine by default
    assert (c1.status, c1.text, c1.speaker, c1.declared_sample_rate_hz) == (
        "ok",
        None,
        "speaker_c",
        8000,
    )
    assert folder_records["broken/nan"].status == "ok"  # NaN samples are a later check
    for stem in ("noisy", "clipped", "short", "mostly_silent", "misaligned"):
        assert folder_records[f"quality/{stem}"].status == "ok", stem  # quality step's job
    orphan = folder_records["broken/orphan"]
    assert (orphan.reject_reason, orphan.audio_path, orphan.text) == (
        "missing_audio",
        None,
        "A transcript whose audio never existed.",
    )
    latin1 = folder_records["broken/latin1"]
    assert (latin1.reject_reason, latin1.audio_path, latin1.text) == (
        "invalid_text_encoding",
        "broken/latin1.wav",
        None,
    )
    escape = folder_records["links/escape"]
    assert (escape.reject_reason, escape.audio_path, escape.speaker) == (
        "path_escape",
        "links/escape.wav",
        "links",
    )
    reasons = {k: r.reject_reason for k, r in folder_records.items() if r.status == "rejected"}
    assert reasons == {
        "broken/cut_wav": "truncated_audio",
        "broken/tag_only": "unreadable_audio",
        "broken/empty": "empty_audio",
        "broken/garbage": "unreadable_audio",
        "broken/latin1": "invalid_text_encoding",
        "broken/orphan": "missing_audio",
        "broken/truncated": "truncated_audio",
        "links/escape": "path_escape",
    }


def test_require_text_rejects_audio_without_transcript(tmp_path: Path, corpora: Path) -> None:
    records = ingest(tmp_path, corpora / "custom" / "folder", {"require_text": True})
    assert records["speaker_c/c1"].reject_reason == "missing_transcript"
    assert records["speaker_a/a1"].status == "ok"
    assert records["broken/orphan"].reject_reason == "missing_audio"


def test_groups_are_top_level_folders_in_sorted_order(corpora: Path) -> None:
    groups = list(audio_folder.inventory(corpora / "custom" / "folder", AudioFolderOptions()))
    assert [g.prefix for g in groups] == [
        "broken",
        "links",
        "quality",
        "speaker_a",
        "speaker_b",
        "speaker_c",
    ]
    assert [i.native_id for i in groups[4].items] == [
        "speaker_b/b1",
        "speaker_b/b2",
        "speaker_b/b3",
    ]
    assert all(i.language is None and i.split is None for g in groups for i in g.items)


def test_language_option_is_lower_cased(corpora: Path) -> None:
    groups = audio_folder.inventory(
        corpora / "custom" / "folder", AudioFolderOptions(language="EN")
    )
    assert {i.language for g in groups for i in g.items} == {"en"}


def test_walk_rules_on_a_small_tree(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    _tone(root / "top.wav")  # top level: prefix root, no speaker
    _tone(root / "spk" / "deep" / "x.WAV")  # upper-case extension still counts
    _text(root / "spk" / "deep" / "x.lab", "from lab")
    _text(root / "spk" / "deep" / "x.txt", " from txt \n")
    _tone(root / "spk" / ".hidden.wav")
    _tone(root / ".cache" / "h.wav")
    _tone(tmp_path / "outside" / "o.wav")
    os.symlink("../outside", root / "linked")  # a linked folder is never walked
    _text(root / "spk" / "notes.md", "not audio, not a transcript")

    groups = list(audio_folder.inventory(root, AudioFolderOptions()))
    assert [(g.prefix, [i.native_id for i in g.items]) for g in groups] == [
        ("root", ["top"]),
        ("spk", ["spk/deep/x"]),
    ]
    top, x = groups[0].items[0], groups[1].items[0]
    assert (top.speaker, top.audio_path, top.text) == (None, "top.wav", None)
    assert (x.speaker, x.audio_path, x.text) == ("spk", "spk/deep/x.WAV", "from txt")

    lab_first = AudioFolderOptions(transcript_extensions=["lab", "txt"])
    x = next(
        i
        for g in audio_folder.inventory(root, lab_first)
        for i in g.items
        if i.native_id == "spk/deep/x"
    )
    assert x.text == "from lab"


def test_empty_transcript_is_no_text(tmp_path: Path) -> None:
    _tone(tmp_path / "tree" / "a.wav")
    _text(tmp_path / "tree" / "a.txt", "  \n")
    records = ingest(tmp_path, tmp_path / "tree", {"require_text": True})
    assert records["a"].text is None
    assert records["a"].reject_reason == "missing_transcript"


def test_large_folders_are_split_into_groups_of_one_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audio_folder, "GROUP_SIZE", 2)
    for name in ("c", "a", "e", "b", "d"):
        _text(tmp_path / "spk" / f"{name}.txt", name)  # orphans: no audio needed
    groups = list(audio_folder.inventory(tmp_path, AudioFolderOptions()))
    assert [(g.prefix, [i.native_id for i in g.items]) for g in groups] == [
        ("spk", ["spk/a", "spk/b"]),
        ("spk", ["spk/c", "spk/d"]),
        ("spk", ["spk/e"]),
    ]


def test_a_transcript_linked_from_outside_is_not_read(tmp_path: Path) -> None:
    _tone(tmp_path / "tree" / "spk" / "a.wav")
    _text(tmp_path / "secret.txt", "never read")
    os.symlink("../../secret.txt", tmp_path / "tree" / "spk" / "a.txt")
    records = ingest(tmp_path, tmp_path / "tree")
    assert (records["spk/a"].reject_reason, records["spk/a"].text) == ("path_escape", None)


def test_units_honour_max_duration_by_the_file_headers(tmp_path: Path) -> None:
    """The folder states no durations: WAV and FLAC headers give them, so a unit holds at
    most `max_duration_s` of them; an Ogg file has no cheap header and counts 0 s."""
    tree = tmp_path / "tree"
    for index in range(6):
        _tone(tree / "spk" / f"w{index}.wav", seconds=1.0)
    sf.write(tree / "spk" / "x.flac", np.zeros(16000 * 3), 16000, format="FLAC")
    sf.write(tree / "spk" / "y.ogg", np.zeros(8000), 8000, format="OGG")
    groups = list(audio_folder.inventory(tree, AudioFolderOptions()))
    assert [d for g in groups for d in g.planning_durations_s()] == [1.0] * 6 + [3.0, 0.0]
    plans = plan_units("f", groups, UnitLimits(max_duration_s=2.5), Lake(tmp_path / "lake"))
    # Two 1 s files per unit; the 3 s flac, longer than the limit, is a unit of its own.
    assert [(p.n_inputs, p.declared_duration_s) for p in plans] == [(2, 2.0)] * 3 + [
        (1, 3.0),
        (1, 0.0),
    ]


def test_a_linked_file_outside_the_folder_is_not_read_for_planning(tmp_path: Path) -> None:
    _tone(tmp_path / "outside.wav", seconds=1.0)
    _tone(tmp_path / "tree" / "spk" / "inside.wav", seconds=1.0)
    os.symlink("../../outside.wav", tmp_path / "tree" / "spk" / "linked.wav")
    os.symlink("inside.wav", tmp_path / "tree" / "spk" / "alias.wav")
    (group,) = audio_folder.inventory(tmp_path / "tree", AudioFolderOptions())
    durations = dict(
        zip([i.native_id for i in group.items], group.header_durations_s or [], strict=True)
    )
    assert durations == {"spk/alias": 1.0, "spk/inside": 1.0, "spk/linked": None}
