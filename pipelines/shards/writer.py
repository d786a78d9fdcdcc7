"""Write one unit's samples of one field as deterministic WebDataset shards, index last.

A field is the audio (`<key>.flac`, `<key>.json`) or the codes (`<key>.codes.npy`,
`<key>.json`) of a unit's accepted utterances (`schemas/shards.py`).
`write_shards` sorts the samples by key and packs them into `audio-000000.tar`,
… — bounded by bytes and sample count (`ShardLimits`), or into given shard sizes
so that code shards keep the audio shards' boundaries — then writes the field's
`index.parquet` with one row per sample (made by the caller's `index_row` from
where the sample's members landed). The tar metadata is fixed (mtime 0, owner
0/"", mode 0o644, PAX format), so identical samples give byte-identical shards
and an identical index.

Crash safety: the index is removed first and written last, and every shard is
written under a temporary name (`.audio-000000.tar.<random>.tmp`, which no
shard glob matches) and renamed into place only when complete. A killed writer
therefore leaves only complete shards and no index; a present `index.parquet`
means every shard it names is complete.

`pipelines/shards/reader.py` reads shards back.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from pydantic import BaseModel

from pipelines.lake.atomic import atomic_write, remove_stale_temporaries, write_parquet_atomic
from schemas.shards import (
    _KEY_VALID,
    INDEX_NAME,
    TAR_ENCODING,
    CodeIndexRow,
    ShardFormatError,
    ShardIndexRow,
    ShardLimits,
    shard_name,
    shard_number,
)

# PAX so that member names longer than 100 characters (long utterance ids) are stored
# whole; for the short ASCII names of most keys PAX writes plain USTAR headers.
TAR_FORMAT = tarfile.PAX_FORMAT
MEMBER_MODE = 0o644
BLOCK_BYTES = tarfile.BLOCKSIZE  # 512: headers and data are padded to whole blocks
RECORD_BYTES = tarfile.RECORDSIZE  # 10240: tarfile pads the closed archive to whole records


@dataclass(frozen=True)
class ShardField:
    """One field of a unit's shards: its shard file prefix and its members, in write order."""

    prefix: str
    members: tuple[str, ...]


@dataclass(frozen=True)
class ShardSample:
    """One utterance's members of one field, as they go into a shard.

    `payloads` are the member bytes in the field's `members` order (for audio: the
    16 kHz mono 16-bit FLAC file and the JSON from `encode_meta`).
    """

    key: str
    utterance_id: str
    payloads: tuple[bytes, ...]


@dataclass(frozen=True)
class PlacedSample:
    """Where one sample landed: its shard (relative to the lake root), the shard's sha256
    and bytes, and (offset, size) of each member's data in the tar, in `members` order."""

    sample: ShardSample
    shard: str
    shard_sha256: str
    shard_bytes: int
    ranges: tuple[tuple[int, int], ...]


def audio_index_row(
    placed: PlacedSample, source: str, unit: str, duration_s: float, pcm_sha256: str
) -> ShardIndexRow:
    """The audio shard index row of a placed `<key>.flac` + `<key>.json` sample."""
    (flac_offset, flac_size), (json_offset, json_size) = placed.ranges
    return ShardIndexRow(
        key=placed.sample.key,
        utterance_id=placed.sample.utterance_id,
        source=source,
        unit=unit,
        shard=placed.shard,
        shard_sha256=placed.shard_sha256,
        shard_bytes=placed.shard_bytes,
        flac_offset=flac_offset,
        flac_size=flac_size,
        json_offset=json_offset,
        json_size=json_size,
        duration_s=duration_s,
        pcm_sha256=pcm_sha256,
    )


