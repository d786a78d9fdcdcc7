"""Tests of the WebDataset shard writer and reader over the two fields of the shard contract:
audio shards (`<key>.flac`, `<key>.json`, bounded by `ShardLimits`) and code shards
(`<key>.codes.npy`, `<key>.json`, cut into the audio shards' sizes). Read-back by webdataset
and datasets, bounds, exact sizes, offsets, determinism, crash safety, unsafe members, and
the shard key."""

from __future__ import annotations

import dataclasses
import doctest
import hashlib
import io
import itertools
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

import schemas.shards as shard_contract
from pipelines.audio.pcm import encode_flac16, pcm16, pcm_sha256
from pipelines.shards.reader import (
    hf_features,
    iter_shard_samples,
    read_code_index,
    read_index,
    read_member,
    read_members,
)
from pipelines.shards.writer import (
    PlacedSample,
    ShardField,
    ShardSample,
    audio_index_row,
    code_index_row,
    encode_meta,
    write_shards,
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
    ShardFormatError,
    ShardIndexRow,
    ShardLimits,
    decode_codes,
    encode_codes,
    shard_key,
)

RATE_HZ = 16000
SOURCE = "synthetic"
UNIT = "unit-007"
TOKENIZER_SHA256 = "ab" * 32
REPO = Path(__file__).resolve().parents[3]
LONG_ID = "corpus/" + "very-long-speaker-name/" * 6 + "utt.0001"  # > 100 chars: PAX headers
AUDIO = ShardField(prefix=AUDIO_SHARD_PREFIX, members=AUDIO_MEMBERS)
CODES = ShardField(prefix=CODE_SHARD_PREFIX, members=CODE_MEMBERS)


@dataclasses.dataclass(frozen=True)
class Synthetic:
    """One utterance: its audio sample, its code sample, and what they were made from."""

    audio_sample: ShardSample
    code_sample: ShardSample
    audio: np.ndarray
    codes: np.ndarray
    audio_meta: AudioSampleMeta
    code_meta: CodeSampleMeta

    @property
    def key(self) -> str:
        return self.audio_sample.key

    @property
    def flac(self) -> bytes:
        return self.audio_sample.payloads[0]


def _audio_meta(utterance_id: str, audio: np.ndarray, index: int) -> AudioSampleMeta:
    return AudioSampleMeta(
        utterance_id=utterance_id,
        source=SOURCE,
        text="naïve café 你好" if index % 2 else "a plain sentence",
        speaker=None,
        language="en",
        split="train",
        duration_s=len(audio) / RATE_HZ,
        snr_db=20.0 + index,
        stnr_snr_db=None,
        clipping_ratio=0.0,
        silence_ratio=0.125,
        rms_dbfs=-23.5,
        bandwidth_hz=7800.0,
        chars_per_s=12.5,
        pcm_sha256=pcm_sha256(audio),
    )


def _code_meta(audio_meta: AudioSampleMeta, n_codes: int) -> CodeSampleMeta:
    return CodeSampleMeta(
        utterance_id=audio_meta.utterance_id,
        source=SOURCE,
        text=audio_meta.text,
        speaker=audio_meta.speaker,
        language=audio_meta.language,
        split=audio_meta.split,
        duration_s=audio_meta.duration_s,
        n_codes=n_codes,
        pcm_sha256=audio_meta.pcm_sha256,
        tokenizer_sha256=TOKENIZER_SHA256,
        tokenizer_is_demo=True,
    )


def make_samples(count: int, seed: int = 0) -> list[Synthetic]:
    """`count` utterances of 0.5-2.5 s: a tone plus noise, random uint16 codes (12.5 per s)."""
    rng = np.random.default_rng(seed)
    ids = [f"spk{i % 3}/chapter.{i // 3}/utt-{i:04d}" for i in range(count - 1)] + [LONG_ID]
    made = []
    for index, utterance_id in enumerate(ids):
        frames = int(RATE_HZ * rng.uniform(0.5, 2.5))
        t = np.arange(frames) / RATE_HZ
        audio = (
            0.3 * np.sin(2 * np.pi * (200 + 40 * index) * t) + 0.05 * rng.standard_normal(frames)
        ).astype(np.float32)
        codes = rng.integers(0, 16384, int(frames / RATE_HZ * 12.5), dtype=np.uint16)
        audio_meta = _audio_meta(utterance_id, audio, index)
        code_meta = _code_meta(audio_meta, len(codes))
        key = shard_key(utterance_id)
        made.append(
            Synthetic(
                ShardSample(key, utterance_id, (encode_flac16(audio), encode_meta(audio_meta))),
                ShardSample(key, utterance_id, (encode_codes(codes), encode_meta(code_meta))),
                audio,
                codes,
                audio_meta,
                code_meta,
            )
        )
    return made


