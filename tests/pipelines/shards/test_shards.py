"""Tests of the WebDataset shard writer: read-back by webdataset and datasets, bounds, offsets,
determinism, crash safety, and the shard key."""

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
from pipelines.audio.pcm import encode_flac16, pcm16
from pipelines.shards.reader import (
    hf_features,
    iter_shard_samples,
    read_index,
    read_member,
    read_members,
)
from pipelines.shards.writer import ShardSample, write_shards
from schemas.shards import (
    SHARD_INDEX_ARROW_SCHEMA,
    ShardFormatError,
    ShardLimits,
    ShardSampleMeta,
    decode_codes,
    encode_codes,
    shard_key,
)

RATE_HZ = 16000
SOURCE = "synthetic"
UNIT = "unit-007"
REPO = Path(__file__).resolve().parents[3]
LONG_ID = "corpus/" + "very-long-speaker-name/" * 6 + "utt.0001"  # > 100 chars: PAX headers


@dataclasses.dataclass(frozen=True)
class Synthetic:
    """A shard sample and the float audio it was encoded from."""

    sample: ShardSample
    audio: np.ndarray


def _meta(utterance_id: str, duration_s: float, n_codes: int, index: int) -> ShardSampleMeta:
    return ShardSampleMeta(
        utterance_id=utterance_id,
        source=SOURCE,
        text="naïve café 你好" if index % 2 else "a plain sentence",
        speaker=None,
        language="en",
        split="train",
        duration_s=duration_s,
        snr_db=20.0 + index,
        stnr_snr_db=None,
        clipping_ratio=0.0,
        silence_ratio=0.125,
        rms_dbfs=-23.5,
        bandwidth_hz=7800.0,
        chars_per_s=12.5,
        n_codes=n_codes,
        pcm_sha256=hashlib.sha256(str(index).encode()).hexdigest(),
        tokenizer_sha256="ab" * 32,
        tokenizer_is_demo=True,
        policy_version="2024-01",
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
        meta = _meta(utterance_id, frames / RATE_HZ, len(codes), index)
        flac = encode_flac16(audio)
        sample = ShardSample(shard_key(utterance_id), utterance_id, flac, codes, meta)
        made.append(Synthetic(sample, audio))
    return made


@pytest.fixture(scope="module")
def synthetic() -> list[Synthetic]:
    return make_samples(14)


def _write(samples, lake_root: Path, limits: ShardLimits) -> tuple[Path, list]:
    out_dir = lake_root / "shards" / SOURCE / UNIT
    rows = write_shards(samples, out_dir, limits, source=SOURCE, unit=UNIT, lake_root=lake_root)
    return out_dir, rows


def _shard_paths(out_dir: Path) -> list[Path]:
    return sorted(out_dir.glob("shard-*.tar"))


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


def test_webdataset_reads_back_keys_audio_codes_and_json(tmp_path, synthetic) -> None:
    import webdataset as wds

    out_dir, rows = _write([s.sample for s in synthetic], tmp_path, SMALL)
    n_shards = len(_shard_paths(out_dir))
    assert n_shards >= 3
    urls = f"{out_dir}/shard-{{000000..{n_shards - 1:06d}}}.tar"
    read = list(wds.WebDataset(urls, shardshuffle=False))

    by_key = {s.sample.key: s for s in synthetic}
    assert [r["__key__"] for r in read] == sorted(by_key)
    assert [r.key for r in rows] == sorted(by_key)
    for record in read:
        expected = by_key[record["__key__"]]
        audio, rate_hz = sf.read(io.BytesIO(record["flac"]), dtype="int16")
        assert rate_hz == RATE_HZ
        np.testing.assert_array_equal(audio, pcm16(expected.audio))
        codes = np.load(io.BytesIO(record["codes.npy"]), allow_pickle=False)
        assert codes.dtype == np.uint16
        np.testing.assert_array_equal(codes, expected.sample.codes)
        assert json.loads(record["json"]) == expected.sample.meta.model_dump(mode="json")
        assert ShardSampleMeta.model_validate_json(record["json"]) == expected.sample.meta


def test_datasets_reads_back_keys_audio_codes_and_json(tmp_path, synthetic) -> None:
    import datasets

    out_dir, _ = _write([s.sample for s in synthetic], tmp_path / "lake", SMALL)
    data_files = [str(p) for p in _shard_paths(out_dir)]
    loaded = datasets.load_dataset(
        "webdataset", data_files=data_files, split="train", cache_dir=str(tmp_path / "hf")
    )
    by_key = {s.sample.key: s for s in synthetic}
    assert loaded["__key__"] == sorted(by_key)
    for record in loaded:
        expected = by_key[record["__key__"]]
        np.testing.assert_array_equal(np.asarray(record["codes.npy"]), expected.sample.codes)
        assert record["json"] == expected.sample.meta.model_dump(mode="json")
        decoded = record["flac"].get_all_samples()
        assert decoded.sample_rate == RATE_HZ
        np.testing.assert_array_equal(pcm16(decoded.data[0].numpy()), pcm16(expected.audio))


def test_datasets_with_our_features_accepts_a_field_null_in_the_first_samples(tmp_path) -> None:
    """datasets infers types from 5 samples; `hf_features` keeps later non-null values loadable."""
    import datasets

    synthetic = make_samples(9, seed=3)
    ordered = sorted((s.sample for s in synthetic), key=lambda s: s.key)
    late = [
        dataclasses.replace(s, meta=s.meta.model_copy(update={"speaker": f"spk-{i}"}))
        if i >= 6
        else s
        for i, s in enumerate(ordered)
    ]
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
    assert loaded[8]["codes.npy"] == late[8].codes.tolist()


def test_iter_shard_samples_matches_the_input(tmp_path, synthetic) -> None:
    out_dir, _ = _write([s.sample for s in synthetic], tmp_path, SMALL)
    read = [item for path in _shard_paths(out_dir) for item in iter_shard_samples(path)]
    by_key = {s.sample.key: s.sample for s in synthetic}
    assert [key for key, _ in read] == sorted(by_key)
    for key, members in read:
        assert sorted(members) == ["codes.npy", "flac", "json"]
        assert members["flac"] == by_key[key].flac


# --- layout, bounds, offsets ----------------------------------------------------------------


def test_members_are_consecutive_with_fixed_metadata(tmp_path, synthetic) -> None:
    out_dir, _ = _write([s.sample for s in synthetic], tmp_path, SMALL)
    names = []
    for path in _shard_paths(out_dir):
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
    keys = sorted(s.sample.key for s in synthetic)
    assert names == [f"{key}.{ext}" for key in keys for ext in ("flac", "codes.npy", "json")]
    assert any(len(name) > 100 for name in names)  # the long id went through a PAX header


def test_sample_bound_gives_known_shard_sizes(tmp_path, synthetic) -> None:
    out_dir, rows = _write(
        [s.sample for s in synthetic], tmp_path, ShardLimits(max_bytes=1 << 30, max_samples=5)
    )
    counts = [sum(r.shard.endswith(p.name) for r in rows) for p in _shard_paths(out_dir)]
    assert counts == [5, 5, 4]


def test_byte_bound_is_respected_and_shards_are_filled(tmp_path, synthetic) -> None:
    samples = [s.sample for s in synthetic]
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
    samples = [s.sample for s in synthetic]
    big_key = sorted(s.key for s in samples)[5]
    big = next(s for s in samples if s.key == big_key)
    huge = dataclasses.replace(big, flac=big.flac * 20)  # ~0.5-1.5 MB: bigger than the bound
    samples = [huge if s.key == big_key else s for s in samples]
    _, rows = _write(samples, tmp_path, ShardLimits(max_bytes=200_000, max_samples=100))
    big_row = next(r for r in rows if r.key == big_key)
    assert big_row.shard_bytes > 200_000
    assert [r.key for r in rows if r.shard == big_row.shard] == [big_key]
    assert all(r.shard_bytes <= 200_000 for r in rows if r.key != big_key)


def test_index_offsets_point_at_the_tar_member_data(tmp_path, synthetic) -> None:
    lake_root = tmp_path / "lake"
    out_dir, rows = _write([s.sample for s in synthetic], lake_root, SMALL)
    table = pq.read_table(out_dir / "index.parquet")
    assert table.schema.equals(SHARD_INDEX_ARROW_SCHEMA)
    assert table.column("key").to_pylist() == [r.key for r in rows]
    assert read_index(out_dir) == rows
    for row in rows:
        assert row.shard.startswith(f"shards/{SOURCE}/{UNIT}/shard-")
        shard_bytes = (lake_root / row.shard).read_bytes()
        assert row.shard_bytes == len(shard_bytes)
        assert row.shard_sha256 == hashlib.sha256(shard_bytes).hexdigest()
        with tarfile.open(lake_root / row.shard) as tar:
            for member, ext in (("flac", "flac"), ("codes", "codes.npy"), ("json", "json")):
                info = tar.getmember(f"{row.key}.{ext}")
                assert (info.offset_data, info.size) == (
                    getattr(row, f"{member}_offset"),
                    getattr(row, f"{member}_size"),
                )
                assert read_member(lake_root, row, member) == tar.extractfile(info).read()
    by_key = {s.sample.key: s.sample for s in synthetic}
    row = next(r for r in rows if r.utterance_id == LONG_ID)
    codes = np.load(io.BytesIO(read_member(lake_root, row, "codes")), allow_pickle=False)
    np.testing.assert_array_equal(codes, by_key[row.key].codes)
    assert (row.source, row.unit, row.n_codes) == (SOURCE, UNIT, len(codes))


def test_read_members_equals_read_member_row_by_row(tmp_path, synthetic) -> None:
    lake_root = tmp_path / "lake"
    _, rows = _write([s.sample for s in synthetic], lake_root, SMALL)
    for member in ("flac", "codes", "json"):
        assert list(read_members(lake_root, rows, member)) == [
            read_member(lake_root, row, member) for row in rows
        ]
    shuffled = [rows[i] for i in (5, 0, 9, 5, 13)]  # any order, shards revisited
    assert list(read_members(lake_root, shuffled, "json")) == [
        read_member(lake_root, row, "json") for row in shuffled
    ]
    with pytest.raises(ValueError, match="member"):
        read_member(lake_root, rows[0], "codes.npy")
    truncated = rows[-1].model_copy(update={"json_offset": rows[-1].shard_bytes - 10})
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
    samples = [s.sample for s in synthetic]
    shuffled = [samples[i] for i in np.random.default_rng(1).permutation(len(samples))]
    out_a, rows_a = _write(samples, tmp_path / "a", SMALL)
    out_b, rows_b = _write(iter(shuffled), tmp_path / "b", SMALL)
    files_a, files_b = _files(out_a), _files(out_b)
    assert sorted(files_a) == ["index.parquet"] + [
        f"shard-{i:06d}.tar" for i in range(len(files_a) - 1)
    ]
    assert files_a == files_b
    assert rows_a == rows_b


def test_rerun_leaves_unchanged_shards_alone_and_removes_stale_ones(tmp_path, synthetic) -> None:
    samples = [s.sample for s in synthetic]
    out_dir, _ = _write(samples, tmp_path, ShardLimits(max_samples=2))
    assert len(_shard_paths(out_dir)) == 7
    first = out_dir / "shard-000000.tar"
    mtime_ns = first.stat().st_mtime_ns
    time.sleep(0.01)
    _write(samples, tmp_path, ShardLimits(max_samples=2))
    assert first.stat().st_mtime_ns == mtime_ns

    _, rows = _write(samples[:5], tmp_path, ShardLimits(max_samples=2))
    assert [p.name for p in _shard_paths(out_dir)] == [f"shard-{i:06d}.tar" for i in range(3)]
    assert {r.shard.rsplit("/", 1)[1] for r in rows} == {p.name for p in _shard_paths(out_dir)}
    assert len(read_index(out_dir)) == 5


def test_empty_unit_writes_an_empty_index(tmp_path) -> None:
    out_dir, rows = _write([], tmp_path, SMALL)
    assert rows == []
    assert _shard_paths(out_dir) == []
    assert pq.read_table(out_dir / "index.parquet").num_rows == 0


# --- refusals -------------------------------------------------------------------------------


def test_bad_samples_are_refused(tmp_path, synthetic) -> None:
    good = synthetic[0].sample
    bad = {
        "dotted key": dataclasses.replace(good, key="a.b"),
        "int32 codes": dataclasses.replace(good, codes=good.codes.astype(np.int32)),
        "n_codes": dataclasses.replace(good, codes=good.codes[:-1]),
        "meta id": dataclasses.replace(good, utterance_id="other"),
    }
    for name, sample in bad.items():
        with pytest.raises(ShardFormatError):
            _write([sample], tmp_path / name.replace(" ", "-"), SMALL)
    with pytest.raises(ShardFormatError, match="duplicate key"):
        _write([good, good], tmp_path / "dup", SMALL)
    with pytest.raises(ValueError, match="outside the lake root"):
        write_shards(
            [good],
            tmp_path / "x",
            SMALL,
            source=SOURCE,
            unit=UNIT,
            lake_root=tmp_path / "elsewhere",
        )


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

job = pickle.loads(Path(sys.argv[1]).read_bytes())
marker = Path(sys.argv[2])
original = shards._add_member
members_added = 0


def add_member_then_hang(tar, name, data):
    # After `hang_after` members, announce it and block: the parent kills us mid-shard.
    global members_added
    if members_added == job["hang_after"]:
        marker.write_text(name)
        time.sleep(600)
    members_added += 1
    return original(tar, name, data)


shards._add_member = add_member_then_hang
shards.write_shards(job["samples"], job["out_dir"], job["limits"], source=job["source"],
                    unit=job["unit"], lake_root=job["lake_root"])
"""


def _write_then_kill(tmp_path: Path, samples, lake_root: Path, limits, hang_after: int) -> None:
    """Run the writer in a subprocess and SIGKILL it once it has added `hang_after` members."""
    out_dir = lake_root / "shards" / SOURCE / UNIT
    job = tmp_path / "job.pickle"
    job.write_bytes(
        pickle.dumps(
            {
                "samples": samples,
                "out_dir": out_dir,
                "limits": limits,
                "source": SOURCE,
                "unit": UNIT,
                "lake_root": lake_root,
                "hang_after": hang_after,
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
    samples = [s.sample for s in synthetic]
    limits = ShardLimits(max_bytes=1 << 30, max_samples=3)
    clean_dir, _ = _write(samples, tmp_path / "clean", limits)
    clean = _files(clean_dir)

    lake_root = tmp_path / "crash"
    out_dir = lake_root / "shards" / SOURCE / UNIT
    old: dict[str, bytes] = {}
    if earlier_run:  # a complete earlier run with other samples and more shards
        _write([s.sample for s in make_samples(20, seed=9)], lake_root, ShardLimits(max_samples=2))
        old = _files(out_dir)
        assert len(old) == 11

    # 3 samples x 3 members per shard: member 22 is the second member of shard 2's second sample.
    _write_then_kill(tmp_path, samples, lake_root, limits, hang_after=22)

    assert not (out_dir / "index.parquet").exists()
    visible = {p.name: p.read_bytes() for p in _shard_paths(out_dir)}
    assert visible["shard-000000.tar"] == clean["shard-000000.tar"]
    assert visible["shard-000001.tar"] == clean["shard-000001.tar"]
    for name, data in visible.items():  # every visible shard is complete: new or earlier
        assert data in (clean.get(name), old.get(name)), name
    if not earlier_run:
        assert sorted(visible) == ["shard-000000.tar", "shard-000001.tar"]
    leftovers = [p for p in out_dir.iterdir() if p.name.startswith(".")]
    assert [p.name.startswith(".shard-000002.tar.") for p in leftovers] == [True]

    _write(samples, lake_root, limits)
    assert _files(out_dir) == clean
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".")]
