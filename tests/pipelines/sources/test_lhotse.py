"""The `lhotse` source kind over manifests written by lhotse 1.33 itself (RecordingSet and
SupervisionSet files, CutSet files, Shar from `CutSet.to_shar`) and over hand-broken ones.

Checked: supervisions become offset/duration segments of their recording (a whole-file
one a plain item whose duration the header gives), cuts their span with their
supervisions' text, Shar cuts their tar member; and every broken record is rejected
with its reason and a message naming the manifest file and line: a line that is not
JSON, not UTF-8 or not a lhotse record, a missing, broken or twice-defined recording, a
supervision outside its recording or with no length, a path escaping the root (`..`,
absolute, symlink), audio voxlake cannot open (URL, a speed transform, one channel of a
stereo file, a MixedCut), a gzip manifest that breaks off, and in Shar an unsafe
member name, a missing member and a truncated tar. Nothing is dropped: inputs ==
manifest rows. lhotse is imported only when a lhotse source is read.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import lhotse
import numpy as np
import pytest
import soundfile as sf
from source_checks import ingest_source

from pipelines.sources.lhotse import LhotseMissingError, inventory, require_lhotse
from schemas.sources import LhotseOptions

RATE_HZ = 16000


def _write_flac(path: Path, seconds: float, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frames = int(RATE_HZ * seconds)
    t = np.arange(frames) / RATE_HZ
    tone = 0.3 * np.sin(2 * np.pi * (200 + 40 * seed) * t) + 0.02 * rng.standard_normal(frames)
    audio = np.stack([tone] * channels, axis=1) if channels > 1 else tone
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio.astype(np.float32), RATE_HZ, subtype="PCM_16")
    return audio


def _recording(corpus: Path, name: str, seconds: float = 3.0, **kw: object) -> lhotse.Recording:
    _write_flac(corpus / "audio" / f"{name}.flac", seconds, **kw)  # type: ignore[arg-type]
    recording = lhotse.Recording.from_file(corpus / "audio" / f"{name}.flac", recording_id=name)
    # lhotse writes the path as given; these manifests name files relative to the corpus.
    recording.sources[0].source = f"audio/{name}.flac"
    return recording


def _jsonl(path: Path, records: list[object]) -> None:
    """Write records one per line: dicts as JSON, str and bytes as they are (broken lines)."""
    lines = []
    for record in records:
        if isinstance(record, bytes):
            lines.append(record)
        elif isinstance(record, str):
            lines.append(record.encode("utf-8"))
        else:
            lines.append(json.dumps(record, ensure_ascii=False).encode("utf-8"))
    path.write_bytes(b"\n".join(lines) + b"\n")


def _supervision(sid: str, rid: str, start: float, duration: float, **kw: object) -> dict:
    return lhotse.SupervisionSegment(
        id=sid,
        recording_id=rid,
        start=start,
        duration=duration,
        **kw,  # type: ignore[arg-type]
    ).to_dict()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A folder of lhotse manifests as lhotse writes them: two 3 s recordings, three spans."""
    folder = tmp_path / "corpus"
    recordings = lhotse.RecordingSet.from_recordings(
        [_recording(folder, "rec0"), _recording(folder, "rec1", seed=1)]
    )
    supervisions = lhotse.SupervisionSet.from_segments(
        [
            lhotse.SupervisionSegment(
                "s0", "rec0", 0.0, 1.25, text=" hello ", speaker="ann", language="en"
            ),
            lhotse.SupervisionSegment("s1", "rec0", 1.25, 1.75, text="world", speaker="ann"),
            lhotse.SupervisionSegment(
                "s2", "rec1", 0.0, 3.0, text="whole", speaker="bob", custom={"split": "dev"}
            ),
        ]
    )
    recordings.to_file(folder / "corpus_recordings_all.jsonl.gz")
    supervisions.to_file(folder / "corpus_supervisions_all.jsonl.gz")
    return folder


def _groups(path: Path, **options: object) -> list:
    return list(inventory(path, LhotseOptions.model_validate(options)))


