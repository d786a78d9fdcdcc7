"""A tiny real lake and release for training tests (built once per session: ~0.5 s).

`build_tiny_release(folder)` writes, under ``folder/lake``, the two WebDataset fields of
the shard contract with the real shard writer (`pipelines.shards.writer.write_shards`)
for two sources, one unit each: ``tiny_en`` (English transcripts) and ``tiny_zh``
(Mandarin transcripts). The audio shards (``shards/<source>/<unit>/audio-NNNNNN.tar``:
``<key>.flac`` + ``<key>.json``) hold at most `SAMPLES_PER_SHARD` samples each (so a
few shards per unit); the code shards (``codes/<tokenizer>/<source>/<unit>/codes-NNNNNN.tar``:
``<key>.codes.npy`` + ``<key>.json``) keep their boundaries, as the tokens step writes
them. Then the release ``releases/<name>/`` (``release.json`` with ``shards`` and
``code_shards``, ``utterances.parquet`` with ``shard`` and ``codes_shard``) by hand with
the release contract, as `tests/pipelines/releases/test_export.py` does.

What the release holds (default 24 utterances; even i English, odd i Mandarin):
utterance i goes to ``dev`` when i % 12 is 4 or 5, ``test`` when it is 10 or 11, else
``train`` (16 train, 4 dev, 3 test); utterance 2 (train, English) has no transcript;
the last utterance repeats utterance 0's audio and codes and is dropped as its
duplicate (split None). Codes are random uint16 in [0, 16384) at 12.5 per second
of 0.4–1.6 s synthetic audio. Everything is seeded: the same call gives the same bytes.

Use `TinyRelease.expected_keys(split)` for the keys a training reader should yield (the
split's keys with a transcript), `TinyRelease.by_key` for what each sample holds, and
`TinyRelease.audio_shards()` / `code_shards()` for the shard files of each field.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipelines.audio.pcm import encode_flac16, pcm_sha256
from pipelines.lake.atomic import write_bytes_atomic, write_parquet_atomic
from pipelines.lake.paths import Lake
from pipelines.shards.writer import (
    PlacedSample,
    ShardField,
    ShardSample,
    audio_index_row,
    code_index_row,
    encode_meta,
    write_shards,
)
from schemas.release import RELEASE_UTTERANCE_ARROW_SCHEMA, Release, ReleaseShard
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
CODES_PER_S = 12.5
SAMPLES_PER_SHARD = 3
TOKENIZER_SHA256 = "ab" * 32
POLICY_VERSION = "policy-tiny"
SOURCES = {"tiny_en": ("u0", "en"), "tiny_zh": ("u1", "zh")}  # source: (unit, language)
NO_TEXT_INDEX = 2
AUDIO_FIELD = ShardField(prefix=AUDIO_SHARD_PREFIX, members=AUDIO_MEMBERS)
CODE_FIELD = ShardField(prefix=CODE_SHARD_PREFIX, members=CODE_MEMBERS)

ENGLISH = (
    "the quick brown fox jumps over the lazy dog",
    "speech data needs careful curation",
    "she sells sea shells by the sea shore",
    "a journey of a thousand miles begins with one step",
    "good morning, how are you today?",
    "the weather is lovely this afternoon",
)
MANDARIN = (
    "今天天气很好",
    "我们一起学习语音识别",
    "他正在读一本有趣的书",
    "请把窗户打开一点",
    "这个城市的夜景非常漂亮",
    "明天早上八点开会",
)


@dataclasses.dataclass(frozen=True)
class TinyUtterance:
    """One utterance of the tiny lake, as written."""

    utterance_id: str
    key: str
    source: str
    unit: str
    language: str
    speaker: str
    split: str | None  # None: dropped as a duplicate
    text: str | None
    codes: np.ndarray  # uint16
    duplicate_of: str | None = None


@dataclasses.dataclass(frozen=True)
class TinyRelease:
    """The tiny lake's root, the release's name and description, and its utterances."""

    lake_root: Path
    name: str
    release: Release
    utterances: tuple[TinyUtterance, ...]

    @property
    def by_key(self) -> dict[str, TinyUtterance]:
        """Utterances by shard key."""
        return {u.key: u for u in self.utterances}

    def audio_shards(self) -> list[Path]:
        """The release's audio shard files (absolute), sorted."""
        return sorted(self.lake_root / s.shard for s in self.release.shards)

    def code_shards(self) -> list[Path]:
        """The release's code shard files (absolute), sorted."""
        return sorted(self.lake_root / s.shard for s in self.release.code_shards)

    def keys(self, split: str) -> set[str]:
        """Keys of the split's utterances (with or without transcript)."""
        return {u.key for u in self.utterances if u.split == split}

    def expected_keys(self, split: str, source: str | None = None) -> set[str]:
        """Keys a training reader yields: the split's utterances with a transcript."""
        return {
            u.key
            for u in self.utterances
            if u.split == split and u.text and (source is None or u.source == source)
        }