@pytest.fixture(scope="module")
def synthetic() -> list[Synthetic]:
    return make_samples(14)


def audio_row(placed: PlacedSample) -> ShardIndexRow:
    """The audio index row of a placed sample (what the quality step writes)."""
    meta = AudioSampleMeta.model_validate_json(placed.sample.payloads[1])
    return audio_index_row(placed, SOURCE, UNIT, meta.duration_s, meta.pcm_sha256)


def _audio_dir(lake_root: Path) -> Path:
    return lake_root / "shards" / SOURCE / UNIT


def _codes_dir(lake_root: Path) -> Path:
    return lake_root / "codes" / TOKENIZER_SHA256[:16] / SOURCE / UNIT


def _write(
    samples: list[ShardSample], lake_root: Path, limits: ShardLimits
) -> tuple[Path, list[ShardIndexRow]]:
    """Audio shards under `limits`; their folder and index rows."""
    out_dir = _audio_dir(lake_root)
    write_shards(
        samples,
        out_dir,
        AUDIO,
        lake_root=lake_root,
        index_row=audio_row,
        index_schema=SHARD_INDEX_ARROW_SCHEMA,
        limits=limits,
    )
    return out_dir, read_index(out_dir)


def shard_sizes(rows: list[ShardIndexRow]) -> list[int]:
    """Samples per audio shard, in shard order (index rows are sorted by key)."""
    order = [row.shard for row in rows]
    return [order.count(shard) for shard in dict.fromkeys(order)]


def _write_codes(
    samples: list[ShardSample], lake_root: Path, audio_rows: list[ShardIndexRow]
) -> tuple[Path, list[CodeIndexRow]]:
    """Code shards cut into the audio shards' sizes; their folder and index rows."""
    audio_by_key = {row.key: row for row in audio_rows}

    def code_row(placed: PlacedSample) -> CodeIndexRow:
        meta = CodeSampleMeta.model_validate_json(placed.sample.payloads[1])
        return code_index_row(
            placed,
            SOURCE,
            UNIT,
            duration_s=meta.duration_s,
            n_codes=meta.n_codes,
            audio_shard=audio_by_key[placed.sample.key].shard,
            tokenizer_sha256=TOKENIZER_SHA256,
            tokenizer_is_demo=True,
        )

    out_dir = _codes_dir(lake_root)
    write_shards(
        samples,
        out_dir,
        CODES,
        lake_root=lake_root,
        index_row=code_row,
        index_schema=CODE_INDEX_ARROW_SCHEMA,
        sizes=shard_sizes(audio_rows),
    )
    return out_dir, read_code_index(out_dir)


def _write_both(
    synthetic: list[Synthetic], lake_root: Path, limits: ShardLimits
) -> tuple[Path, list[ShardIndexRow], Path, list[CodeIndexRow]]:
    audio_dir, audio_rows = _write([s.audio_sample for s in synthetic], lake_root, limits)
    codes_dir, code_rows = _write_codes([s.code_sample for s in synthetic], lake_root, audio_rows)
    return audio_dir, audio_rows, codes_dir, code_rows


def _shard_paths(out_dir: Path, prefix: str = AUDIO_SHARD_PREFIX) -> list[Path]:
    return sorted(out_dir.glob(f"{prefix}-*.tar"))


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


SMALL = ShardLimits(max_bytes=100_000, max_samples=4)


# --- shard_key ------------------------------------------------------------------------------


def test_docstring_examples_hold() -> None:
    result = doctest.testmod(shard_contract)
    assert result.attempted >= 3
    assert result.failed == 0


def test_shard_key_is_readable_when_the_id_allows() -> None:
    assert shard_key("1089/134686/1089-134686-0000") == "1089__134686__1089-134686-0000"
    assert shard_key("Y0000000000_--5llN02F84_S00000") == "Y0000000000_--5llN02F84_S00000"
    hashed = shard_key("spk1/utt.0001")
    sha = hashlib.sha1(b"spk1/utt.0001").hexdigest()[:8]
    assert hashed == f"spk1__utt_0001-{sha}"