def test_supervisions_become_segments_of_their_recording(corpus: Path, tmp_path: Path) -> None:
    groups = _groups(corpus, language="xx")
    # One group per recording: its segments are decoded once, in one unit.
    assert [[i.native_id for i in g.items] for g in groups] == [["s0", "s1"], ["s2"]]
    assert {g.prefix for g in groups} == {"corpus_all"}
    assert groups[0].planning_durations_s() == [1.25, 1.75]
    assert groups[1].planning_durations_s() == [3.0]  # the recording's declared duration

    records = ingest_source("lhotse", tmp_path / "work", corpus, {"language": "xx"})
    assert sorted(records) == ["s0", "s1", "s2"]
    s0, s1, s2 = records["s0"], records["s1"], records["s2"]
    assert all(r.status == "ok" for r in records.values())
    assert (s0.offset_s, s0.duration_s, s0.is_segment) == (0.0, 1.25, True)
    assert (s1.offset_s, s1.duration_s, s1.is_segment) == (1.25, 1.75, True)
    assert (s0.text, s0.speaker, s0.language) == ("hello", "ann", "en")
    assert s1.language == "xx"  # the option stands in for a missing language
    # The whole recording: a plain item, its duration read from the FLAC header.
    assert (s2.offset_s, s2.is_segment, s2.duration_s) == (0.0, False, 3.0)
    assert s2.split == "dev"  # from the supervision's custom.split
    assert s2.audio_path == "audio/rec1.flac" and s2.declared_sample_rate_hz == RATE_HZ
    assert json.loads(s0.extra)["line"] == 1


def test_cuts_and_shar_written_by_lhotse(corpus: Path, tmp_path: Path) -> None:
    recordings = lhotse.RecordingSet.from_file(corpus / "corpus_recordings_all.jsonl.gz")
    supervisions = lhotse.SupervisionSet.from_file(corpus / "corpus_supervisions_all.jsonl.gz")
    cuts = lhotse.CutSet.from_manifests(recordings=recordings, supervisions=supervisions)
    # One cut per recording (two supervisions in the first), then one per supervision.
    cuts.to_file(corpus / "long_cuts.jsonl.gz")
    trimmed = cuts.trim_to_supervisions(keep_overlapping=False)
    cuts_dir = tmp_path / "cuts"
    cuts_dir.mkdir()
    shutil.copytree(corpus / "audio", cuts_dir / "audio")
    trimmed.to_file(cuts_dir / "libri_cuts_train.jsonl.gz")

    long = ingest_source("lhotse", tmp_path / "w1", corpus, {"cuts": "long_cuts.jsonl.gz"})
    assert sorted(long) == sorted(c.id for c in cuts)
    assert {r.status for r in long.values()} == {"ok"}
    first = next(r for r in long.values() if r.audio_path == "audio/rec0.flac")
    # The cut holds both supervisions of rec0, joined in time order.
    assert (first.text, first.speaker, first.language) == ("hello world", "ann", "en")
    assert (first.offset_s, first.is_segment, first.duration_s) == (0.0, False, 3.0)

    trimmed_records = ingest_source("lhotse", tmp_path / "w2", cuts_dir)
    assert {k: (r.status, r.offset_s, r.duration_s) for k, r in trimmed_records.items()} == {
        c.id: ("ok", c.start, c.duration) for c in trimmed
    }
    assert {r.unit.split(".")[1] for r in trimmed_records.values()} == {"libri_train"}

    shar_dir = tmp_path / "shar"
    shar_dir.mkdir()
    trimmed.with_recording_path_prefix(str(corpus)).to_shar(
        shar_dir, fields={"recording": "flac"}, shard_size=2
    )
    shar = ingest_source("lhotse", tmp_path / "w3", shar_dir)
    assert sorted(shar) == sorted(c.id for c in trimmed)
    for number, cut in enumerate(trimmed):
        record = shar[cut.id]
        assert record.status == "ok", record.reject_message
        assert record.audio_path == f"recording.{number // 2:06d}.tar"
        assert record.audio_member == f"{cut.id}.flac"
        assert (record.offset_s, record.is_segment) == (0.0, False)
        assert record.duration_s == pytest.approx(cut.duration, abs=1e-3)
        assert record.text == cut.supervisions[0].text.strip()


