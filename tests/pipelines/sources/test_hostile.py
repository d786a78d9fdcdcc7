"""One test per kind of hostile input, on copies of the generated corpora.

Each test copies a bundled corpus, breaks it the way real corpora break, runs
the real connector and manifest step, and checks three things: the broken
input is rejected on its own with its reason and a message naming the file
(and line or member) and the problem; every other utterance gets the outcome
it had before; and the unit's accounting check passes (`inputs == ok +
rejected`, unique ids), so nothing downstream is blocked.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import polars as pl
import pytest

from pipelines.lake.paths import Lake
from pipelines.steps.inventory import inventory_source
from pipelines.steps.manifest import build_manifest, check_accounting
from schemas import ManifestRecord, SourceConfig, UnitLimits


def _ingest(kind: str, work: Path, path: Path) -> dict[str, ManifestRecord]:
    """Inventory + manifest of one source, every unit's accounting checked; rows by native id."""
    lake = Lake(work / "lake")
    source = SourceConfig(name="src", kind=kind, path=str(path))
    rows: dict[str, ManifestRecord] = {}
    for plan in inventory_source(source, work, lake, UnitLimits(max_utterances=6)):
        summary = build_manifest(source, work, lake, plan.unit, plan.n_inputs)
        frame = pl.read_parquet(lake.manifest("src", plan.unit))
        outcome = check_accounting(plan.n_inputs, summary, frame)
        assert outcome.passed, (plan.unit, outcome.description)
        for row in frame.iter_rows(named=True):
            record = ManifestRecord.model_validate(row)
            native_id = record.utterance_id.removeprefix("src/")
            assert native_id not in rows, native_id
            rows[native_id] = record
    return rows


def _copy(corpora: Path, relative: str, work: Path) -> Path:
    target = work / "corpus"
    shutil.copytree(corpora / relative, target, symlinks=True)
    return target


def _outcomes(rows: dict[str, ManifestRecord]) -> dict[str, str | None]:
    return {k: r.reject_reason for k, r in rows.items()}


def _assert_only(
    before: dict[str, ManifestRecord], after: dict[str, ManifestRecord], changed: dict[str, str]
) -> None:
    """`after` is `before` with exactly the ids in `changed` added or rejected for that reason."""
    expected = _outcomes(before) | changed
    assert _outcomes(after) == expected


@pytest.fixture
def libri(corpora: Path, tmp_path: Path) -> tuple[Path, dict[str, ManifestRecord]]:
    root = _copy(corpora, "librispeech/LibriSpeech", tmp_path / "base")
    return root, _ingest("librispeech", tmp_path / "base", root)


def test_a_repeated_librispeech_transcript_line_blocks_nothing(
    libri: tuple[Path, dict[str, ManifestRecord]], tmp_path: Path
) -> None:
    base_root, before = libri
    root = _copy(base_root.parent, base_root.name, tmp_path)
    trans = root / "train-clean-5/103/1240/103-1240.trans.txt"
    lines = trans.read_bytes().splitlines(keepends=True)
    trans.write_bytes(b"".join([*lines, lines[0]]))  # the first utterance listed again
    after = _ingest("librispeech", tmp_path, root)
    _assert_only(before, after, {"103-1240-0000#2": "duplicate_id"})
    message = after["103-1240-0000#2"].reject_message or ""
    assert "103-1240.trans.txt:4" in message and "'103-1240-0000'" in message
    assert after["103-1240-0000"].status == "ok"  # the first occurrence wins


def test_a_chapter_under_another_speakers_folder_is_rejected_as_inconsistent(
    libri: tuple[Path, dict[str, ManifestRecord]], tmp_path: Path
) -> None:
    base_root, before = libri
    root = _copy(base_root.parent, base_root.name, tmp_path)
    # Chapter 1240 of speaker 103, moved under speaker 1034's folder.
    (root / "train-clean-5/103/1240").rename(root / "train-clean-5/1034/1240")
    after = _ingest("librispeech", tmp_path, root)
    moved = [k for k in before if k.startswith("103-1240-")]
    # The chapter's good utterances are now contradicted by their folder; one that was
    # already rejected (its line is not UTF-8) keeps that reason.
    ok_moved = [k for k in moved if before[k].status == "ok"]
    assert ok_moved
    for native_id in moved:
        if native_id not in ok_moved:
            assert after[native_id].reject_reason == before[native_id].reject_reason
            continue
        row = after[native_id]
        assert row.reject_reason == "inconsistent_metadata", native_id
        assert "speaker 103" in (row.reject_message or "")
        assert "speaker 1034" in (row.reject_message or "")
    others = {k: v for k, v in _outcomes(after).items() if k not in moved}
    assert others == {k: v for k, v in _outcomes(before).items() if k not in moved}