def test_shard_key_is_unique_dotless_and_deterministic() -> None:
    ids = [
        "a/b",
        "a__b",
        "a_/b",
        "a/_b",
        "a___b",
        "x.y",
        "x_y",
        "x y",
        "x-y",
        "/abs/path",
        "__abs__path",
        "../up",
        "__/up",
        "中文/句子",
        "中文/句子2",
        "a.b.c",
        "a_b_c",
        "utt-deadbeef",
        "utt-deadbeef-" + hashlib.sha1(b"utt-deadbeef").hexdigest()[:8],
        "clip.flac",
        "clip_flac",
        "e\u0301",
        "é",
        LONG_ID,
    ]
    keys = [shard_key(utterance_id) for utterance_id in ids]
    assert len(set(keys)) == len(ids)
    for key in keys:
        assert re.fullmatch(r"[A-Za-z0-9_-]+", key), key
    assert keys == [shard_key(utterance_id) for utterance_id in ids]
    with pytest.raises(ValueError):
        shard_key("")


# --- read-back ------------------------------------------------------------------------------


def test_webdataset_reads_back_both_fields_aligned(tmp_path, synthetic) -> None:
    import webdataset as wds

    audio_dir, audio_rows, codes_dir, code_rows = _write_both(synthetic, tmp_path, SMALL)
    n_shards = len(_shard_paths(audio_dir))
    assert n_shards >= 3 and len(_shard_paths(codes_dir, CODE_SHARD_PREFIX)) == n_shards
    audio_urls = f"{audio_dir}/audio-{{000000..{n_shards - 1:06d}}}.tar"
    code_urls = f"{codes_dir}/codes-{{000000..{n_shards - 1:06d}}}.tar"
    audio_read = list(wds.WebDataset(audio_urls, shardshuffle=False))
    codes_read = list(wds.WebDataset(code_urls, shardshuffle=False))

    by_key = {s.key: s for s in synthetic}
    assert [r["__key__"] for r in audio_read] == sorted(by_key)
    assert [r["__key__"] for r in codes_read] == sorted(by_key)
    assert [r.key for r in audio_rows] == [r.key for r in code_rows] == sorted(by_key)
    for record in audio_read:
        expected = by_key[record["__key__"]]
        assert sorted(k for k in record if not k.startswith("__")) == ["flac", "json"]
        audio, rate_hz = sf.read(io.BytesIO(record["flac"]), dtype="int16")
        assert rate_hz == RATE_HZ
        np.testing.assert_array_equal(audio, pcm16(expected.audio))
        assert json.loads(record["json"]) == expected.audio_meta.model_dump(mode="json")
        assert AudioSampleMeta.model_validate_json(record["json"]) == expected.audio_meta
    for record in codes_read:
        expected = by_key[record["__key__"]]
        assert sorted(k for k in record if not k.startswith("__")) == ["codes.npy", "json"]
        codes = np.load(io.BytesIO(record["codes.npy"]), allow_pickle=False)
        assert codes.dtype == np.uint16
        np.testing.assert_array_equal(codes, expected.codes)
        assert CodeSampleMeta.model_validate_json(record["json"]) == expected.code_meta
    # Aligned: code shard N holds audio shard N's keys, in the same order.
    for audio_shard, code_shard in zip(
        _shard_paths(audio_dir), _shard_paths(codes_dir, CODE_SHARD_PREFIX), strict=True
    ):
        assert audio_shard.name.split("-")[1] == code_shard.name.split("-")[1]
        assert [k for k, _ in iter_shard_samples(audio_shard)] == [
            k for k, _ in iter_shard_samples(code_shard)
        ]
    assert {r.key: r.audio_shard for r in code_rows} == {r.key: r.shard for r in audio_rows}