def code_index_row(
    placed: PlacedSample,
    source: str,
    unit: str,
    *,
    duration_s: float,
    n_codes: int,
    audio_shard: str,
    tokenizer_sha256: str,
    tokenizer_is_demo: bool,
) -> CodeIndexRow:
    """The code shard index row of a placed `<key>.codes.npy` + `<key>.json` sample."""
    (codes_offset, codes_size), (json_offset, json_size) = placed.ranges
    return CodeIndexRow(
        key=placed.sample.key,
        utterance_id=placed.sample.utterance_id,
        source=source,
        unit=unit,
        shard=placed.shard,
        shard_sha256=placed.shard_sha256,
        shard_bytes=placed.shard_bytes,
        codes_offset=codes_offset,
        codes_size=codes_size,
        json_offset=json_offset,
        json_size=json_size,
        duration_s=duration_s,
        n_codes=n_codes,
        audio_shard=audio_shard,
        tokenizer_sha256=tokenizer_sha256,
        tokenizer_is_demo=tokenizer_is_demo,
    )


@dataclass(frozen=True)
class _EncodedSample:
    """A sample, its members' tar headers (in `members` order) and the bytes it adds to a tar."""

    sample: ShardSample
    headers: tuple[bytes, ...]
    tar_bytes: int


def encode_meta(meta: BaseModel) -> bytes:
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


def _header(name: str, size: int) -> bytes:
    """A member's header block(s) exactly as tarfile writes them, PAX extended header included
    when the name needs one."""
    return _member_info(name, size).tobuf(TAR_FORMAT, TAR_ENCODING, "surrogateescape")


