"""The test-corpus generator: regenerates the corpora and checks them against the committed copy.

Regeneration must reproduce `tests/data/corpora/expected/*.jsonl` exactly
(the connector tests read the committed copy), and the generated corpora must
have their real on-disk structure: LibriSpeech's folders and metadata,
WenetSpeech's JSON and decodable Opus recordings, Emilia's WebDataset tars.
Every row ingest accepts is then measured and judged under the demo policy:
its `later_reason` must be the rule that fires first, and a row without one
must be accepted.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from dataclasses import asdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import soundfile as sf

from pipelines.audio.decode import AudioDecodeError
from pipelines.audio.prepare import Segment, prepare_many
from pipelines.audio.ref import AudioOpener
from pipelines.demo.corpus import EXPECTED_NAMES, espeak_available, make_fixtures
from pipelines.demo.corpus.expected import DEMO_SOURCE_RULES, LATER_REASONS, REASONS, read_expected
from pipelines.lake.paths import Lake
from pipelines.sources.base import source_root
from pipelines.steps.inventory import inventory_source
from pipelines.steps.manifest import manifest_records
from quality.measures import measure
from quality.policy import judge
from schemas import QualityPolicy, SourceConfig, UnitLimits
from schemas.audio import TARGET_SAMPLE_RATE_HZ

COMMITTED = Path(__file__).resolve().parents[2] / "data" / "corpora"

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
        assert fresh == committed, f"{name}: regenerate with python -m pipelines.demo.corpus"


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
        assert row["later_reason"] is None or row["later_reason"] in LATER_REASONS, row
        assert row["later_reason"] is None or row["status"] == "ok", row
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
                "FLAC",
                "PCM_16",
                16000,
                1,
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
    # One entry's `segments` is a string on purpose (ingest rejects it as malformed).
    flattened = [a for a in document["audios"] if not isinstance(a["segments"], list)]
    assert [a["aid"] for a in flattened] == ["Y0000000009_flattened"]
    audios = [a for a in document["audios"] if a not in flattened]
    texts = [s["text"] for a in audios for s in a["segments"]]
    assert any("\u00a0" in t for t in texts) and any("Ω" in t for t in texts)
    assert any(" " in t for t in texts)
    assert any("batch_id" in a for a in audios)
    assert any(s["confidence"] < 1 for a in audios for s in a["segments"])

    decoded = 0
    for audio in audios:
        path = root / audio["path"]
        for index, segment in enumerate(audio["segments"]):
            # A segment listed a second time (a duplicate_id for ingest) repeats an earlier one.
            repeat = segment in audio["segments"][:index]
            assert repeat or segment["sid"] == f"{audio['aid']}_S{index:05d}"
            assert list(segment) == [
                "sid",
                "confidence",
                "begin_time",
                "end_time",
                "subsets",
                "text",
            ]
        if not audio["path"].startswith("audio/") or not path.exists():
            continue
        data = path.read_bytes()
        assert hashlib.md5(data).hexdigest() == audio["md5"]
        samples, rate = sf.read(io.BytesIO(data), dtype="float32")
        assert rate == 16000 and samples.ndim == 1
        assert 15.0 <= len(samples) / rate <= 40.0
        assert len(samples) / rate == pytest.approx(audio["duration"], abs=0.005)
        assert 3 <= len(audio["segments"]) <= 6
        decoded += 1
    assert decoded == 4
    existing = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.opus"))
    assert [p.split("/")[1:3] for p in existing] == [
        ["dev", "third_party"],
        ["test_net", "youtube"],
        ["train", "podcast"],
        ["train", "youtube"],
    ]


def test_emilia_tars_pair_mp3_and_json(generated: Path) -> None:
    root = generated / "emilia"
    tars = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.tar"))
    assert tars == [
        "Emilia-YODAS/EN/EN-B000000.tar",
        "Emilia/EN/EN-B000000.tar",
        "Emilia/ZH/ZH-B000000.tar",
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
            assert list(record) == [
                "id",
                "wav",
                "text",
                "duration",
                "speaker",
                "language",
                "dnsmos",
            ]
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
        **{
            f"quality/{stem}.wav": ("WAV", 16000, 1)
            for stem in ("noisy", "clipped", "short", "mostly_silent", "misaligned")
        },
    }
    for name, expected in formats.items():
        info = sf.info(str(folder / name))
        assert (info.format, info.samplerate, info.channels) == expected, name
    clipped, _ = sf.read(folder / "quality/clipped.wav", dtype="int16")
    assert (clipped.max(), clipped.min()) == (32767, -32768)  # hard-clipped at full scale
    assert sf.info(str(folder / "quality/short.wav")).frames == 4800  # 0.3 s at 16 kHz
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


# Every corpus as the demo project declares it: (connector kind, path under the corpora).
# Source names are the expected-file names; the demo policy's per-source rules key on
# `emilia` and `wenetspeech`.
DEMO_SOURCES = {
    "librispeech": ("librispeech", "librispeech/LibriSpeech"),
    "wenetspeech": ("wenetspeech", "wenetspeech"),
    "emilia": ("emilia", "emilia"),
    "custom_folder": ("audio_folder", "custom/folder"),
    "custom_table": ("table", "custom/table/manifest.csv"),
    "custom_table_jsonl": ("table", "custom/table/manifest.jsonl"),
    "custom_vita": ("vita_jsonl", "custom/vita/data.jsonl"),
    "custom_hf_disk": ("hf_dataset", "custom/hf_disk"),
    "custom_hf_parquet": ("hf_dataset", "custom/hf_parquet"),
}


@pytest.fixture(scope="module")
def judged(generated: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Every row ingest accepts, measured and judged as the quality step does, by
    "<expected name>/<native id>": {"later_reason", "rules" (failed, in order), "measures"}."""
    assert sorted(DEMO_SOURCES) == sorted(EXPECTED_NAMES)
    policy = QualityPolicy(sources=DEMO_SOURCE_RULES)
    work = tmp_path_factory.mktemp("judged")
    out: dict[str, dict] = {}
    for name, (kind, relative) in DEMO_SOURCES.items():
        expected = {
            row["native_id"]: row for row in read_expected(generated / "expected" / f"{name}.jsonl")
        }
        source = SourceConfig(name=name, kind=kind, path=str(generated / relative))
        lake = Lake(work / name)
        plans = inventory_source(source, work, lake, UnitLimits())
        rows = [
            r
            for plan in plans
            for r in manifest_records(source, work, lake, plan.unit)
            if r.status == "ok"
        ]
        # Whole files decode to their end, segments are cut: as pipelines/quality_step.py does.
        segments = [
            Segment(
                r.audio_path, r.audio_member, r.offset_s, r.duration_s if r.is_segment else None
            )
            for r in rows
        ]
        with AudioOpener(source_root(generated / relative)) as opener:
            for position, prepared in prepare_many(segments, opener.open):
                row = rows[position]
                native_id = row.utterance_id.removeprefix(f"{name}/")
                assert not isinstance(prepared, AudioDecodeError), (native_id, prepared.message)
                measures = asdict(measure(prepared.samples, TARGET_SAMPLE_RATE_HZ, row.text))
                failures = judge(
                    policy,
                    name,
                    row.language,
                    measures,
                    declared_duration_s=row.duration_s,
                    extra=json.loads(row.extra),
                    subsets=row.subsets,
                )
                out[f"{name}/{native_id}"] = {
                    "later_reason": expected[native_id]["later_reason"],
                    "rules": [f.rule for f in failures],
                    "measures": measures,
                }
    return out