def test_datasets_reads_back_both_fields(tmp_path, synthetic) -> None:
    import datasets

    audio_dir, _, codes_dir, _ = _write_both(synthetic, tmp_path / "lake", SMALL)
    audio = datasets.load_dataset(
        "webdataset",
        data_files=[str(p) for p in _shard_paths(audio_dir)],
        split="train",
        cache_dir=str(tmp_path / "hf-audio"),
        features=hf_features(),
    )
    codes = datasets.load_dataset(
        "webdataset",
        data_files=[str(p) for p in _shard_paths(codes_dir, CODE_SHARD_PREFIX)],
        split="train",
        cache_dir=str(tmp_path / "hf-codes"),
    )
    by_key = {s.key: s for s in synthetic}
    assert audio["__key__"] == codes["__key__"] == sorted(by_key)
    for record in audio:
        expected = by_key[record["__key__"]]
        assert record["json"] == expected.audio_meta.model_dump(mode="json")
        decoded = record["flac"].get_all_samples()
        assert decoded.sample_rate == RATE_HZ
        np.testing.assert_array_equal(pcm16(decoded.data[0].numpy()), pcm16(expected.audio))
    for record in codes:
        expected = by_key[record["__key__"]]
        np.testing.assert_array_equal(np.asarray(record["codes.npy"]), expected.codes)
        assert record["json"] == expected.code_meta.model_dump(mode="json")


def test_datasets_with_our_features_accepts_a_field_null_in_the_first_samples(tmp_path) -> None:
    """datasets infers types from 5 samples; `hf_features` keeps later non-null values loadable."""
    import datasets

    synthetic = sorted(make_samples(9, seed=3), key=lambda s: s.key)
    late = []
    for i, s in enumerate(synthetic):
        meta = s.audio_meta.model_copy(update={"speaker": f"spk-{i}" if i >= 6 else None})
        late.append(dataclasses.replace(s.audio_sample, payloads=(s.flac, encode_meta(meta))))
    out_dir, _ = _write(late, tmp_path / "lake", ShardLimits())
    loaded = datasets.load_dataset(
        "webdataset",
        data_files=[str(p) for p in _shard_paths(out_dir)],
        split="train",
        cache_dir=str(tmp_path / "hf"),
        features=hf_features(),
    )
    assert [record["json"]["speaker"] for record in loaded] == [None] * 6 + [
        "spk-6",
        "spk-7",
        "spk-8",
    ]
    assert loaded[8]["json"]["utterance_id"] == synthetic[8].audio_meta.utterance_id


def test_iter_shard_samples_matches_the_input(tmp_path, synthetic) -> None:
    audio_dir, _, codes_dir, _ = _write_both(synthetic, tmp_path, SMALL)
    by_key = {s.key: s for s in synthetic}
    read = [item for path in _shard_paths(audio_dir) for item in iter_shard_samples(path)]
    assert [key for key, _ in read] == sorted(by_key)
    for key, members in read:
        assert sorted(members) == ["flac", "json"]
        assert members["flac"] == by_key[key].flac
    codes_path = _shard_paths(codes_dir, CODE_SHARD_PREFIX)
    read = [item for path in codes_path for item in iter_shard_samples(path)]
    assert [key for key, _ in read] == sorted(by_key)
    for key, members in read:
        assert sorted(members) == ["codes.npy", "json"]
        np.testing.assert_array_equal(decode_codes(members["codes.npy"]), by_key[key].codes)


# --- layout, bounds, sizes, offsets ---------------------------------------------------------


def test_members_are_consecutive_with_fixed_metadata(tmp_path, synthetic) -> None:
    audio_dir, _, codes_dir, _ = _write_both(synthetic, tmp_path, SMALL)
    keys = sorted(s.key for s in synthetic)
    for paths, members in (
        (_shard_paths(audio_dir), AUDIO_MEMBERS),
        (_shard_paths(codes_dir, CODE_SHARD_PREFIX), CODE_MEMBERS),
    ):
        names = []
        for path in paths:
            with tarfile.open(path) as tar:
                for info in tar.getmembers():
                    names.append(info.name)
                    assert info.isreg()
                    assert (info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode) == (
                        0,
                        0,
                        0,
                        "",
                        "",
                        0o644,
                    )
        assert names == [f"{key}.{ext}" for key in keys for ext in members]
        assert any(len(name) > 100 for name in names)  # the long id went through a PAX header


def test_sample_bound_gives_known_shard_sizes(tmp_path, synthetic) -> None:
    out_dir, rows = _write(
        [s.audio_sample for s in synthetic], tmp_path, ShardLimits(max_bytes=1 << 30, max_samples=5)
    )
    counts = [sum(r.shard.endswith(p.name) for r in rows) for p in _shard_paths(out_dir)]
    assert counts == [5, 5, 4] == shard_sizes(rows)


