"""Tests of the release exports over a tiny real lake: synthetic audio shards and aligned code
shards written by the shard writer (two units, several shards each) and a release written by
hand with the release contract, holding a dropped duplicate, an utterance without text and
one whose text holds a chat special token.

Checked: the VITA-Audio JSONL (templates, one `audios` entry per `<|audio|>`, splits, order,
UTF-8), the audio files (the audio shard's FLAC bytes, the release's duration) and their
`_glm4voice.json` code caches (upstream's name and format, the code shard's codes, joined by
key), export.json lineage, byte-identical re-exports, the out-folder rules, a shard of either
field rewritten after the release, codes made from other audio; the Hugging Face DatasetDict
read back with `load_from_disk` (rows, codes, decoded audio); and the codes-only Hugging Face
export, which reads the code shards only (it works with every audio shard deleted).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import doctest
import io
import json
import shutil
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf

import pipelines.releases.export.vita_jsonl as vita_export
from pipelines.audio.pcm import encode_flac16, pcm_sha256
from pipelines.lake.atomic import write_bytes_atomic, write_parquet_atomic
from pipelines.project import Project
from pipelines.releases.create import ReleaseError
from pipelines.releases.export.hf import export_hf
from pipelines.releases.export.staging import ExportError
from pipelines.releases.export.vita_jsonl import code_cache_path, export_vita_jsonl
from pipelines.shards.writer import (
    PlacedSample,
    ShardField,
    ShardSample,
    audio_index_row,
    code_index_row,
    encode_meta,
    write_shards,
)
from schemas import ProjectConfig
from schemas.release import (
    RELEASE_FILE,
    RELEASE_UTTERANCE_ARROW_SCHEMA,
    UTTERANCES_FILE,
    Release,
    ReleaseShard,
)
from schemas.shards import (
    AUDIO_MEMBERS,
    AUDIO_SHARD_PREFIX,
    CODE_INDEX_ARROW_SCHEMA,
    CODE_MEMBERS,
    CODE_SHARD_PREFIX,
    SHARD_INDEX_ARROW_SCHEMA,
    AudioSampleMeta,
    CodeIndexRow,
    CodeSampleMeta,
    ShardIndexRow,
    ShardLimits,
    encode_codes,
    shard_key,
)

RATE_HZ = 16000
SOURCE = "synthetic"
RELEASE = "tiny-v1"
TOKENIZER_SHA256 = "cd" * 32
POLICY_VERSION = "policy-2025-01"
LIMITS = ShardLimits(max_bytes=1_000_000, max_samples=2)
AUDIO_FIELD = ShardField(prefix=AUDIO_SHARD_PREFIX, members=AUDIO_MEMBERS)
CODE_FIELD = ShardField(prefix=CODE_SHARD_PREFIX, members=CODE_MEMBERS)


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
class Utterance:
    """One utterance as written: its FLAC (audio shard) and codes (code shard)."""

    planned: Planned
    key: str
    flac: bytes
    codes: np.ndarray
    duration_s: float
    pcm_sha256: str


@dataclasses.dataclass(frozen=True)
class TinyLake:
    """The project, the utterances as written, and both fields' index rows by key."""

    project: Project
    utterances: dict[str, Utterance]  # by key
    rows: dict[str, ShardIndexRow]  # audio index rows by key
    code_rows: dict[str, CodeIndexRow]  # by key
    release: Release


def _audio(index: int, rng: np.random.Generator) -> np.ndarray:
    frames = int(RATE_HZ * rng.uniform(0.4, 1.6))
    t = np.arange(frames) / RATE_HZ
    tone = 0.3 * np.sin(2 * np.pi * (180 + 50 * index) * t)
    return (tone + 0.03 * rng.standard_normal(frames)).astype(np.float32)