@pytest.fixture
def wenet(corpora: Path, tmp_path: Path) -> tuple[Path, dict[str, ManifestRecord]]:
    root = _copy(corpora, "wenetspeech", tmp_path / "base")
    return root, _ingest("wenetspeech", tmp_path / "base", root)


def _edit_wenet(root: Path, edit) -> None:  # type: ignore[no-untyped-def]
    path = root / "WenetSpeech.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    edit(document["audios"])
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")


def test_a_wenetspeech_segment_or_recording_listed_twice_blocks_nothing(
    wenet: tuple[Path, dict[str, ManifestRecord]], tmp_path: Path
) -> None:
    base_root, before = wenet
    root = _copy(base_root.parent, base_root.name, tmp_path)
    repeated: list[str] = []

    def edit(audios: list) -> None:
        audios[1]["segments"].append(dict(audios[1]["segments"][0]))  # a segment twice
        audios.append(json.loads(json.dumps(audios[1])))  # the whole recording twice
        repeated.extend(s["sid"] for s in audios[1]["segments"])

    _edit_wenet(root, edit)
    after = _ingest("wenetspeech", tmp_path, root)
    added = set(after) - set(before)
    # One more row per repeat: the segment listed twice, and every segment of the
    # recording listed again; each is a duplicate, and nothing else changed.
    assert len(added) == len(repeated) + 1
    assert all(after[k].reject_reason == "duplicate_id" for k in added)
    assert {k.split("#")[0] for k in added} == set(repeated)
    assert {k: after[k].reject_reason for k in before} == _outcomes(before)
    first_repeat = f"{repeated[0]}#2"
    assert "WenetSpeech.json audios[1].segments[" in (after[first_repeat].reject_message or "")


def test_wenetspeech_entries_of_the_wrong_type_are_rejected_not_dropped(
    wenet: tuple[Path, dict[str, ManifestRecord]], tmp_path: Path
) -> None:
    base_root, before = wenet
    root = _copy(base_root.parent, base_root.name, tmp_path)
    lost: list[str] = []

    def edit(audios: list) -> None:
        lost.extend(s["sid"] for s in audios[1]["segments"])
        audios[1]["segments"] = "not a list"
        audios.append("not a recording")

    _edit_wenet(root, edit)
    after = _ingest("wenetspeech", tmp_path, root)
    aid = next(r.extra for r in before.values() if r.utterance_id.endswith(lost[0]))
    aid = json.loads(aid)["aid"]
    n_audios = len(json.loads((root / "WenetSpeech.json").read_text())["audios"])
    expected = {k: v for k, v in _outcomes(before).items() if k not in lost}
    expected |= {
        f"{aid}:segments": "malformed_record",
        f"audios[{n_audios - 1}]": "malformed_record",
    }
    assert _outcomes(after) == expected
    assert "'segments' is a string, not a list" in (after[f"{aid}:segments"].reject_message or "")
    assert "is a string, not an object" in (after[f"audios[{n_audios - 1}]"].reject_message or "")


def _rewrite_member(tar_path: Path, name: str, edit) -> None:  # type: ignore[no-untyped-def]
    with tarfile.open(tar_path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar if m.isfile()]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as out:
        for member, body in members:
            if member.name == name:
                body = edit(body)
            copy = tarfile.TarInfo(member.name)
            copy.size, copy.mtime = len(body), member.mtime
            out.addfile(copy, io.BytesIO(body))
    tar_path.write_bytes(buffer.getvalue())


@pytest.mark.parametrize(
    ("field", "value", "phrase"),
    [
        ("text", ["a", "list"], "'text' is a list, not a string"),
        ("text", 42, "'text' is a number, not a string"),
        ("dnsmos", "high", "'dnsmos' is a string, not a number"),
        ("speaker", {"id": 1}, "'speaker' is an object, not a string"),
    ],
)
def test_an_emilia_field_of_the_wrong_type_rejects_its_sample(
    corpora: Path, tmp_path: Path, field: str, value: object, phrase: str
) -> None:
    root = _copy(corpora, "emilia", tmp_path)
    before = _ingest("emilia", tmp_path / "b", _copy(corpora, "emilia", tmp_path / "b"))
    tar_path = root / "Emilia/EN/EN-B000000.tar"
    with tarfile.open(tar_path) as tar:
        member = next(m.name for m in tar if m.name.endswith(".json"))
    key = member.removesuffix(".json")
    assert before[key].status == "ok"

    def edit(body: bytes) -> bytes:
        record = json.loads(body)
        record[field] = value
        return json.dumps(record).encode()

    _rewrite_member(tar_path, member, edit)
    after = _ingest("emilia", tmp_path, root)
    _assert_only(before, after, {key: "malformed_record"})
    message = after[key].reject_message or ""
    assert phrase in message and "EN-B000000.tar" in message and member in message