def test_later_reason_is_the_first_rule_the_demo_policy_fires(
    judged: dict[str, dict], generated: Path
) -> None:
    ok_rows = sum(
        row["status"] == "ok"
        for name in EXPECTED_NAMES
        for row in read_expected(generated / "expected" / f"{name}.jsonl")
    )
    assert len(judged) == ok_rows
    for key, outcome in judged.items():
        first = outcome["rules"][0] if outcome["rules"] else None
        assert first == outcome["later_reason"], (key, outcome["rules"], outcome["measures"])
    planted = {
        key: outcome["later_reason"] for key, outcome in judged.items() if outcome["later_reason"]
    }
    assert planted == {
        "custom_folder/broken/nan": "max_non_finite_samples",
        "custom_folder/quality/clipped": "max_clipping_ratio",
        "custom_folder/quality/misaligned": "max_chars_per_s",
        "custom_folder/quality/mostly_silent": "max_silence_ratio",
        "custom_folder/quality/noisy": "min_snr_db",
        "custom_folder/quality/short": "min_duration_s",
        "emilia/EN_B00000_S00000_W000001": "min_dnsmos",
        "wenetspeech/Y0000000000_--5llN02F84_S00002": "min_confidence",
    }


def test_quality_defects_measure_as_planted(judged: dict[str, dict]) -> None:
    def measured(stem: str) -> dict:
        return judged[f"custom_folder/quality/{stem}"]["measures"]

    # 0 dB: white noise as powerful as the speech; WADA-SNR reads it within a dB or two.
    assert measured("noisy")["wada_snr_db"] == pytest.approx(0.0, abs=2.0)
    # x8 on speech peaking at 0.5: a tenth of the samples at full scale, 100x the limit.
    assert measured("clipped")["clipping_ratio"] > 0.05
    assert measured("short")["duration_s"] == 0.3
    # ~0.8 s of speech, then 6 s of digital silence.
    assert 0.85 < measured("mostly_silent")["silence_ratio"] < 0.95
    # ~1.5 s of speech against a ~200-character paragraph.
    misaligned = measured("misaligned")
    assert misaligned["duration_s"] == pytest.approx(1.5, abs=0.2)
    assert misaligned["chars_per_s"] > 2 * 35.0