def _audio_sample(u: Utterance) -> ShardSample:
    meta = AudioSampleMeta(
        utterance_id=u.planned.utterance_id,
        source=SOURCE,
        text=u.planned.text,
        speaker=u.planned.speaker,
        language="en",
        split=u.planned.split,
        duration_s=u.duration_s,
        snr_db=25.0,
        stnr_snr_db=None,
        clipping_ratio=0.0,
        silence_ratio=0.1,
        rms_dbfs=-20.0,
        bandwidth_hz=7900.0,
        chars_per_s=None,
        pcm_sha256=u.pcm_sha256,
    )
    return ShardSample(u.key, u.planned.utterance_id, (u.flac, encode_meta(meta)))


def _code_sample(u: Utterance, pcm_sha256: str | None = None) -> ShardSample:
    meta = CodeSampleMeta(
        utterance_id=u.planned.utterance_id,
        source=SOURCE,
        text=u.planned.text,
        speaker=u.planned.speaker,
        language="en",
        split=u.planned.split,
        duration_s=u.duration_s,
        n_codes=len(u.codes),
        pcm_sha256=pcm_sha256 or u.pcm_sha256,
        tokenizer_sha256=TOKENIZER_SHA256,
        tokenizer_is_demo=True,
    )
    return ShardSample(u.key, u.planned.utterance_id, (encode_codes(u.codes), encode_meta(meta)))


def write_audio(project: Project, unit: str, utterances: list[Utterance]) -> list[ShardIndexRow]:
    """A unit's audio shards and index, as the quality step writes them."""
    by_key = {u.key: u for u in utterances}

    def row(placed: PlacedSample) -> ShardIndexRow:
        u = by_key[placed.sample.key]
        return audio_index_row(placed, SOURCE, unit, u.duration_s, u.pcm_sha256)

    placed = write_shards(
        [_audio_sample(u) for u in utterances],
        project.lake.shards_dir(SOURCE, unit),
        AUDIO_FIELD,
        lake_root=project.lake.root,
        index_row=row,
        index_schema=SHARD_INDEX_ARROW_SCHEMA,
        limits=LIMITS,
    )
    return [row(p) for p in placed]


def write_codes(
    project: Project,
    unit: str,
    utterances: list[Utterance],
    audio_rows: list[ShardIndexRow],
    pcm_sha256: dict[str, str] | None = None,
) -> list[CodeIndexRow]:
    """A unit's code shards and index aligned with `audio_rows`, as the tokens step writes
    them (`pcm_sha256` overrides the hash a sample's codes claim to come from)."""
    by_key = {u.key: u for u in utterances}
    audio_by_key = {r.key: r for r in audio_rows}
    order = [r.shard for r in audio_rows]
    sizes = [order.count(shard) for shard in dict.fromkeys(order)]

    def row(placed: PlacedSample) -> CodeIndexRow:
        u = by_key[placed.sample.key]
        return code_index_row(
            placed,
            SOURCE,
            unit,
            duration_s=u.duration_s,
            n_codes=len(u.codes),
            audio_shard=audio_by_key[u.key].shard,
            tokenizer_sha256=TOKENIZER_SHA256,
            tokenizer_is_demo=True,
        )

    overrides = pcm_sha256 or {}
    placed = write_shards(
        [_code_sample(u, overrides.get(u.key)) for u in utterances],
        project.lake.codes_dir(TOKENIZER_SHA256, SOURCE, unit),
        CODE_FIELD,
        lake_root=project.lake.root,
        index_row=row,
        index_schema=CODE_INDEX_ARROW_SCHEMA,
        sizes=sizes,
    )
    return [row(p) for p in placed]