def test_code_shards_take_the_sizes_given(tmp_path, synthetic) -> None:
    _, audio_rows, codes_dir, code_rows = _write_both(
        synthetic, tmp_path, ShardLimits(max_bytes=1 << 30, max_samples=5)
    )
    assert [p.name for p in _shard_paths(codes_dir, CODE_SHARD_PREFIX)] == [
        "codes-000000.tar",
        "codes-000001.tar",
        "codes-000002.tar",
    ]
    assert shard_sizes(code_rows) == shard_sizes(audio_rows) == [5, 5, 4]
    for audio, codes in zip(audio_rows, code_rows, strict=True):
        assert audio.key == codes.key and codes.audio_shard == audio.shard
        assert audio.shard.rsplit("-", 1)[1] == codes.shard.rsplit("-", 1)[1]
    samples = [s.code_sample for s in synthetic]
    for bad in ([5, 5], [5, 5, 5], [14, 0]):
        with pytest.raises(ShardFormatError, match="do not cover"):
            write_shards(
                samples,
                tmp_path / "bad",
                CODES,
                lake_root=tmp_path,
                index_row=audio_row,
                index_schema=CODE_INDEX_ARROW_SCHEMA,
                sizes=bad,
            )


def test_byte_bound_is_respected_and_shards_are_filled(tmp_path, synthetic) -> None:
    samples = [s.audio_sample for s in synthetic]
    limits = ShardLimits(max_bytes=120_000, max_samples=10_000)
    out_dir, rows = _write(samples, tmp_path, limits)
    paths = _shard_paths(out_dir)
    assert len(paths) >= 3
    per_shard = {p.name: [r for r in rows if r.shard.endswith(p.name)] for p in paths}
    for path in paths:
        size = path.stat().st_size
        assert size == per_shard[path.name][0].shard_bytes
        assert size <= limits.max_bytes or len(per_shard[path.name]) == 1
    # Greedy: a shard closes only when its next sample would not fit. Writing a shard's
    # samples plus the next shard's first sample alone must exceed the bound.
    for this, following in itertools.pairwise(paths):
        keys = {r.key for r in per_shard[this.name]} | {per_shard[following.name][0].key}
        trial_dir, _ = _write(
            [s for s in samples if s.key in keys],
            tmp_path / f"trial-{this.stem}",
            ShardLimits(max_bytes=1 << 30),
        )
        assert _shard_paths(trial_dir)[0].stat().st_size > limits.max_bytes


def test_a_sample_larger_than_the_byte_bound_gets_a_shard_alone(tmp_path, synthetic) -> None:
    samples = [s.audio_sample for s in synthetic]
    big_key = sorted(s.key for s in samples)[5]
    big = next(s for s in samples if s.key == big_key)
    huge = dataclasses.replace(big, payloads=(big.payloads[0] * 20, big.payloads[1]))
    samples = [huge if s.key == big_key else s for s in samples]  # ~0.5-1.5 MB: over the bound
    _, rows = _write(samples, tmp_path, ShardLimits(max_bytes=200_000, max_samples=100))
    big_row = next(r for r in rows if r.key == big_key)
    assert big_row.shard_bytes > 200_000
    assert [r.key for r in rows if r.shard == big_row.shard] == [big_key]
    assert all(r.shard_bytes <= 200_000 for r in rows if r.key != big_key)