def test_mixed_cuts_cuts_without_audio_and_spans_outside_are_rejected(
    corpus: Path, tmp_path: Path
) -> None:
    recordings = {
        r.id: r for r in lhotse.RecordingSet.from_file(corpus / "corpus_recordings_all.jsonl.gz")
    }
    rec0 = recordings["rec0"]
    good = lhotse.MonoCut("good", 0.5, 1.0, 0, recording=rec0)
    mixed = good.mix(lhotse.MonoCut("other", 0.0, 1.0, 0, recording=recordings["rec1"]))
    silent = lhotse.MonoCut("silent", 0.0, 1.0, 0)
    outside = lhotse.MonoCut("outside", 2.5, 1.0, 0, recording=rec0)
    _jsonl(
        corpus / "cuts.jsonl",
        [good.to_dict(), mixed.to_dict(), silent.to_dict(), outside.to_dict()],
    )
    records = ingest_source("lhotse", tmp_path / "work", corpus, {"cuts": "cuts.jsonl"})
    assert {k: (r.status, r.reject_reason) for k, r in records.items()} == {
        "good": ("ok", None),
        mixed.id: ("rejected", "unsupported_format"),
        "silent": ("rejected", "missing_audio"),
        "outside": ("rejected", "segment_out_of_range"),
    }
    assert (records["good"].offset_s, records["good"].duration_s) == (0.5, 1.0)
    assert records["good"].text is None
    for native_id, line in {mixed.id: 2, "silent": 3, "outside": 4}.items():
        assert f"cuts.jsonl:{line}" in (records[native_id].reject_message or "")