def _padded(size: int, unit: int) -> int:
    """`size` rounded up to a whole number of `unit`s."""
    return -(-size // unit) * unit


def closed_tar_bytes(member_bytes: int) -> int:
    """Size of a closed tar whose members (headers and padded data) take `member_bytes`.

    tarfile ends an archive with two zero blocks and pads it to whole 10240-byte records.
    """
    return _padded(member_bytes + 2 * BLOCK_BYTES, RECORD_BYTES)


def _encode(sample: ShardSample, field: ShardField) -> _EncodedSample:
    """Check a sample against the contract and measure what its members add to a tar."""
    if not _KEY_VALID.fullmatch(sample.key):
        raise ShardFormatError(
            f"key {sample.key!r} of {sample.utterance_id!r} is not [A-Za-z0-9_-]+ (use shard_key)"
        )
    if len(sample.payloads) != len(field.members):
        raise ShardFormatError(
            f"sample {sample.key!r}: {len(sample.payloads)} payloads for members {field.members}"
        )
    headers = tuple(
        _header(f"{sample.key}.{ext}", len(data))
        for ext, data in zip(field.members, sample.payloads, strict=True)
    )
    tar_bytes = sum(
        len(header) + _padded(len(data), BLOCK_BYTES)
        for header, data in zip(headers, sample.payloads, strict=True)
    )
    return _EncodedSample(sample, headers, tar_bytes)


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


def _split_by_sizes(
    samples: list[_EncodedSample], sizes: Sequence[int]
) -> list[list[_EncodedSample]]:
    """Cut key-sorted samples into consecutive shards of exactly `sizes` samples."""
    if sum(sizes) != len(samples) or any(size < 1 for size in sizes):
        raise ShardFormatError(
            f"shard sizes {list(sizes)} do not cover {len(samples)} samples exactly"
        )
    shards, start = [], 0
    for size in sizes:
        shards.append(samples[start : start + size])
        start += size
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


def _write_one_shard(
    path: Path, shard: list[_EncodedSample]
) -> tuple[list[tuple[tuple[int, int], ...]], str, int]:
    """Write one shard atomically; return each sample's member ranges, its sha256 and bytes.

    The archive is written block by block exactly as `tarfile` writes it (each member's
    header, its data padded to 512 bytes, then two zero blocks and padding to whole
    10240-byte records), with the headers computed once when the shard was planned.
    """
    placed: list[tuple[tuple[int, int], ...]] = []
    with atomic_write(path) as handle:
        writer = _HashingWriter(handle)
        for encoded in shard:
            ranges = []
            for header, data in zip(encoded.headers, encoded.sample.payloads, strict=True):
                writer.write(header)
                ranges.append((writer.bytes_written, len(data)))
                writer.write(data)
                padding = _padded(len(data), BLOCK_BYTES) - len(data)
                if padding:
                    writer.write(bytes(padding))
            placed.append(tuple(ranges))
        end = closed_tar_bytes(writer.bytes_written)
        writer.write(bytes(end - writer.bytes_written))
    expected = closed_tar_bytes(sum(e.tar_bytes for e in shard))
    if writer.bytes_written != expected:
        # The byte bound rests on this prediction.
        raise RuntimeError(f"{path}: wrote {writer.bytes_written} bytes, planned {expected}")
    return placed, writer.sha256.hexdigest(), writer.bytes_written


def _existing_shard_names(out_dir: Path, prefix: str) -> set[str]:
    """Names of the `<prefix>-NNNNNN.tar` files in `out_dir`."""
    return {p.name for p in out_dir.glob(f"{prefix}-*.tar") if shard_number(p.name) is not None}


def write_shards(
    samples: Iterable[ShardSample],
    out_dir: Path,
    field: ShardField,
    *,
    lake_root: Path,
    index_row: Callable[[PlacedSample], BaseModel],
    index_schema: pa.Schema,
    limits: ShardLimits | None = None,
    sizes: Sequence[int] | None = None,
    index_metadata: dict[bytes, bytes] | None = None,
) -> list[PlacedSample]:
    """Write one unit's samples of `field` as WebDataset shards in `out_dir`, then its index.

    The samples are sorted by key (keys must be unique and `[A-Za-z0-9_-]+`,
    see `shard_key`) and packed in order into `<prefix>-000000.tar`, …: either
    greedily under `limits` (whole tar file bytes, end-of-archive padding
    included, and samples per shard; a sample is never split and one larger
    than `max_bytes` gets a shard alone), or into exactly `sizes` samples per
    shard (how code shards keep the audio shards' boundaries). Give one of the two.

    Order of work, for crash safety: the old index is removed, temporaries of a
    killed earlier run are removed, each shard is written to a temporary file
    and renamed into place when complete, shards of an earlier run beyond the
    new count are removed, and `out_dir/index.parquet` (one `index_row(placed)`
    per sample, in key order, with `index_metadata` as its Parquet key-value
    metadata) is written last. A shard whose bytes are unchanged is left alone
    (its mtime too).

    Returns the placed samples in key order: `shard` is the shard path relative
    to `lake_root` (POSIX separators), ranges are byte offsets and sizes of the
    member data in the tar file.
    """
    if (limits is None) == (sizes is None):
        raise ValueError("give either limits or sizes")
    shard_dir = out_dir.resolve()
    try:
        shard_dir_in_lake = shard_dir.relative_to(lake_root.resolve()).as_posix()
    except ValueError:
        raise ValueError(f"shard folder {out_dir} is outside the lake root {lake_root}") from None

    encoded: list[_EncodedSample] = []
    for sample in sorted(samples, key=lambda s: s.key):
        if encoded and encoded[-1].sample.key == sample.key:
            raise ShardFormatError(
                f"duplicate key {sample.key!r}: utterances {encoded[-1].sample.utterance_id!r} "
                f"and {sample.utterance_id!r}"
            )
        encoded.append(_encode(sample, field))
    plan = _plan_shards(encoded, limits) if limits is not None else _split_by_sizes(encoded, sizes)

    shard_dir.mkdir(parents=True, exist_ok=True)
    index_path = shard_dir / INDEX_NAME
    index_path.unlink(missing_ok=True)
    remove_stale_temporaries(shard_dir)

    placed: list[PlacedSample] = []
    for number, shard in enumerate(plan):
        name = shard_name(field.prefix, number)
        ranges, sha256, shard_bytes = _write_one_shard(shard_dir / name, shard)
        relative = f"{shard_dir_in_lake}/{name}" if shard_dir_in_lake != "." else name
        placed.extend(
            PlacedSample(item.sample, relative, sha256, shard_bytes, member_ranges)
            for item, member_ranges in zip(shard, ranges, strict=True)
        )

    written = {shard_name(field.prefix, i) for i in range(len(plan))}
    for stale in sorted(_existing_shard_names(shard_dir, field.prefix) - written):
        (shard_dir / stale).unlink()

    table = pa.Table.from_pylist(
        [index_row(item).model_dump() for item in placed], schema=index_schema
    )
    if index_metadata:
        table = table.replace_schema_metadata(index_metadata)
    write_parquet_atomic(index_path, table)
    return placed
