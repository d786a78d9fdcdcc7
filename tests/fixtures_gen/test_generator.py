"""The test-corpus generator: regenerates the corpora and checks them against the committed copy.

Regeneration must reproduce `tests/data/corpora/expected/*.jsonl` exactly
(the connector tests read the committed copy), and the generated corpora must
have their real on-disk structure: LibriSpeech's folders and metadata,
WenetSpeech's JSON and decodable Opus recordings, Emilia's WebDataset tars.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import soundfile as sf

from pipelines.fixtures import EXPECTED_NAMES, espeak_available, make_fixtures
from pipelines.fixtures.expected import REASONS, read_expected

COMMITTED = Path(__file__).resolve().parents[1] / "data" / "corpora"

pytestmark = pytest.mark.skipif(
    not espeak_available(),
    reason="espeak-ng is not installed, so the test corpora cannot be regenerated "
    "(apt-get install espeak-ng)",
)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out_dir = tmp_path_factory.mktemp("corpora")
    make_fixtures(out_dir)
    return out_dir


def _tree(root: Path) -> set[str]:
    return {
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file() or path.is_symlink()
    }


def test_expected_files_equal_the_committed_copy(generated: Path) -> None:
    names = sorted(path.name for path in (generated / "expected").iterdir())
    assert names == sorted(f"{name}.jsonl" for name in EXPECTED_NAMES)
    for name in EXPECTED_NAMES:
        fresh = (generated / "expected" / f"{name}.jsonl").read_text(encoding="utf-8")
        committed = (COMMITTED / "expected" / f"{name}.jsonl").read_text(encoding="utf-8")
        assert fresh == committed, f"{name}: regenerate with python -m pipelines.fixtures"


def test_generated_tree_equals_the_committed_tree(generated: Path) -> None:
    assert _tree(generated) == _tree(COMMITTED)


@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_expected_rows_are_consistent(generated: Path, name: str) -> None:
    rows = read_expected(generated / "expected" / f"{name}.jsonl")
    ids = [row["native_id"] for row in rows]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for row in rows:
        assert (row["status"] == "ok") == (row["reason"] is None), row
        assert row["reason"] is None or row["reason"] in REASONS, row
        if row["status"] == "ok":
            assert row["audio_path"] and row["sample_rate_hz"] and row["duration_s"] > 0, row


def test_librispeech_layout(generated: Path) -> None:
    root = generated / "librispeech" / "LibriSpeech"
    for name in ("README.TXT", "SPEAKERS.TXT", "CHAPTERS.TXT", "BOOKS.TXT"):
        assert (root / name).is_file(), name
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["dev-clean-2", "train-clean-5"]

    speakers = (root / "SPEAKERS.TXT").read_text(encoding="utf-8").splitlines()
    assert ";ID  |SEX| SUBSET           |MINUTES| NAME" in speakers
    listed = {line.split("|")[0].strip() for line in speakers if not line.startswith(";")}
    reading = {p.name for p in root.glob("*/*") if p.is_dir()}
    assert reading < listed  # a listed speaker reads nothing in these splits

    chapters = list(root.glob("*/*/*"))
    assert len(chapters) == 5
    for chapter in chapters:
        _, speaker, chapter_id = chapter.relative_to(root).parts
        transcript = chapter / f"{speaker}-{chapter_id}.trans.txt"
        assert transcript.is_file()
        flacs = sorted(chapter.glob("*.flac"))
        assert 1 <= len(flacs) <= 4
        for flac in flacs:
            assert flac.stem.startswith(f"{speaker}-{chapter_id}-")
            info = sf.info(str(flac))
            assert (info.format, info.subtype, info.samplerate, info.channels) == (
                "FLAC", "PCM_16", 16000, 1
            )
    lines = (root / "dev-clean-2/1272/128104/1272-128104.trans.txt").read_text().splitlines()
    assert lines[0] == "1272-128104-0000 THE LAMP WAS LIT BEFORE THE SUN WENT DOWN"
    latin1 = (root / "train-clean-5/103/1240/103-1240.trans.txt").read_bytes()
    assert b"CAF\xc9" in latin1
    with pytest.raises(UnicodeDecodeError):
        latin1.decode("utf-8")


def test_wenetspeech_json_and_opus_recordings(generated: Path) -> None:
    root = generated / "wenetspeech"
    assert (root / "TERMS_OF_ACCESS").is_file()
    document = json.loads((root / "WenetSpeech.json").read_text(encoding="utf-8"))
    assert list(document) == ["dataset", "language", "version", "description", "audios", "notes"]
    texts = [s["text"] for a in document["audios"] for s in a["segments"]]
    assert any("\u00a0" in t for t in texts) and any("Ω" in t for t in texts)
    assert any(" " in t for t in texts)
    assert any("batch_id" in a for a in document["audios"])
    assert any(s["confidence"] < 1 for a in document["audios"] for s in a["segments"])

    decoded = 0
    for audio in document["audios"]:
        path = root / audio["path"]
        for index, segment in enumerate(audio["segments"]):
            assert segment["sid"] == f"{audio['aid']}_S{index:05d}"
            assert list(segment) == ["sid", "confidence", "begin_time", "end_time", "subsets",
                                     "text"]
        if not audio["path"].startswith("audio/") or not path.exists():
            continue
        data = path.read_bytes()
        assert hashlib.md5(data).hexdigest() == audio["md5"]
        samples, rate = sf.read(io.BytesIO(data), dtype="float32")
        assert rate == 16000 and samples.ndim == 1
        assert 15.0 <= len(samples) / rate <= 40.0
        assert len(samples) / rate == pytest.approx(audio["duration"], abs=0.005)
        assert 3 <= len(audio["segments"]) <= 5
        decoded += 1
    assert decoded == 4
    existing = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.opus"))
    assert [p.split("/")[1:3] for p in existing] == [
        ["dev", "third_party"], ["test_net", "youtube"], ["train", "podcast"], ["train", "youtube"]
    ]


def test_emilia_tars_pair_mp3_and_json(generated: Path) -> None:
    root = generated / "emilia"
    tars = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.tar"))
    assert tars == [
        "Emilia-YODAS/EN/EN-B000000.tar", "Emilia/EN/EN-B000000.tar", "Emilia/ZH/ZH-B000000.tar"
    ]
    dnsmos: list[float] = []
    for tar_name in tars:
        with tarfile.open(root / tar_name) as tar:
            members = tar.getmembers()
            contents = {m.name: tar.extractfile(m).read() for m in members}  # type: ignore[union-attr]
        assert all((m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "") for m in members)
        names = [m.name for m in members]
        assert 3 <= len({name.rsplit(".", 1)[0] for name in names}) <= 5
        for position, name in enumerate(names):
            key, extension = name.rsplit(".", 1)
            assert extension in ("mp3", "json")
            # A pair is always mp3 then json, side by side; strays stand alone.
            if extension == "json" and f"{key}.mp3" in contents:
                assert names[position - 1] == f"{key}.mp3"
            try:
                record = json.loads(contents[name]) if extension == "json" else None
            except json.JSONDecodeError:
                continue
            if record is None or key.startswith(".."):
                continue
            assert list(record) == ["id", "wav", "text", "duration", "speaker", "language",
                                    "dnsmos"]
            assert record["id"] == key
            assert record["speaker"] == key.rsplit("_W", 1)[0]
            assert record["language"] == record["language"].lower()
            assert record["wav"].endswith(f"/mp3/{key}.mp3")
            dnsmos.append(record["dnsmos"])
            if f"{key}.mp3" in contents:
                info = sf.info(io.BytesIO(contents[f"{key}.mp3"]))
                assert (info.samplerate, info.channels) == (24000, 1)
                assert info.frames / info.samplerate == pytest.approx(record["duration"], abs=1e-3)
    assert min(dnsmos) < 3.0 <= max(dnsmos)


def test_custom_corpora_formats(generated: Path) -> None:
    folder = generated / "custom" / "folder"
    formats = {
        "speaker_a/a1.wav": ("WAV", 16000, 1),
        "speaker_a/a2.flac": ("FLAC", 44100, 2),
        "speaker_b/b1.mp3": ("MP3", 22050, 1),
        "speaker_b/b2.ogg": ("OGG", 48000, 2),
        "speaker_b/b3.opus": ("OGG", 48000, 1),
        "speaker_c/c1.wav": ("WAV", 8000, 1),
    }
    for name, expected in formats.items():
        info = sf.info(str(folder / name))
        assert (info.format, info.samplerate, info.channels) == expected, name
    assert sf.info(str(folder / "speaker_b/b3.opus")).subtype == "OPUS"
    link = folder / "links" / "escape.wav"
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    assert not link.resolve().is_relative_to(folder.resolve())

    header = (generated / "custom/table/manifest.csv").read_text().splitlines()[0]
    assert header == "path,text,speaker,language,start,end"

    hf_disk = generated / "custom" / "hf_disk"
    assert json.loads((hf_disk / "dataset_dict.json").read_text()) == {"splits": ["train", "test"]}
    assert sorted(p.relative_to(hf_disk).as_posix() for p in hf_disk.rglob("*.arrow")) == [
        "test/data-00000-of-00001.arrow",
        "train/data-00000-of-00002.arrow",
        "train/data-00001-of-00002.arrow",
    ]
    table = pq.read_table(generated / "custom/hf_parquet/train-00000-of-00001.parquet")
    assert table.column_names == ["file", "audio", "text", "speaker_id", "chapter_id", "id"]
    assert str(table.schema.field("audio").type) == "struct<bytes: binary, path: string>"
    assert table.column("audio").null_count == 1