def test_every_broken_record_is_rejected_with_its_file_and_line(
    corpus: Path, tmp_path: Path
) -> None:
    recordings = [
        _recording(corpus, "good").to_dict(),
        {
            **_recording(corpus, "up").to_dict(),
            "sources": [{"type": "file", "channels": [0], "source": "../outside.flac"}],
        },
        {
            **_recording(corpus, "abs").to_dict(),
            "sources": [
                {"type": "file", "channels": [0], "source": str(tmp_path / "outside.flac")}
            ],
        },
        {
            **_recording(corpus, "link").to_dict(),
            "sources": [{"type": "file", "channels": [0], "source": "audio/link_out.flac"}],
        },
        {
            **_recording(corpus, "web").to_dict(),
            "sources": [{"type": "url", "channels": [0], "source": "https://example.com/a.flac"}],
        },
        {
            **_recording(corpus, "fast").to_dict(),
            "transforms": [{"name": "Speed", "kwargs": {"factor": 1.1}}],
        },
        {
            **_recording(corpus, "gone").to_dict(),
            "sources": [{"type": "file", "channels": [0], "source": "audio/nowhere.flac"}],
        },
        _recording(corpus, "stereo", channels=2).to_dict(),
        {"id": "broken", "sources": "not a list"},
        _recording(corpus, "twice").to_dict(),
        _recording(corpus, "twice").to_dict(),
        {
            **_recording(corpus, "typo").to_dict(),
            "sources": [{"type": "file", "channels": "zero", "source": "audio/typo.flac"}],
        },
    ]
    _write_flac(tmp_path / "outside.flac", 3.0)
    (corpus / "audio" / "link_out.flac").symlink_to(tmp_path / "outside.flac")
    (corpus / "corpus_recordings_all.jsonl.gz").unlink()
    (corpus / "corpus_supervisions_all.jsonl.gz").unlink()
    _jsonl(corpus / "recordings.jsonl", recordings)
    supervisions: list[object] = [
        _supervision("ok", "good", 0.5, 1.0, text="fine"),  # 1
        "{this is not json",  # 2
        "[1, 2, 3]",  # 3
        {"id": "strange", "recording_id": "good", "start": 0, "duration": 1, "bogus": 1},  # 4
        _supervision("ghost", "nobody", 0.0, 1.0),  # 5
        _supervision("past", "good", 2.5, 1.0),  # 6
        _supervision("backwards", "good", 1.0, -0.5),  # 7
        _supervision("up", "up", 0.0, 1.0),  # 8
        _supervision("abs", "abs", 0.0, 1.0),  # 9
        _supervision("link", "link", 0.0, 1.0),  # 10
        _supervision("web", "web", 0.0, 1.0),  # 11
        _supervision("fast", "fast", 0.0, 1.0),  # 12
        _supervision("gone", "gone", 0.0, 1.0),  # 13
        _supervision("left", "stereo", 0.0, 1.0, channel=0),  # 14
        _supervision("both", "stereo", 0.0, 1.0, channel=[0, 1]),  # 15
        _supervision("orphan", "broken", 0.0, 1.0),  # 16
        _supervision("dup", "twice", 0.0, 1.0),  # 17
        b'{"id": "latin", "text": "caf\xe9"}',  # 18
        _supervision("typed", "typo", 0.0, 1.0),  # 19
        {**_supervision("chan", "good", 0.0, 1.0), "channel": "left"},  # 20
        {**_supervision("when", "good", 0.0, 1.0), "start": "soon"},  # 21
    ]
    _jsonl(corpus / "supervisions.jsonl", supervisions)

    records = ingest_source(
        "lhotse",
        tmp_path / "work",
        corpus,
        {"recordings": "recordings.jsonl", "supervisions": "supervisions.jsonl"},
    )
    assert len(records) == len(supervisions)  # nothing dropped: one row per line
    outcome = {k: (r.status, r.reject_reason) for k, r in records.items()}
    rejected = {k: reason for k, (status, reason) in outcome.items() if status == "rejected"}
    assert {k for k, (status, _) in outcome.items() if status == "ok"} == {"ok", "both"}
    assert rejected == {
        "L2": "malformed_record",
        "L3": "malformed_record",
        "strange": "malformed_record",
        "ghost": "missing_audio",
        "past": "segment_out_of_range",
        "backwards": "invalid_timing",
        "up": "path_escape",
        "abs": "path_escape",
        "link": "path_escape",
        "web": "unsupported_format",
        "fast": "unsupported_format",
        "gone": "missing_audio",
        "left": "unsupported_format",
        "orphan": "malformed_record",
        "dup": "malformed_record",
        "L18": "invalid_text_encoding",
        "typed": "malformed_record",
        "chan": "malformed_record",
        "when": "invalid_timing",
    }
    lines = {
        "L2": 2,
        "L3": 3,
        "strange": 4,
        "ghost": 5,
        "past": 6,
        "backwards": 7,
        "web": 11,
        "fast": 12,
        "left": 14,
        "orphan": 16,
        "dup": 17,
        "L18": 18,
        "typed": 19,
        "chan": 20,
        "when": 21,
    }
    for native_id, line in lines.items():
        assert f"supervisions.jsonl:{line}" in (records[native_id].reject_message or ""), (
            native_id,
            records[native_id].reject_message,
        )
    # The manifest step found these, after opening the files; the row still names the line.
    for native_id, line in {"up": 8, "abs": 9, "link": 10, "gone": 13}.items():
        assert json.loads(records[native_id].extra)["line"] == line
    assert "'nobody'" in (records["ghost"].reject_message or "")
    assert "recordings.jsonl:9" in (records["orphan"].reject_message or "")
    assert "defined twice" in (records["dup"].reject_message or "")
    assert "2.500-3.500 s" in (records["past"].reject_message or "")
    assert "Speed" in (records["fast"].reject_message or "")


