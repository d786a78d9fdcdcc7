"""Write one unit's accepted utterances as deterministic WebDataset shards.

`write_shards` sorts a unit's samples by key and packs them into
`shard-000000.tar`, `shard-000001.tar`, … (bounded by bytes and by sample
count), each sample as three consecutive members `<key>.flac`,
`<key>.codes.npy` and `<key>.json`, then writes `index.parquet` with one
`ShardIndexRow` per sample: which shard, and where each member's data lies in
it. The tar metadata is fixed (mtime 0, owner 0/"", mode 0o644, PAX format),
so identical samples give byte-identical shards and an identical index.

Crash safety: the index is removed first and written last, and every shard is
written under a temporary name (`.shard-000000.tar.<random>.tmp`, which no
`shard-*.tar` glob matches) and renamed into place only when complete. A
killed writer therefore leaves only complete shards and no index; a present
`index.parquet` means every shard it names is complete.

Keys, shard names and the `.codes.npy` codec are the shard contract in
`schemas/shards.py`; `pipelines/shards/reader.py` reads shards back.

"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipelines.lake.atomic import atomic_write, remove_stale_temporaries, write_parquet_atomic
from schemas.shards import (
    _KEY_VALID,
    _SHARD_NAME,
    INDEX_NAME,
    MEMBER_EXTENSIONS,
    SHARD_GLOB,
    SHARD_INDEX_ARROW_SCHEMA,
    TAR_ENCODING,
    ShardFormatError,
    ShardIndexRow,
    ShardLimits,
    ShardSampleMeta,
    encode_codes,
    shard_name,
)

# PAX so that member names longer than 100 characters (long utterance ids) are stored
# whole; for the short ASCII names of most keys PAX writes plain USTAR headers.
TAR_FORMAT = tarfile.PAX_FORMAT
MEMBER_MODE = 0o644
BLOCK_BYTES = tarfile.BLOCKSIZE  # 512: headers and data are padded to whole blocks
RECORD_BYTES = tarfile.RECORDSIZE  # 10240: tarfile pads the closed archive to whole records


@dataclass(frozen=True)
class ShardSample:
    """One accepted utterance as it goes into a shard.

    `flac` is the 16 kHz mono 16-bit FLAC file (`pipelines.audio.encode_flac16`),
    `codes` the 1-D uint16 GLM-4-Voice codes (12.5 per second of audio).
    """

    key: str
    utterance_id: str
    flac: bytes
    codes: np.ndarray
    meta: ShardSampleMeta


@dataclass(frozen=True)
class _EncodedSample:
    """A sample's three member payloads, in `MEMBER_EXTENSIONS` order, and its tar bytes."""

    sample: ShardSample
    payloads: tuple[bytes, bytes, bytes]
    tar_bytes: int




def encode_meta(meta: ShardSampleMeta) -> bytes:
    """The `<key>.json` payload: the metadata as compact JSON, sorted keys, UTF-8.

    NaN or infinite floats are refused (they are not JSON).
    """
    text = json.dumps(
        meta.model_dump(mode="json"),
        sort_keys=True,
        ensure_ascii=False,
        allow_nan=False,
        separators=(",", ":"),
    )
    return text.encode("utf-8")


def _member_info(name: str, size: int) -> tarfile.TarInfo:
    """A regular-file header with fixed metadata, so the bytes depend only on name and size."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = MEMBER_MODE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def _header_bytes(name: str, size: int) -> int:
    """Bytes of a member's header(s) as written, a PAX extended header included if needed."""
    return len(_member_info(name, size).tobuf(TAR_FORMAT, TAR_ENCODING, "surrogateescape"))