def build_tiny_lake(folder: Path) -> TinyLake:
    """Audio and code shards for two units and the release `tiny-v1` over them."""
    project = Project(folder, ProjectConfig())
    rng = np.random.default_rng(7)
    audio_by_id: dict[str, np.ndarray] = {}
    by_unit: dict[str, list[Utterance]] = {}
    utterances: dict[str, Utterance] = {}
    for index, planned in enumerate(PLAN):
        if planned.duplicate_of:
            audio = audio_by_id[planned.duplicate_of]  # the same PCM: a true duplicate
        else:
            audio = _audio(index, rng)
        audio_by_id[planned.utterance_id] = audio
        codes = rng.integers(0, 16384, max(1, round(len(audio) / RATE_HZ * 12.5)))
        utterance = Utterance(
            planned,
            shard_key(planned.utterance_id),
            encode_flac16(audio),
            codes.astype(np.uint16),
            len(audio) / RATE_HZ,
            pcm_sha256(audio),
        )
        utterances[utterance.key] = utterance
        by_unit.setdefault(planned.unit, []).append(utterance)
    rows: dict[str, ShardIndexRow] = {}
    code_rows: dict[str, CodeIndexRow] = {}
    for unit, unit_utterances in by_unit.items():
        audio_rows = write_audio(project, unit, unit_utterances)
        rows.update((r.key, r) for r in audio_rows)
        code_rows.update(
            (r.key, r) for r in write_codes(project, unit, unit_utterances, audio_rows)
        )
    release = write_release(project, rows, code_rows)
    return TinyLake(project, utterances, rows, code_rows, release)


def _release_shard(row: ShardIndexRow | CodeIndexRow) -> ReleaseShard:
    return ReleaseShard(
        shard=row.shard,
        sha256=row.shard_sha256,
        bytes=row.shard_bytes,
        source=row.source,
        unit=row.unit,
    )


def write_release(
    project: Project, rows: dict[str, ShardIndexRow], code_rows: dict[str, CodeIndexRow]
) -> Release:
    """`releases/tiny-v1/` by hand: release.json and utterances.parquet."""
    plan = {p.utterance_id: p for p in PLAN}
    ordered = sorted(rows.values(), key=lambda r: r.utterance_id)
    utterances = [
        {
            "utterance_id": r.utterance_id,
            "key": r.key,
            "shard": r.shard,
            "codes_shard": code_rows[r.key].shard,
            "source": r.source,
            "language": "en",
            "speaker": plan[r.utterance_id].speaker,
            "duration_s": r.duration_s,
            "split": plan[r.utterance_id].split,
            "duplicate_of": plan[r.utterance_id].duplicate_of,
        }
        for r in ordered
    ]
    shards = {r.shard: _release_shard(r) for r in ordered}
    code_shards = {r.shard: _release_shard(r) for r in code_rows.values()}
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
        code_shards=sorted(code_shards.values(), key=lambda s: s.shard),
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
        sample, row = tiny.utterances[key], tiny.rows[key]
        audio_path = out / "audio" / f"{key}.flac"
        # the audio shard's FLAC bytes, unchanged
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
    assert record["code_shards"] == [
        {"shard": s.shard, "sha256": s.sha256} for s in release.code_shards
    ]
    assert len(record["code_shards"]) == len(record["shards"])
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


def test_unknown_release_and_rewritten_shards(tmp_path: Path) -> None:
    lake = build_tiny_lake(tmp_path / "project")
    with pytest.raises(ReleaseError, match="no release 'nope'"):
        export_vita_jsonl(lake.project, "nope", tmp_path / "out")

    # unit u1's code shards are rewritten after the release (codes of other audio): the
    # code shard sha256 changes, and the export refuses them
    u1 = [u for u in lake.utterances.values() if lake.rows[u.key].unit == "u1"]
    audio_rows = [r for r in lake.rows.values() if r.unit == "u1"]
    audio_rows.sort(key=lambda r: r.key)
    write_codes(lake.project, "u1", u1, audio_rows, {u1[0].key: "0" * 64})
    with pytest.raises(ExportError, match=r"code shard .* rewritten after the release"):
        export_vita_jsonl(lake.project, RELEASE, tmp_path / "out")
    with pytest.raises(ExportError, match=r"code shard .* rewritten after the release"):
        export_hf(lake.project, RELEASE, tmp_path / "out-hf", with_audio=False)

    # the code shards back as released; then unit u1 is re-sharded after the release (one
    # sample less): its audio shards change
    write_codes(lake.project, "u1", u1, audio_rows)
    write_audio(lake.project, "u1", u1[1:])
    with pytest.raises(ExportError, match=r"audio shard .* rewritten|no audio shard index"):
        export_hf(lake.project, RELEASE, tmp_path / "out-hf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project"]