def _split_of(index: int) -> str:
    return {4: "dev", 5: "dev", 10: "test", 11: "test"}.get(index % 12, "train")


def _audio(index: int, rng: np.random.Generator) -> np.ndarray:
    frames = int(RATE_HZ * rng.uniform(0.4, 1.6))
    t = np.arange(frames) / RATE_HZ
    tone = 0.3 * np.sin(2 * np.pi * (180 + 25 * index) * t)
    return (tone + 0.02 * rng.standard_normal(frames)).astype(np.float32)


def _plan(n_utterances: int, rng: np.random.Generator) -> list[tuple[TinyUtterance, np.ndarray]]:
    """Utterances and their audio; the last one duplicates utterance 0."""
    planned: list[tuple[TinyUtterance, np.ndarray]] = []
    for index in range(n_utterances - 1):
        source = "tiny_en" if index % 2 == 0 else "tiny_zh"
        unit, language = SOURCES[source]
        texts = ENGLISH if language == "en" else MANDARIN
        speaker = f"spk{index // 2 % 4}"
        utterance_id = f"{source}/{speaker}/utt-{index:04d}"
        audio = _audio(index, rng)
        n_codes = max(1, round(len(audio) / RATE_HZ * CODES_PER_S))
        codes = rng.integers(0, 16384, n_codes).astype(np.uint16)
        text = None if index == NO_TEXT_INDEX else texts[index // 2 % len(texts)]
        utterance = TinyUtterance(
            utterance_id,
            shard_key(utterance_id),
            source,
            unit,
            language,
            speaker,
            _split_of(index),
            text,
            codes,
        )
        planned.append((utterance, audio))
    first, first_audio = planned[0]
    duplicate_id = f"{first.source}/spk9/utt-dup-{n_utterances - 1:04d}"
    duplicate = dataclasses.replace(
        first,
        utterance_id=duplicate_id,
        key=shard_key(duplicate_id),
        speaker="spk9",
        split=None,
        duplicate_of=first.utterance_id,
    )
    planned.append((duplicate, first_audio))  # the same PCM: a true duplicate
    return planned


def _audio_sample(utterance: TinyUtterance, audio: np.ndarray) -> ShardSample:
    meta = AudioSampleMeta(
        utterance_id=utterance.utterance_id,
        source=utterance.source,
        text=utterance.text,
        speaker=utterance.speaker,
        language=utterance.language,
        split=utterance.split,
        duration_s=len(audio) / RATE_HZ,
        snr_db=30.0,
        stnr_snr_db=None,
        clipping_ratio=0.0,
        silence_ratio=0.1,
        rms_dbfs=-20.0,
        bandwidth_hz=7900.0,
        chars_per_s=None,
        pcm_sha256=pcm_sha256(audio),
    )
    return ShardSample(
        utterance.key, utterance.utterance_id, (encode_flac16(audio), encode_meta(meta))
    )


def _code_sample(utterance: TinyUtterance, audio: np.ndarray) -> ShardSample:
    meta = CodeSampleMeta(
        utterance_id=utterance.utterance_id,
        source=utterance.source,
        text=utterance.text,
        speaker=utterance.speaker,
        language=utterance.language,
        split=utterance.split,
        duration_s=len(audio) / RATE_HZ,
        n_codes=len(utterance.codes),
        pcm_sha256=pcm_sha256(audio),
        tokenizer_sha256=TOKENIZER_SHA256,
        tokenizer_is_demo=True,
    )
    return ShardSample(
        utterance.key, utterance.utterance_id, (encode_codes(utterance.codes), encode_meta(meta))
    )


def _write_unit(
    lake: Lake, source: str, unit: str, planned: list[tuple[TinyUtterance, np.ndarray]]
) -> list[tuple[ShardIndexRow, CodeIndexRow]]:
    """One unit's audio shards and aligned code shards, with their indexes; the rows by key."""
    durations = {u.key: len(audio) / RATE_HZ for u, audio in planned}
    hashes = {u.key: pcm_sha256(audio) for u, audio in planned}
    by_key = {u.key: u for u, _ in planned}

    def audio_row(placed: PlacedSample) -> ShardIndexRow:
        key = placed.sample.key
        return audio_index_row(placed, source, unit, durations[key], hashes[key])

    audio_placed = write_shards(
        [_audio_sample(u, audio) for u, audio in planned],
        lake.shards_dir(source, unit),
        AUDIO_FIELD,
        lake_root=lake.root,
        index_row=audio_row,
        index_schema=SHARD_INDEX_ARROW_SCHEMA,
        limits=ShardLimits(max_bytes=10_000_000, max_samples=SAMPLES_PER_SHARD),
    )
    audio_rows = {p.sample.key: audio_row(p) for p in audio_placed}
    # The code shards keep the audio shards' boundaries: code shard N holds audio shard
    # N's keys, in the same order (the writer sorts both fields by key).
    shards_in_order = [p.shard for p in audio_placed]  # key order, so grouped by shard
    sizes = [shards_in_order.count(shard) for shard in dict.fromkeys(shards_in_order)]

    def code_row(placed: PlacedSample) -> CodeIndexRow:
        key = placed.sample.key
        return code_index_row(
            placed,
            source,
            unit,
            duration_s=durations[key],
            n_codes=len(by_key[key].codes),
            audio_shard=audio_rows[key].shard,
            tokenizer_sha256=TOKENIZER_SHA256,
            tokenizer_is_demo=True,
        )

    code_placed = write_shards(
        [_code_sample(u, audio) for u, audio in planned],
        lake.codes_dir(TOKENIZER_SHA256, source, unit),
        CODE_FIELD,
        lake_root=lake.root,
        index_row=code_row,
        index_schema=CODE_INDEX_ARROW_SCHEMA,
        sizes=sizes,
    )
    return [(audio_rows[p.sample.key], code_row(p)) for p in code_placed]


def _release_shard(row: ShardIndexRow | CodeIndexRow) -> ReleaseShard:
    return ReleaseShard(
        shard=row.shard,
        sha256=row.shard_sha256,
        bytes=row.shard_bytes,
        source=row.source,
        unit=row.unit,
    )


def build_tiny_release(
    folder: Path, *, n_utterances: int = 24, name: str = "tiny-v1", seed: int = 7
) -> TinyRelease:
    """Write a tiny lake under ``folder/lake`` and its release `name`; see the module doc.

    `n_utterances` (at least 13) counts the dropped duplicate too.
    """
    if n_utterances < 13:
        raise ValueError("the tiny release needs at least 13 utterances to fill every split")
    lake = Lake(folder / "lake")
    rng = np.random.default_rng(seed)
    planned = _plan(n_utterances, rng)
    rows: list[tuple[ShardIndexRow, CodeIndexRow]] = []
    for source, (unit, _) in SOURCES.items():
        rows += _write_unit(lake, source, unit, [p for p in planned if p[0].source == source])
    by_key = {u.key: u for u, _ in planned}
    utterances = sorted(
        (
            {
                "utterance_id": audio.utterance_id,
                "key": audio.key,
                "shard": audio.shard,
                "codes_shard": codes.shard,
                "source": audio.source,
                "language": by_key[audio.key].language,
                "speaker": by_key[audio.key].speaker,
                "duration_s": audio.duration_s,
                "split": by_key[audio.key].split,
                "duplicate_of": by_key[audio.key].duplicate_of,
            }
            for audio, codes in rows
        ),
        key=lambda u: u["utterance_id"],
    )
    audio_shards = {audio.shard: _release_shard(audio) for audio, _ in rows}
    code_shards = {codes.shard: _release_shard(codes) for _, codes in rows}
    kept = [u for u in utterances if u["split"] is not None]
    release = Release(
        name=name,
        created_at=dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC),
        where="TRUE",
        split_by="utterance",
        dev_fraction=0.125,
        test_fraction=0.125,
        dedup=True,
        n_utterances=len(kept),
        duration_s=round(sum(u["duration_s"] for u in kept), 3),
        n_duplicates_dropped=len(utterances) - len(kept),
        policy_versions=[POLICY_VERSION],
        tokenizer_sha256=[TOKENIZER_SHA256],
        tokenizer_is_demo=True,
        code_version="0.1.0+gtest",
        shards=sorted(audio_shards.values(), key=lambda s: s.shard),
        code_shards=sorted(code_shards.values(), key=lambda s: s.shard),
    )
    folder_out = lake.release_dir(name)
    write_parquet_atomic(
        folder_out / "utterances.parquet",
        pa.Table.from_pylist(utterances, schema=RELEASE_UTTERANCE_ARROW_SCHEMA),
    )
    write_bytes_atomic(folder_out / "release.json", release.model_dump_json(indent=1).encode())
    return TinyRelease(lake.root, name, release, tuple(u for u, _ in planned))