def test_a_csv_manifest_with_an_id_twice_blocks_nothing(corpora: Path, tmp_path: Path) -> None:
    base = _copy(corpora, "custom/table", tmp_path / "base")
    text = (base / "manifest.csv").read_text(encoding="utf-8").splitlines()
    header, rows = text[0], text[1:]
    with_ids = [f"{header},id"] + [f"{row},utt{i}" for i, row in enumerate(rows)]
    (base / "manifest.csv").write_text("\n".join(with_ids) + "\n", encoding="utf-8")
    before = _ingest("table", tmp_path / "base", base / "manifest.csv")
    root = _copy(tmp_path / "base", "corpus", tmp_path)
    (root / "manifest.csv").write_text("\n".join([*with_ids, with_ids[1]]) + "\n", encoding="utf-8")
    after = _ingest("table", tmp_path, root / "manifest.csv")
    _assert_only(before, after, {"utt0#2": "duplicate_id"})
    assert f"manifest.csv:{len(with_ids) + 1}" in (after["utt0#2"].reject_message or "")


@pytest.fixture
def folder(corpora: Path, tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    root.mkdir()
    for name in ("speaker_a", "speaker_b"):
        shutil.copytree(corpora / "custom/folder" / name, root / name)
    return root


def test_a_file_name_that_is_not_utf8_is_rejected_alone(folder: Path, tmp_path: Path) -> None:
    before = _ingest("audio_folder", tmp_path / "b", folder)
    shutil.rmtree(tmp_path / "b" / "lake")
    bad = os.path.join(os.fsencode(folder / "speaker_a"), b"caf\xe9.wav")
    shutil.copy(folder / "speaker_a" / "a1.wav", os.fsdecode(bad))
    after = _ingest("audio_folder", tmp_path, folder)
    _assert_only(before, after, {"speaker_a/caf\\xe9": "invalid_file_name"})
    assert "speaker_a/caf\\xe9.wav" in (after["speaker_a/caf\\xe9"].reject_message or "")


def test_a_wav_shorter_than_its_header_is_truncated_not_a_short_clip(
    folder: Path, tmp_path: Path
) -> None:
    before = _ingest("audio_folder", tmp_path / "b", folder)
    wav = folder / "speaker_a" / "a1.wav"
    assert before["speaker_a/a1"].status == "ok"
    data = wav.read_bytes()
    wav.write_bytes(data[: len(data) // 2])
    after = _ingest("audio_folder", tmp_path, folder)
    _assert_only(before, after, {"speaker_a/a1": "truncated_audio"})
    assert "the WAV header declares" in (after["speaker_a/a1"].reject_message or "")


def test_misleading_files_get_messages_that_say_what_they_are(folder: Path, tmp_path: Path) -> None:
    before = _ingest("audio_folder", tmp_path / "b", folder)
    (folder / "speaker_a" / "id3only.mp3").write_bytes(
        b"ID3\x03\x00\x00\x00\x00\x00\x0a" + bytes(10)
    )
    os.mkfifo(folder / "speaker_a" / "pipe.wav")
    (folder / "speaker_a" / "empty.flac").write_bytes(b"")
    after = _ingest("audio_folder", tmp_path, folder)
    _assert_only(
        before,
        after,
        {
            "speaker_a/id3only": "unreadable_audio",
            "speaker_a/pipe": "unreadable_audio",
            "speaker_a/empty": "unreadable_audio",
        },
    )
    messages = {k: after[k].reject_message or "" for k in after if k.startswith("speaker_a/")}
    assert "no audio stream in a format libsndfile knows" in messages["speaker_a/id3only"]
    assert "is a FIFO (named pipe), not a regular file" in messages["speaker_a/pipe"]
    assert "the file is empty (0 bytes)" in messages["speaker_a/empty"]
    for message in messages.values():
        assert "does not exist" not in message and " object" not in message


def test_a_zero_byte_tar_member_names_the_member_without_python_internals(
    corpora: Path, tmp_path: Path
) -> None:
    before = _ingest("emilia", tmp_path / "b", _copy(corpora, "emilia", tmp_path / "b"))
    root = _copy(corpora, "emilia", tmp_path)
    tar_path = root / "Emilia/EN/EN-B000000.tar"
    with tarfile.open(tar_path) as tar:
        member = next(m.name for m in tar if m.name.endswith(".mp3"))
    key = member.removesuffix(".mp3")
    assert before[key].status == "ok"
    _rewrite_member(tar_path, member, lambda body: b"")
    after = _ingest("emilia", tmp_path, root)
    # Emilia declares durations, so ingest does not probe the member: the empty member is
    # found when the audio is decoded. The manifest row is still ok; decode rejects it.
    from pipelines.audio.decode import AudioDecodeError, decode
    from pipelines.audio.ref import AudioOpener

    with AudioOpener(root) as opener:
        with pytest.raises(AudioDecodeError) as caught:
            decode(opener.open(after[key].audio_path or "", member), member)
    assert caught.value.reason == "unreadable_audio"
    assert caught.value.message == f"{member}: the file is empty (0 bytes)"
