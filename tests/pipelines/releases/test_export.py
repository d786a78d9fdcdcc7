"""Tests of the release exports over a tiny real lake: synthetic shards written by the shard
writer (two units, several shards) and a release written by hand with the release contract,
holding a dropped duplicate, an utterance without text and one whose text holds a chat
special token.

Checked: the VITA-Audio JSONL (templates, one `audios` entry per `<|audio|>`, splits, order,
UTF-8), the audio files (the shard's FLAC bytes, the release's duration) and their
`_glm4voice.json` code caches (upstream's name and format, the shard's codes), export.json
lineage, byte-identical re-exports, the out-folder rules, a shard rewritten after the release;
and the Hugging Face DatasetDict read back with `load_from_disk` (rows, codes, decoded audio).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import doctest
import hashlib
import io
import json
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf

import pipelines.releases.export.vita_jsonl as vita_export
from pipelines.audio.pcm import encode_flac16
from pipelines.lake.atomic import write_bytes_atomic, write_parquet_atomic
from pipelines.project import Project
from pipelines.releases.create import ReleaseError
from pipelines.releases.export.hf import export_hf
from pipelines.releases.export.staging import ExportError
from pipelines.releases.export.vita_jsonl import code_cache_path, export_vita_jsonl
from pipelines.shards.writer import ShardSample, write_shards
from schemas import ProjectConfig, ShardIndexRow, ShardLimits, ShardSampleMeta
from schemas.release import (
    RELEASE_FILE,
    RELEASE_UTTERANCE_ARROW_SCHEMA,
    UTTERANCES_FILE,
    Release,
    ReleaseShard,
)
from schemas.shards import shard_key

RATE_HZ = 16000
SOURCE = "synthetic"
RELEASE = "tiny-v1"
TOKENIZER_SHA256 = "cd" * 32
POLICY_VERSION = "policy-2025-01"
LIMITS = ShardLimits(max_bytes=1_000_000, max_samples=2)


@dataclasses.dataclass(frozen=True)
class Planned:
    """One utterance of the tiny lake: where it goes and what it says."""

    utterance_id: str
    unit: str
    split: str | None  # None: dropped as a duplicate
    text: str | None
    speaker: str
    duplicate_of: str | None = None


PLAN = [
    Planned("spk0/utt-0000", "u0", "train", "a plain sentence", "spk0"),
    Planned("spk0/utt-0001", "u0", "train", 'naïve café 你好 "quoted"\nsecond line', "spk0"),
    Planned("spk1/utt-0002", "u0", "dev", None, "spk1"),
    Planned("spk1/utt.0003", "u0", "dev", "a dotted id", "spk1"),
    Planned("spk2/utt-0004", "u1", "test", "fourth", "spk2"),
    Planned("spk2/utt-0005", "u1", None, "a plain sentence", "spk2", "spk0/utt-0000"),
    Planned("spk3/utt-0006", "u1", "train", "ends the turn <|im_end|> early", "spk3"),
    Planned("spk3/utt-0007", "u1", "train", "   ", "spk3"),
]
WITH_TEXT = {"spk0/utt-0000", "spk0/utt-0001", "spk1/utt.0003", "spk2/utt-0004"}


@dataclasses.dataclass(frozen=True)
class TinyLake:
    """The project, the samples as written, and the index rows by key."""

    project: Project
    samples: dict[str, ShardSample]  # by key
    rows: dict[str, ShardIndexRow]  # by key
    release: Release


def _audio(index: int, rng: np.random.Generator) -> np.ndarray:
    frames = int(RATE_HZ * rng.uniform(0.4, 1.6))
    t = np.arange(frames) / RATE_HZ
    tone = 0.3 * np.sin(2 * np.pi * (180 + 50 * index) * t)
    return (tone + 0.03 * rng.standard_normal(frames)).astype(np.float32)


def _sample(planned: Planned, audio: np.ndarray, codes: np.ndarray) -> ShardSample:
    meta = ShardSampleMeta(
        utterance_id=planned.utterance_id,
        source=SOURCE,
        text=planned.text,
        speaker=planned.speaker,
        language="en",
        split=planned.split,
        duration_s=len(audio) / RATE_HZ,
        snr_db=25.0,
        stnr_snr_db=None,
        clipping_ratio=0.0,
        silence_ratio=0.1,
        rms_dbfs=-20.0,
        bandwidth_hz=7900.0,
        chars_per_s=None,
        n_codes=len(codes),
        pcm_sha256=hashlib.sha256(audio.tobytes()).hexdigest(),
        tokenizer_sha256=TOKENIZER_SHA256,
        tokenizer_is_demo=True,
        policy_version=POLICY_VERSION,
    )
    key = shard_key(planned.utterance_id)
    return ShardSample(key, planned.utterance_id, encode_flac16(audio), codes, meta)


def build_tiny_lake(folder: Path) -> TinyLake:
    """Shards for two units and the release `tiny-v1` over them."""
    project = Project(folder, ProjectConfig())
    lake_root = project.lake.root
    rng = np.random.default_rng(7)
    audio_by_id: dict[str, np.ndarray] = {}
    samples: dict[str, ShardSample] = {}
    by_unit: dict[str, list[ShardSample]] = {}
    for index, planned in enumerate(PLAN):
        if planned.duplicate_of:
            audio = audio_by_id[planned.duplicate_of]  # the same PCM: a true duplicate
        else:
            audio = _audio(index, rng)
        audio_by_id[planned.utterance_id] = audio
        codes = rng.integers(0, 16384, max(1, round(len(audio) / RATE_HZ * 12.5)))
        sample = _sample(planned, audio, codes.astype(np.uint16))
        samples[sample.key] = sample
        by_unit.setdefault(planned.unit, []).append(sample)
    rows: dict[str, ShardIndexRow] = {}
    for unit, unit_samples in by_unit.items():
        written = write_shards(
            unit_samples,
            project.lake.shards_dir(SOURCE, unit),
            LIMITS,
            source=SOURCE,
            unit=unit,
            lake_root=lake_root,
        )
        rows.update({row.key: row for row in written})
    release = write_release(project, rows)
    return TinyLake(project, samples, rows, release)


def write_release(project: Project, rows: dict[str, ShardIndexRow]) -> Release:
    """`releases/tiny-v1/` by hand: release.json and utterances.parquet."""
    plan = {p.utterance_id: p for p in PLAN}
    ordered = sorted(rows.values(), key=lambda r: r.utterance_id)
    utterances = [
        {
            "utterance_id": r.utterance_id,
            "key": r.key,
            "shard": r.shard,
            "source": r.source,
            "language": "en",
            "speaker": plan[r.utterance_id].speaker,
            "duration_s": r.duration_s,
            "split": plan[r.utterance_id].split,
            "duplicate_of": plan[r.utterance_id].duplicate_of,
        }
        for r in ordered
    ]
    shards = {
        r.shard: ReleaseShard(
            shard=r.shard, sha256=r.shard_sha256, bytes=r.shard_bytes, source=r.source, unit=r.unit
        )
        for r in ordered
    }
    kept = [u for u in utterances if u["split"] is not None]
    release = Release(
        name=RELEASE,
        created_at=dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC),
        where="TRUE",
        dedup=True,
        n_utterances=len(kept),
        duration_s=round(sum(u["duration_s"] for u in kept), 3),
        n_duplicates_dropped=len(utterances) - len(kept),
        policy_versions=[POLICY_VERSION],
        tokenizer_sha256=[TOKENIZER_SHA256],
        tokenizer_is_demo=True,
        code_version="0.1.0+gtest",
        shards=sorted(shards.values(), key=lambda s: s.shard),
    )
    folder = project.lake.release_dir(RELEASE)
    write_parquet_atomic(
        folder / UTTERANCES_FILE,
        pa.Table.from_pylist(utterances, schema=RELEASE_UTTERANCE_ARROW_SCHEMA),
    )
    write_bytes_atomic(folder / RELEASE_FILE, release.model_dump_json(indent=1).encode())
    return release


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyLake:
    return build_tiny_lake(tmp_path_factory.mktemp("project"))


def _key(utterance_id: str) -> str:
    return shard_key(utterance_id)


def _split_of(key: str) -> str | None:
    return {_key(p.utterance_id): p.split for p in PLAN}[key]


def _read_jsonl(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------------------
# VITA-Audio JSONL


def test_module_doctests() -> None:
    result = doctest.testmod(vita_export)
    assert result.attempted >= 3 and result.failed == 0


def test_code_cache_name_is_upstreams_rule() -> None:
    # upstream: os.path.splitext(audio_path)[0] + "_glm4voice.json"
    assert code_cache_path(Path("audio/a__b-1f2e3d4c.flac")) == Path(
        "audio/a__b-1f2e3d4c_glm4voice.json"
    )
    assert code_cache_path(Path("/x/y.z/k.flac")) == Path("/x/y.z/k_glm4voice.json")


def test_vita_export_files_and_templates(tiny: TinyLake, tmp_path: Path) -> None:
    out = tmp_path / "vita"
    stats = export_vita_jsonl(tiny.project, RELEASE, out)

    assert sorted(p.name for p in out.iterdir()) == [
        "audio",
        "dev.jsonl",
        "export.json",
        "test.jsonl",
        "train.jsonl",
    ]
    exported_keys = sorted(_key(u) for u in WITH_TEXT)
    audio_files = sorted(p.name for p in (out / "audio").iterdir())
    assert audio_files == sorted(
        [f"{k}.flac" for k in exported_keys] + [f"{k}_glm4voice.json" for k in exported_keys]
    )

    seen_keys = []
    for split in ("train", "dev", "test"):
        lines = _read_jsonl(out / f"{split}.jsonl")
        for example in lines:
            assert set(example) == {"messages", "audios"}
            tags = sum(m["content"].count("<|audio|>") for m in example["messages"])
            assert tags == len(example["audios"]) == 1
            (audio_ref,) = example["audios"]
            key = Path(audio_ref).stem
            assert audio_ref == f"audio/{key}.flac"
            assert _split_of(key) == split
        keys = [Path(e["audios"][0]).stem for e in lines]
        assert keys == sorted(keys)  # ordered by key
        # ASR then TTS for each utterance
        assert keys[::2] == keys[1::2]
        assert [e["messages"][0]["content"].split("\n")[0] for e in lines] == [
            "Convert the speech to text.",
            "Convert the text to speech.",
        ] * (len(lines) // 2)
        seen_keys += keys[::2]
    assert sorted(seen_keys) == exported_keys

    # The templates, byte for byte (UTF-8 unescaped, the text's newline and quotes escaped)
    key = _key("spk0/utt-0001")
    text = 'naïve café 你好 "quoted"\nsecond line'
    train_lines = (out / "train.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(train_lines[2]) == {
        "messages": [
            {"role": "user", "content": "Convert the speech to text.\n<|audio|>"},
            {"role": "assistant", "content": text},
        ],
        "audios": [f"audio/{key}.flac"],
    }
    assert json.loads(train_lines[3]) == {
        "messages": [
            {"role": "user", "content": "Convert the text to speech.\n" + text},
            {"role": "assistant", "content": "<|audio|>"},
        ],
        "audios": [f"audio/{key}.flac"],
    }
    assert "naïve café 你好" in train_lines[2]
    assert (
        train_lines[2]
        == '{"messages": [{"role": "user", "content": "Convert the speech to text.\\n<|audio|>"}, '
        '{"role": "assistant", "content": "naïve café 你好 \\"quoted\\"\\nsecond line"}], '
        f'"audios": ["audio/{key}.flac"]}}'
    )

    assert stats.n_utterances == 7
    assert stats.n_duplicates_skipped == 1
    assert stats.n_without_text == 2  # null text and blank text
    assert stats.n_special_token_text == 1
    assert stats.n_exported == 4
    assert stats.examples_per_split == {"train": 4, "dev": 2, "test": 2}
    assert stats.utterances_per_split == {"train": 4, "dev": 2, "test": 1}


def test_vita_audio_and_code_caches_match_the_shards(tiny: TinyLake, tmp_path: Path) -> None:
    out = tmp_path / "vita"
    stats = export_vita_jsonl(tiny.project, RELEASE, out)
    durations = []
    for utterance_id in sorted(WITH_TEXT):
        key = _key(utterance_id)
        sample, row = tiny.samples[key], tiny.rows[key]
        audio_path = out / "audio" / f"{key}.flac"
        # the shard's FLAC bytes, unchanged
        assert audio_path.read_bytes() == sample.flac
        samples, rate = sf.read(audio_path, dtype="int16")
        assert rate == RATE_HZ and samples.ndim == 1
        assert len(samples) / rate == pytest.approx(row.duration_s, abs=0.5 / RATE_HZ)
        durations.append(row.duration_s)
        cache = code_cache_path(audio_path)
        assert cache.name == f"{key}_glm4voice.json"
        assert json.loads(cache.read_bytes()) == sample.codes.tolist()
        # exactly what upstream's json.dump(list_of_ints, f) writes
        assert cache.read_bytes() == json.dumps(sample.codes.tolist()).encode()
    assert stats.duration_s == pytest.approx(sum(durations))


def test_vita_export_skips_duplicates_and_textless(tiny: TinyLake, tmp_path: Path) -> None:
    out = tmp_path / "vita"
    export_vita_jsonl(tiny.project, RELEASE, out)
    everything = "".join(p.read_text("utf-8") for p in sorted(out.glob("*.jsonl")))
    for skipped in ("spk2/utt-0005", "spk1/utt-0002", "spk3/utt-0006", "spk3/utt-0007"):
        key = _key(skipped)
        assert key not in everything
        assert not (out / "audio" / f"{key}.flac").exists()
    assert "<|im_end|>" not in everything


def test_export_json_records_the_lineage(tiny: TinyLake, tmp_path: Path) -> None:
    out = tmp_path / "vita"
    stats = export_vita_jsonl(tiny.project, RELEASE, out)
    record = json.loads((out / "export.json").read_text("utf-8"))
    release = tiny.release
    assert record["format"] == "vita-jsonl"
    assert record["release"] == RELEASE
    assert record["policy_versions"] == [POLICY_VERSION]
    assert record["tokenizer_sha256"] == [TOKENIZER_SHA256]
    assert record["tokenizer_is_demo"] is True
    assert record["code_version"] == "0.1.0+gtest"
    assert record["export_code_version"]
    assert record["shards"] == [{"shard": s.shard, "sha256": s.sha256} for s in release.shards]
    assert len(record["shards"]) == len({r.shard for r in tiny.rows.values()}) >= 4
    assert record["counts"] == stats.counts()
    assert record["tasks"] == ["asr", "tts"]
    assert record["code_cache"]["path"] == "<audio path without extension>_glm4voice.json"


def test_vita_export_is_byte_identical_when_repeated(tiny: TinyLake, tmp_path: Path) -> None:
    first = _tree(export_vita_jsonl(tiny.project, RELEASE, tmp_path / "a").out_dir)
    second = _tree(export_vita_jsonl(tiny.project, RELEASE, tmp_path / "b").out_dir)
    assert first == second
    assert len(first) == 3 + 1 + 2 * len(WITH_TEXT)


def test_vita_tasks_and_absolute_paths(tiny: TinyLake, tmp_path: Path) -> None:
    out = tmp_path / "asr-only"
    stats = export_vita_jsonl(tiny.project, RELEASE, out, tasks=("asr",), absolute_paths=True)
    lines = _read_jsonl(out / "train.jsonl")
    assert len(lines) == stats.examples_per_split["train"] == 2
    for example in lines:
        assert example["messages"][0]["content"] == "Convert the speech to text.\n<|audio|>"
        path = Path(example["audios"][0])
        assert path.is_absolute() and path.parent == out.resolve() / "audio" and path.is_file()
    with pytest.raises(ExportError, match="tasks"):
        export_vita_jsonl(tiny.project, RELEASE, tmp_path / "bad", tasks=("qa",))
    with pytest.raises(ExportError, match="tasks"):
        export_vita_jsonl(tiny.project, RELEASE, tmp_path / "none", tasks=())
    assert not (tmp_path / "bad").exists() and not (tmp_path / "none").exists()


def test_out_dir_rules(tiny: TinyLake, tmp_path: Path) -> None:
    # an existing empty folder is fine
    empty = tmp_path / "empty"
    empty.mkdir()
    export_vita_jsonl(tiny.project, RELEASE, empty)
    assert (empty / "export.json").is_file()

    # a non-empty folder is refused and left as it was
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty"):
        export_vita_jsonl(tiny.project, RELEASE, busy)
    # overwrite never replaces a folder that is not an export
    with pytest.raises(ExportError, match="not an export"):
        export_vita_jsonl(tiny.project, RELEASE, busy, overwrite=True)
    assert _tree(busy) == {"notes.txt": b"mine"}

    # overwrite replaces an earlier export entirely
    (empty / "stray.txt").write_text("old")
    with pytest.raises(ExportError, match="not empty"):
        export_hf(tiny.project, RELEASE, empty)
    export_vita_jsonl(tiny.project, RELEASE, empty, tasks=("tts",), overwrite=True)
    assert not (empty / "stray.txt").exists()
    assert json.loads((empty / "export.json").read_text())["tasks"] == ["tts"]

    # the project and its lake are never a destination
    with pytest.raises(ExportError, match="project"):
        export_vita_jsonl(tiny.project, RELEASE, tiny.project.directory, overwrite=True)

    # no staging folders are left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "empty"]


def test_unknown_release_and_rewritten_shard(tmp_path: Path) -> None:
    lake = build_tiny_lake(tmp_path / "project")
    with pytest.raises(ReleaseError, match="no release 'nope'"):
        export_vita_jsonl(lake.project, "nope", tmp_path / "out")

    # unit u1 is re-sharded after the release (one sample less): its shard sha256 changes
    u1 = [s for s in lake.samples.values() if lake.rows[s.key].unit == "u1"]
    write_shards(
        u1[1:],
        lake.project.lake.shards_dir(SOURCE, "u1"),
        LIMITS,
        source=SOURCE,
        unit="u1",
        lake_root=lake.project.lake.root,
    )
    with pytest.raises(ExportError, match=r"rewritten|no shard index"):
        export_vita_jsonl(lake.project, RELEASE, tmp_path / "out")
    with pytest.raises(ExportError, match=r"rewritten|no shard index"):
        export_hf(lake.project, RELEASE, tmp_path / "out-hf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project"]


# ---------------------------------------------------------------------------
# Hugging Face


def test_hf_export_loads_back(tiny: TinyLake, tmp_path: Path) -> None:
    out = tmp_path / "hf"
    stats = export_hf(tiny.project, RELEASE, out)
    loaded = datasets.load_from_disk(str(out))
    assert isinstance(loaded, datasets.DatasetDict)
    kept = [p for p in PLAN if p.split is not None]
    expected = {
        split: sorted(_key(p.utterance_id) for p in kept if p.split == split)
        for split in ("train", "dev", "test")
    }
    assert sorted(loaded) == ["dev", "test", "train"]
    assert {split: loaded[split]["key"] for split in loaded} == expected
    assert stats.examples_per_split == {s: len(k) for s, k in expected.items()}
    assert stats.n_exported == stats.n_utterances == 7
    assert stats.n_duplicates_skipped == 1 and stats.n_without_text == 2

    features = loaded["train"].features
    assert features["codes"] == datasets.List(datasets.Value("uint16"))
    assert features["audio"].sampling_rate == RATE_HZ
    assert list(features) == [
        "key",
        "utterance_id",
        "audio",
        "codes",
        "text",
        "speaker",
        "language",
        "duration_s",
        "source",
    ]

    plan = {p.utterance_id: p for p in PLAN}
    for split in loaded:
        for row in loaded[split]:
            sample = tiny.samples[row["key"]]
            assert row["utterance_id"] == sample.utterance_id
            assert row["codes"] == sample.codes.tolist()
            assert row["text"] == plan[sample.utterance_id].text
            assert row["speaker"] == plan[sample.utterance_id].speaker
            assert row["language"] == "en" and row["source"] == SOURCE
            assert row["duration_s"] == tiny.rows[row["key"]].duration_s
            decoded = row["audio"].get_all_samples()
            assert decoded.sample_rate == RATE_HZ
            reference, _ = sf.read(io.BytesIO(sample.flac), dtype="float32")
            np.testing.assert_array_equal(decoded.data.numpy()[0], reference)

    # stored as the shard's FLAC bytes, not re-encoded
    raw = loaded["dev"].cast_column("audio", datasets.Audio(decode=False))
    for row in raw:
        assert row["audio"]["bytes"] == tiny.samples[row["key"]].flac
        assert row["audio"]["path"] == f"{row['key']}.flac"

    record = json.loads((out / "export.json").read_text("utf-8"))
    assert record["format"] == "hf" and record["release"] == RELEASE
    assert record["counts"] == stats.counts()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]  # no cache or staging left