def test_shar_missing_member_and_truncated_tar(corpus: Path, tmp_path: Path) -> None:
    cuts = (
        lhotse.CutSet.from_manifests(
            recordings=lhotse.RecordingSet.from_file(corpus / "corpus_recordings_all.jsonl.gz"),
            supervisions=lhotse.SupervisionSet.from_file(
                corpus / "corpus_supervisions_all.jsonl.gz"
            ),
        )
        .trim_to_supervisions(keep_overlapping=False)
        .with_recording_path_prefix(str(corpus))
    )
    ids = [c.id for c in cuts]
    missing, truncated = tmp_path / "missing", tmp_path / "truncated"
    for folder in (missing, truncated):
        folder.mkdir()
        cuts.to_shar(folder, fields={"recording": "flac"}, shard_size=None)
    with tarfile.open(missing / "recording.tar") as tar:
        kept = [(m, tar.extractfile(m).read()) for m in tar if not m.name.startswith(ids[1])]  # type: ignore[union-attr]
    with tarfile.open(missing / "recording.tar", "w") as tar:
        for member, data in kept:
            tar.addfile(member, io.BytesIO(data))
    data = (truncated / "recording.tar").read_bytes()
    (truncated / "recording.tar").write_bytes(data[: len(data) // 2])

    got = ingest_source("lhotse", tmp_path / "w1", missing)
    assert {k: r.reject_reason for k, r in got.items()} == {
        ids[0]: None,
        ids[1]: "missing_audio",
        ids[2]: None,
    }
    assert "cuts.jsonl.gz:2" in (got[ids[1]].reject_message or "")
    got = ingest_source("lhotse", tmp_path / "w2", truncated)
    assert {r.reject_reason for r in got.values()} == {"unreadable_audio"}
    assert all("recording.tar cannot be read" in (r.reject_message or "") for r in got.values())


def _trimmed_cuts(corpus: Path) -> lhotse.CutSet:
    return (
        lhotse.CutSet.from_manifests(
            recordings=lhotse.RecordingSet.from_file(corpus / "corpus_recordings_all.jsonl.gz"),
            supervisions=lhotse.SupervisionSet.from_file(
                corpus / "corpus_supervisions_all.jsonl.gz"
            ),
        )
        .trim_to_supervisions(keep_overlapping=False)
        .with_recording_path_prefix(str(corpus))
    )


def test_a_shar_tar_with_an_unsafe_member_name_is_not_read(corpus: Path, tmp_path: Path) -> None:
    cuts = _trimmed_cuts(corpus)
    shar = tmp_path / "shar"
    shar.mkdir()
    cuts.to_shar(shar, fields={"recording": "flac"}, shard_size=None)
    with tarfile.open(shar / "recording.tar", "a") as tar:
        info = tarfile.TarInfo("../../evil.flac")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    records = ingest_source("lhotse", tmp_path / "work", shar)
    assert sorted(records) == sorted(c.id for c in cuts)
    for record in records.values():
        assert record.reject_reason == "path_escape"
        assert "../../evil.flac" in (record.reject_message or "")
        assert "cuts.jsonl.gz:" in (record.reject_message or "")


def test_a_manifest_that_breaks_off_is_counted_not_dropped(corpus: Path, tmp_path: Path) -> None:
    lines = [_supervision(f"s{i}", "rec0", 0.01 * i, 0.01, text=f"t{i}") for i in range(200)]
    data = gzip.compress(
        "".join(json.dumps(line) + "\n" for line in lines).encode("utf-8"), mtime=0
    )
    (corpus / "corpus_supervisions_all.jsonl.gz").write_bytes(data[: len(data) // 2])
    records = ingest_source("lhotse", tmp_path / "work", corpus)
    ok = [k for k, r in records.items() if r.status == "ok"]
    broken = [r for r in records.values() if r.status == "rejected"]
    assert set(ok) == {f"s{i}" for i in range(len(ok))} and 0 < len(ok) < 200
    (last,) = broken  # one row stands for the unreadable rest, naming where it broke
    assert last.reject_reason == "malformed_record"
    assert "corpus_supervisions_all.jsonl.gz cannot be read past line" in (
        last.reject_message or ""
    )


def test_a_folder_without_manifests_and_half_named_options_are_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no lhotse manifests"):
        _groups(tmp_path / "empty")
    with pytest.raises(ValueError, match="set both `recordings` and `supervisions`"):
        _groups(tmp_path / "empty", recordings="r.jsonl")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _groups(tmp_path / "empty", cuts="cuts.jsonl.gz")


def test_lhotse_is_imported_only_when_a_lhotse_source_is_read(
    corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = (
        "import sys\n"
        "import pipelines.cli.app, pipelines.sources.lhotse, pipelines.releases.export.lhotse\n"
        "import schemas\n"
        "assert 'lhotse' not in sys.modules, 'lhotse imported at load time'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[3])
    monkeypatch.setitem(sys.modules, "lhotse", None)  # as if it were not installed
    with pytest.raises(LhotseMissingError, match=r"pip install 'voxlake\[lhotse\]'"):
        require_lhotse()
    with pytest.raises(LhotseMissingError):
        _groups(corpus)