def _padded(size: int, unit: int) -> int:
    """`size` rounded up to a whole number of `unit`s."""
    return -(-size // unit) * unit


def closed_tar_bytes(member_bytes: int) -> int:
    """Size of a closed tar whose members (headers and padded data) take `member_bytes`.

    tarfile ends an archive with two zero blocks and pads it to whole 10240-byte records.
    """
    return _padded(member_bytes + 2 * BLOCK_BYTES, RECORD_BYTES)


def _validate(sample: ShardSample, source: str) -> None:
    """Refuse a sample whose key, codes or metadata break the shard contract."""
    if not _KEY_VALID.fullmatch(sample.key):
        raise ShardFormatError(
            f"key {sample.key!r} of {sample.utterance_id!r} is not [A-Za-z0-9_-]+ (use shard_key)"
        )
    if sample.meta.utterance_id != sample.utterance_id:
        raise ShardFormatError(
            f"sample {sample.key!r}: meta.utterance_id {sample.meta.utterance_id!r} "
            f"!= utterance_id {sample.utterance_id!r}"
        )
    if sample.meta.source != source:
        raise ShardFormatError(
            f"sample {sample.key!r}: meta.source {sample.meta.source!r} != source {source!r}"
        )
    codes = np.asarray(sample.codes)
    if codes.dtype != np.uint16 or codes.ndim != 1:
        raise ShardFormatError(
            f"sample {sample.key!r}: codes must be 1-D uint16, got {codes.dtype} {codes.shape}"
        )
    if sample.meta.n_codes != len(codes):
        raise ShardFormatError(
            f"sample {sample.key!r}: meta.n_codes {sample.meta.n_codes} != {len(codes)} codes"
        )


def _encode(sample: ShardSample) -> _EncodedSample:
    """Serialise a sample's members and measure what they add to a tar."""
    payloads = (bytes(sample.flac), encode_codes(sample.codes), encode_meta(sample.meta))
    tar_bytes = sum(
        _header_bytes(f"{sample.key}.{ext}", len(data)) + _padded(len(data), BLOCK_BYTES)
        for ext, data in zip(MEMBER_EXTENSIONS, payloads, strict=True)
    )
    return _EncodedSample(sample, payloads, tar_bytes)


def _plan_shards(samples: list[_EncodedSample], limits: ShardLimits) -> list[list[_EncodedSample]]:
    """Group key-sorted samples into shards, in order, greedily.

    A shard takes the next sample unless that would make it hold more than
    `limits.max_samples` samples or its closed tar exceed `limits.max_bytes`
    bytes; a sample larger than `max_bytes` on its own gets a shard alone.
    """
    shards: list[list[_EncodedSample]] = []
    current: list[_EncodedSample] = []
    current_bytes = 0
    for encoded in samples:
        too_many = len(current) >= limits.max_samples
        too_big = closed_tar_bytes(current_bytes + encoded.tar_bytes) > limits.max_bytes
        if current and (too_many or too_big):
            shards.append(current)
            current, current_bytes = [], 0
        current.append(encoded)
        current_bytes += encoded.tar_bytes
    if current:
        shards.append(current)
    return shards


class _HashingWriter:
    """A write-only file object that counts and sha256-hashes what passes through it."""

    def __init__(self, handle: io.BufferedWriter) -> None:
        self._handle = handle
        self.sha256 = hashlib.sha256()
        self.bytes_written = 0

    def write(self, data: bytes) -> int:
        self._handle.write(data)
        self.sha256.update(data)
        self.bytes_written += len(data)
        return len(data)

    def tell(self) -> int:
        return self.bytes_written


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> int:
    """Append one regular file to `tar`; return the byte offset of its data in the archive."""
    info = _member_info(name, len(data))
    offset_data = tar.offset + _header_bytes(name, len(data))
    tar.addfile(info, io.BytesIO(data))
    return offset_data


@dataclass(frozen=True)
class _Placed:
    """Where one sample's members landed in its shard: (offset, size) per member."""

    encoded: _EncodedSample
    ranges: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


def _write_one_shard(path: Path, shard: list[_EncodedSample]) -> tuple[list[_Placed], str, int]:
    """Write one shard atomically; return the samples' member ranges, its sha256 and bytes."""
    placed: list[_Placed] = []
    with atomic_write(path) as handle:
        writer = _HashingWriter(handle)
        with tarfile.open(
            fileobj=writer, mode="w", format=TAR_FORMAT, encoding=TAR_ENCODING
        ) as tar:
            for encoded in shard:
                ranges = []
                for ext, data in zip(MEMBER_EXTENSIONS, encoded.payloads, strict=True):
                    offset = _add_member(tar, f"{encoded.sample.key}.{ext}", data)
                    ranges.append((offset, len(data)))
                placed.append(_Placed(encoded, (ranges[0], ranges[1], ranges[2])))
    expected = closed_tar_bytes(sum(e.tar_bytes for e in shard))
    if writer.bytes_written != expected:
        # The byte bound rests on this prediction; a tarfile that writes otherwise breaks it.
        raise RuntimeError(f"{path}: wrote {writer.bytes_written} bytes, planned {expected}")
    return placed, writer.sha256.hexdigest(), writer.bytes_written


def _existing_shard_names(out_dir: Path) -> set[str]:
    """Names of the `shard-NNNNNN.tar` files in `out_dir`."""
    return {p.name for p in out_dir.glob(SHARD_GLOB) if _SHARD_NAME.fullmatch(p.name)}


def write_shards(
    samples: Iterable[ShardSample],
    out_dir: Path,
    limits: ShardLimits,
    *,
    source: str,
    unit: str,
    lake_root: Path,
) -> list[ShardIndexRow]:
    """Write one unit's samples as WebDataset shards in `out_dir` plus `out_dir/index.parquet`.

    The samples are sorted by key (keys must be unique and `[A-Za-z0-9_-]+`,
    see `shard_key`) and packed greedily into `shard-000000.tar`, … bounded by
    `limits.max_bytes` (whole tar file bytes, end-of-archive padding
    included) and `limits.max_samples`; a sample is never split and one larger
    than `max_bytes` gets a shard alone. Each sample's `meta.utterance_id`
    must equal its `utterance_id`, `meta.source` equal `source` and
    `meta.n_codes` the number of its codes.

    Order of work, for crash safety: the old index is removed, temporaries of a
    killed earlier run are removed, each shard is written to a temporary file
    and renamed into place when complete, shards of an earlier run beyond the
    new count are removed, and the index is written last. A shard whose bytes
    are unchanged is left alone (its mtime too).

    Returns one `ShardIndexRow` per sample, sorted by key: `shard` is the shard
    path relative to `lake_root` (POSIX separators), offsets are byte offsets
    of member data in the tar file, sizes are member data bytes.
    """
    shard_dir = out_dir.resolve()
    try:
        shard_dir_in_lake = shard_dir.relative_to(lake_root.resolve()).as_posix()
    except ValueError:
        raise ValueError(f"shard folder {out_dir} is outside the lake root {lake_root}") from None

    encoded: list[_EncodedSample] = []
    for sample in sorted(samples, key=lambda s: s.key):
        _validate(sample, source)
        if encoded and encoded[-1].sample.key == sample.key:
            raise ShardFormatError(
                f"duplicate key {sample.key!r}: utterances {encoded[-1].sample.utterance_id!r} "
                f"and {sample.utterance_id!r}"
            )
        encoded.append(_encode(sample))
    plan = _plan_shards(encoded, limits)

    shard_dir.mkdir(parents=True, exist_ok=True)
    index_path = shard_dir / INDEX_NAME
    index_path.unlink(missing_ok=True)
    remove_stale_temporaries(shard_dir)

    rows: list[ShardIndexRow] = []
    for shard_index, shard in enumerate(plan):
        name = shard_name(shard_index)
        placed, sha256, shard_bytes = _write_one_shard(shard_dir / name, shard)
        for item in placed:
            sample = item.encoded.sample
            (flac_offset, flac_size), (codes_offset, codes_size), (json_offset, json_size) = (
                item.ranges
            )
            rows.append(
                ShardIndexRow(
                    key=sample.key,
                    utterance_id=sample.utterance_id,
                    source=source,
                    unit=unit,
                    shard=f"{shard_dir_in_lake}/{name}" if shard_dir_in_lake != "." else name,
                    shard_sha256=sha256,
                    shard_bytes=shard_bytes,
                    flac_offset=flac_offset,
                    flac_size=flac_size,
                    codes_offset=codes_offset,
                    codes_size=codes_size,
                    json_offset=json_offset,
                    json_size=json_size,
                    duration_s=sample.meta.duration_s,
                    n_codes=sample.meta.n_codes,
                )
            )

    written = {shard_name(i) for i in range(len(plan))}
    for stale in sorted(_existing_shard_names(shard_dir) - written):
        (shard_dir / stale).unlink()

    table = pa.Table.from_pylist(
        [row.model_dump() for row in rows], schema=SHARD_INDEX_ARROW_SCHEMA
    )
    write_parquet_atomic(index_path, table)
    return rows