def test_codes_of_other_audio_are_refused(tmp_path: Path) -> None:
    """A code shard the release recorded, but made from other audio than the audio shard
    holds (e.g. a release made by hand from a stale pair): the join refuses it."""
    lake = build_tiny_lake(tmp_path / "project")
    u0 = sorted(
        (u for u in lake.utterances.values() if lake.rows[u.key].unit == "u0"), key=lambda u: u.key
    )
    audio_rows = sorted((r for r in lake.rows.values() if r.unit == "u0"), key=lambda r: r.key)
    stale = next(u for u in u0 if u.planned.text == "a plain sentence")
    rows = write_codes(lake.project, "u0", u0, audio_rows, {stale.key: "0" * 64})
    code_rows = {**lake.code_rows, **{r.key: r for r in rows}}
    shutil.rmtree(lake.project.lake.release_dir(RELEASE))
    write_release(lake.project, lake.rows, code_rows)  # the release records the stale codes
    with pytest.raises(ExportError, match=rf"codes of {stale.key} were made from other audio"):
        export_vita_jsonl(lake.project, RELEASE, tmp_path / "out")
    # A codes-only export has no audio to compare with: it exports the codes as they are.
    export_hf(lake.project, RELEASE, tmp_path / "codes-only", with_audio=False)


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
            sample = tiny.utterances[row["key"]]
            assert row["utterance_id"] == sample.planned.utterance_id
            assert row["codes"] == sample.codes.tolist()
            assert row["text"] == plan[sample.planned.utterance_id].text
            assert row["speaker"] == plan[sample.planned.utterance_id].speaker
            assert row["language"] == "en" and row["source"] == SOURCE
            assert row["duration_s"] == tiny.rows[row["key"]].duration_s
            decoded = row["audio"].get_all_samples()
            assert decoded.sample_rate == RATE_HZ
            reference, _ = sf.read(io.BytesIO(sample.flac), dtype="float32")
            np.testing.assert_array_equal(decoded.data.numpy()[0], reference)

    # stored as the shard's FLAC bytes, not re-encoded
    raw = loaded["dev"].cast_column("audio", datasets.Audio(decode=False))
    for row in raw:
        assert row["audio"]["bytes"] == tiny.utterances[row["key"]].flac
        assert row["audio"]["path"] == f"{row['key']}.flac"

    record = json.loads((out / "export.json").read_text("utf-8"))
    assert record["format"] == "hf" and record["release"] == RELEASE
    assert record["counts"] == stats.counts()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]  # no cache or staging left


def test_hf_codes_only_export_reads_code_shards_only(tmp_path: Path) -> None:
    lake = build_tiny_lake(tmp_path / "project")
    with_audio = datasets.load_from_disk(
        str(export_hf(lake.project, RELEASE, tmp_path / "hf").out_dir)
    )
    audio_shards = sorted((lake.project.lake.root / s.shard) for s in lake.release.shards)
    shutil.rmtree(lake.project.lake.root / "shards")  # every audio shard and audio index
    assert not any(p.exists() for p in audio_shards)
    with pytest.raises(ExportError, match="no audio shard index"):
        export_hf(lake.project, RELEASE, tmp_path / "needs-audio")

    out = tmp_path / "codes-only"
    stats = export_hf(lake.project, RELEASE, out, with_audio=False)
    loaded = datasets.load_from_disk(str(out))
    assert "audio" not in loaded["train"].features
    for split in loaded:
        expected = with_audio[split].remove_columns("audio")
        assert loaded[split].features == expected.features
        assert loaded[split].to_list() == expected.to_list()
    record = json.loads((out / "export.json").read_text("utf-8"))
    assert record["with_audio"] is False and record["shards"] == []
    assert len(record["code_shards"]) == len(lake.release.code_shards)
    assert stats.n_exported == 7