def test_index_offsets_point_at_the_tar_member_data(tmp_path, synthetic) -> None:
    lake_root = tmp_path / "lake"
    audio_dir, audio_rows, codes_dir, code_rows = _write_both(synthetic, lake_root, SMALL)
    for folder, schema in (
        (audio_dir, SHARD_INDEX_ARROW_SCHEMA),
        (codes_dir, CODE_INDEX_ARROW_SCHEMA),
    ):
        table = pq.read_table(folder / "index.parquet")
        assert table.schema.equals(schema)
        assert table.column("key").to_pylist() == sorted(s.key for s in synthetic)
    checks = [
        (audio_rows, f"shards/{SOURCE}/{UNIT}/audio-", (("flac", "flac"), ("json", "json"))),
        (
            code_rows,
            f"codes/{TOKENIZER_SHA256[:16]}/{SOURCE}/{UNIT}/codes-",
            (("codes", "codes.npy"), ("json", "json")),
        ),
    ]
    for rows, prefix, members in checks:
        for row in rows:
            assert row.shard.startswith(prefix)
            shard_bytes = (lake_root / row.shard).read_bytes()
            assert row.shard_bytes == len(shard_bytes)
            assert row.shard_sha256 == hashlib.sha256(shard_bytes).hexdigest()
            with tarfile.open(lake_root / row.shard) as tar:
                for member, ext in members:
                    info = tar.getmember(f"{row.key}.{ext}")
                    assert (info.offset_data, info.size) == (
                        getattr(row, f"{member}_offset"),
                        getattr(row, f"{member}_size"),
                    )
                    assert read_member(lake_root, row, member) == tar.extractfile(info).read()
    by_key = {s.key: s for s in synthetic}
    row = next(r for r in code_rows if r.utterance_id == LONG_ID)
    codes = decode_codes(read_member(lake_root, row, "codes"))
    np.testing.assert_array_equal(codes, by_key[row.key].codes)
    assert (row.source, row.unit, row.n_codes) == (SOURCE, UNIT, len(codes))


def test_read_members_equals_read_member_row_by_row(tmp_path, synthetic) -> None:
    lake_root = tmp_path / "lake"
    _, audio_rows, _, code_rows = _write_both(synthetic, lake_root, SMALL)
    for rows, members in ((audio_rows, ("flac", "json")), (code_rows, ("codes", "json"))):
        for member in members:
            assert list(read_members(lake_root, rows, member)) == [
                read_member(lake_root, row, member) for row in rows
            ]
    shuffled = [audio_rows[i] for i in (5, 0, 9, 5, 13)]  # any order, shards revisited
    assert list(read_members(lake_root, shuffled, "json")) == [
        read_member(lake_root, row, "json") for row in shuffled
    ]
    with pytest.raises(ValueError, match="no member 'codes'"):
        read_member(lake_root, audio_rows[0], "codes")
    with pytest.raises(ValueError, match="no member 'flac'"):
        read_member(lake_root, code_rows[0], "flac")
    truncated = audio_rows[-1].model_copy(update={"json_offset": audio_rows[-1].shard_bytes - 10})
    with pytest.raises(ShardFormatError, match="needs"):
        read_member(lake_root, truncated, "json")


@pytest.mark.parametrize("n_codes", [0, 1, 125, 99_999])
def test_decode_codes_reads_what_encode_codes_writes(n_codes) -> None:
    codes = np.random.default_rng(n_codes).integers(0, 65536, n_codes, dtype=np.uint16)
    decoded = decode_codes(encode_codes(codes))
    assert decoded.dtype == np.uint16
    assert decoded.flags.writeable
    np.testing.assert_array_equal(decoded, codes)
    np.testing.assert_array_equal(decoded, np.load(io.BytesIO(encode_codes(codes))))


def test_decode_codes_falls_back_to_numpy_and_checks_the_type() -> None:
    def npy(array: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        return buffer.getvalue()

    big_endian = np.arange(300, dtype=">u2")
    np.testing.assert_array_equal(decode_codes(npy(big_endian)), np.arange(300))
    for wrong in (
        np.zeros((2, 3), dtype=np.uint16),
        np.zeros(4, dtype=np.int16),
        np.zeros(4, dtype=np.uint32),
    ):
        with pytest.raises(ShardFormatError):
            decode_codes(npy(wrong))
    truncated = encode_codes(np.arange(10, dtype=np.uint16))[:-2]
    with pytest.raises(ValueError):
        decode_codes(truncated)


# --- determinism, re-runs -------------------------------------------------------------------


def test_identical_inputs_give_identical_bytes(tmp_path, synthetic) -> None:
    shuffled = [synthetic[i] for i in np.random.default_rng(1).permutation(len(synthetic))]
    audio_a, rows_a, codes_a, code_rows_a = _write_both(synthetic, tmp_path / "a", SMALL)
    audio_b, rows_b, codes_b, code_rows_b = _write_both(shuffled, tmp_path / "b", SMALL)
    for folder_a, folder_b, prefix in (
        (audio_a, audio_b, AUDIO_SHARD_PREFIX),
        (codes_a, codes_b, CODE_SHARD_PREFIX),
    ):
        files_a, files_b = _files(folder_a), _files(folder_b)
        assert sorted(files_a) == sorted(
            ["index.parquet", *(f"{prefix}-{i:06d}.tar" for i in range(len(files_a) - 1))]
        )
        assert files_a == files_b
    assert rows_a == rows_b and code_rows_a == code_rows_b


def test_rerun_leaves_unchanged_shards_alone_and_removes_stale_ones(tmp_path, synthetic) -> None:
    samples = [s.audio_sample for s in synthetic]
    out_dir, _ = _write(samples, tmp_path, ShardLimits(max_samples=2))
    assert len(_shard_paths(out_dir)) == 7
    first = out_dir / "audio-000000.tar"
    mtime_ns = first.stat().st_mtime_ns
    time.sleep(0.01)
    _write(samples, tmp_path, ShardLimits(max_samples=2))
    assert first.stat().st_mtime_ns == mtime_ns

    _, rows = _write(samples[:5], tmp_path, ShardLimits(max_samples=2))
    assert [p.name for p in _shard_paths(out_dir)] == [f"audio-{i:06d}.tar" for i in range(3)]
    assert {r.shard.rsplit("/", 1)[1] for r in rows} == {p.name for p in _shard_paths(out_dir)}
    assert len(read_index(out_dir)) == 5


def test_empty_unit_writes_an_empty_index(tmp_path) -> None:
    out_dir, rows = _write([], tmp_path, SMALL)
    assert rows == []
    assert _shard_paths(out_dir) == []
    assert pq.read_table(out_dir / "index.parquet").num_rows == 0
    codes_dir, code_rows = _write_codes([], tmp_path, [])
    assert code_rows == [] and _shard_paths(codes_dir, CODE_SHARD_PREFIX) == []


# --- refusals -------------------------------------------------------------------------------


def test_bad_samples_are_refused(tmp_path, synthetic) -> None:
    good = synthetic[0].audio_sample
    bad = {
        "dotted key": dataclasses.replace(good, key="a.b"),
        "slashed key": dataclasses.replace(good, key="a/b"),
        "three payloads": dataclasses.replace(good, payloads=(*good.payloads, b"x")),
        "one payload": dataclasses.replace(good, payloads=good.payloads[:1]),
    }
    for name, sample in bad.items():
        with pytest.raises(ShardFormatError):
            _write([sample], tmp_path / name.replace(" ", "-"), SMALL)
    with pytest.raises(ShardFormatError, match="duplicate key"):
        _write([good, good], tmp_path / "dup", SMALL)
    common = {"index_row": audio_row, "index_schema": SHARD_INDEX_ARROW_SCHEMA}
    with pytest.raises(ValueError, match="outside the lake root"):
        write_shards(
            [good], tmp_path / "x", AUDIO, lake_root=tmp_path / "elsewhere", limits=SMALL, **common
        )
    with pytest.raises(ValueError, match="either limits or sizes"):
        write_shards([good], tmp_path / "x", AUDIO, lake_root=tmp_path, **common)
    with pytest.raises(ValueError, match="either limits or sizes"):
        write_shards(
            [good], tmp_path / "x", AUDIO, lake_root=tmp_path, limits=SMALL, sizes=[1], **common
        )
    assert not (tmp_path / "x").exists()  # refused before anything was written


@pytest.mark.parametrize("name", ["../evil.flac", "/abs/evil.flac", "a/../../evil.flac"])
def test_iter_shard_samples_refuses_unsafe_member_names(tmp_path, name) -> None:
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(ShardFormatError, match="unsafe"):
        list(iter_shard_samples(path))
    assert not (tmp_path.parent / "evil.flac").exists()


def test_iter_shard_samples_refuses_split_samples(tmp_path) -> None:
    path = tmp_path / "split.tar"
    with tarfile.open(path, "w") as tar:
        for name in ("a.flac", "b.flac", "a.json"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ShardFormatError, match="not consecutive"):
        list(iter_shard_samples(path))


# --- crash safety ---------------------------------------------------------------------------

_KILLED_WRITER = """
import pickle, sys, time
from pathlib import Path

import pipelines.shards.writer as shards
from schemas.shards import SHARD_INDEX_ARROW_SCHEMA, AudioSampleMeta, ShardIndexRow

job = pickle.loads(Path(sys.argv[1]).read_bytes())
marker = Path(sys.argv[2])
original_shard, original_write = shards._write_one_shard, shards._HashingWriter.write
current = None


def write_one_shard(path, shard):
    global current
    current = path.name
    return original_shard(path, shard)


def write_then_hang(self, data):
    # Once the hanging shard has bytes in its temporary file, announce it and block:
    # the parent kills us mid-shard.
    if current == job["hang_in"] and self.bytes_written > 0:
        marker.write_text(current)
        time.sleep(600)
    return original_write(self, data)


def index_row(placed):
    (flac_offset, flac_size), (json_offset, json_size) = placed.ranges
    meta = AudioSampleMeta.model_validate_json(placed.sample.payloads[1])
    return ShardIndexRow(
        key=placed.sample.key, utterance_id=placed.sample.utterance_id, source=job["source"],
        unit=job["unit"], shard=placed.shard, shard_sha256=placed.shard_sha256,
        shard_bytes=placed.shard_bytes, flac_offset=flac_offset, flac_size=flac_size,
        json_offset=json_offset, json_size=json_size, duration_s=meta.duration_s,
        pcm_sha256=meta.pcm_sha256,
    )


shards._write_one_shard = write_one_shard
shards._HashingWriter.write = write_then_hang
shards.write_shards(job["samples"], job["out_dir"], job["field"], lake_root=job["lake_root"],
                    index_row=index_row, index_schema=SHARD_INDEX_ARROW_SCHEMA,
                    limits=job["limits"])
"""


def _write_then_kill(tmp_path: Path, samples, lake_root: Path, limits, hang_in: str) -> None:
    """Run the writer in a subprocess and SIGKILL it while it writes shard `hang_in`."""
    job = tmp_path / "job.pickle"
    job.write_bytes(
        pickle.dumps(
            {
                "samples": samples,
                "out_dir": _audio_dir(lake_root),
                "field": AUDIO,
                "limits": limits,
                "source": SOURCE,
                "unit": UNIT,
                "lake_root": lake_root,
                "hang_in": hang_in,
            }
        )
    )
    script = tmp_path / "killed_writer.py"
    script.write_text(_KILLED_WRITER, encoding="utf-8")
    marker = tmp_path / "hanging"
    marker.unlink(missing_ok=True)
    process = subprocess.Popen([sys.executable, str(script), str(job), str(marker)], cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert process.poll() is None, f"writer exited early with {process.returncode}"
            assert time.monotonic() < deadline, "writer never reached the kill point"
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL


@pytest.mark.parametrize("earlier_run", [False, True], ids=["fresh", "over-an-earlier-run"])
def test_a_killed_writer_leaves_only_complete_shards_and_no_index(
    tmp_path, synthetic, earlier_run
) -> None:
    samples = [s.audio_sample for s in synthetic]
    limits = ShardLimits(max_bytes=1 << 30, max_samples=3)
    clean_dir, _ = _write(samples, tmp_path / "clean", limits)
    clean = _files(clean_dir)

    lake_root = tmp_path / "crash"
    out_dir = _audio_dir(lake_root)
    old: dict[str, bytes] = {}
    if earlier_run:  # a complete earlier run with other samples and more shards
        earlier = [s.audio_sample for s in make_samples(20, seed=9)]
        _write(earlier, lake_root, ShardLimits(max_samples=2))
        old = _files(out_dir)
        assert len(old) == 11

    _write_then_kill(tmp_path, samples, lake_root, limits, hang_in="audio-000002.tar")

    assert not (out_dir / "index.parquet").exists()
    visible = {p.name: p.read_bytes() for p in _shard_paths(out_dir)}
    assert visible["audio-000000.tar"] == clean["audio-000000.tar"]
    assert visible["audio-000001.tar"] == clean["audio-000001.tar"]
    for name, data in visible.items():  # every visible shard is complete: new or earlier
        assert data in (clean.get(name), old.get(name)), name
    if not earlier_run:
        assert sorted(visible) == ["audio-000000.tar", "audio-000001.tar"]
    leftovers = [p for p in out_dir.iterdir() if p.name.startswith(".")]
    assert [p.name.startswith(".audio-000002.tar.") for p in leftovers] == [True]

    _write(samples, lake_root, limits)
    assert _files(out_dir) == clean
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".")]
