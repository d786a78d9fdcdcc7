"""Write one unit's accepted utterances as deterministic WebDataset shards, and read them back.

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

`read_member` fetches one member by its index offsets (a seek and a read, no
tar parsing), `read_members` many (one open per shard), `decode_codes` turns
`.codes.npy` bytes into uint16 codes fast; `iter_shard_samples` walks a
shard's headers for readers without the index; `hf_features` are the
Hugging Face `datasets` features to load the shards with.

>>> shard_key("1089/134686/1089-134686-0000")
'1089__134686__1089-134686-0000'
>>> shard_key("spk1/utt.0001")
'spk1__utt_0001-094a53ca'
>>> shard_name(41)
'shard-000041.tar'
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.lake import atomic_write, remove_stale_temporaries, write_parquet_atomic
from schemas.arrow import arrow_schema
from schemas.shards import SHARD_INDEX_ARROW_SCHEMA, ShardIndexRow, ShardLimits, ShardSampleMeta

if TYPE_CHECKING:
    import datasets

INDEX_NAME = "index.parquet"
SHARD_GLOB = "shard-*.tar"
MEMBER_EXTENSIONS: tuple[str, ...] = ("flac", "codes.npy", "json")
"""The members of every sample, in the order they are written."""

Member = Literal["flac", "codes", "json"]

# PAX so that member names longer than 100 characters (long utterance ids) are stored
# whole; for the short ASCII names of most keys PAX writes plain USTAR headers.
TAR_FORMAT = tarfile.PAX_FORMAT
TAR_ENCODING = "utf-8"
MEMBER_MODE = 0o644
BLOCK_BYTES = tarfile.BLOCKSIZE  # 512: headers and data are padded to whole blocks
RECORD_BYTES = tarfile.RECORDSIZE  # 10240: tarfile pads the closed archive to whole records

_KEY_DISALLOWED = re.compile(r"[^A-Za-z0-9_-]")
_KEY_VALID = re.compile(r"[A-Za-z0-9_-]+")
_HASH_SUFFIX = re.compile(r"-[0-9a-f]{8}$")
_SHARD_NAME = re.compile(r"shard-(\d{6,})\.tar")


class ShardFormatError(ValueError):
    """A shard (or a sample offered to the writer) breaks the shard conventions."""


def shard_key(utterance_id: str) -> str:
    """The WebDataset key of an utterance: no dots, deterministic, unique per utterance id.

    `/` becomes `__` and every other character outside `[A-Za-z0-9_-]` becomes
    `_`. The key is the readable id itself when `key.replace("__", "/")` gives
    the id back and the key does not already end like a hash suffix
    (`-` + 8 lowercase hex); otherwise `-` + the first 8 hex digits of
    sha1(utterance_id) are appended, so two ids that sanitise alike (`a/b` and
    `a__b`, `x.y` and `x_y`) stay distinct.

    >>> shard_key("Y0000000000_--5llN02F84_S00000")
    'Y0000000000_--5llN02F84_S00000'
    >>> shard_key("a/b"), shard_key("a__b")
    ('a__b', 'a__b-659432c5')
    >>> shard_key("x.y"), shard_key("x_y")
    ('x_y-0ae4ca44', 'x_y')
    >>> "." in shard_key("corpus/spk.7/utt 1.wav")
    False
    """
    if not utterance_id:
        raise ValueError("an empty utterance id has no shard key")
    key = _KEY_DISALLOWED.sub("_", utterance_id.replace("/", "__"))
    if key.replace("__", "/") != utterance_id or _HASH_SUFFIX.search(key):
        key += "-" + hashlib.sha1(utterance_id.encode("utf-8")).hexdigest()[:8]
    return key


def shard_name(index: int) -> str:
    """File name of the `index`-th shard of a unit (0-based): `shard-000041.tar`."""
    return f"shard-{index:06d}.tar"


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


def encode_codes(codes: np.ndarray) -> bytes:
    """The `<key>.codes.npy` payload: `np.save` of the codes as little-endian uint16, no pickle."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(codes, dtype="<u2"), allow_pickle=False)
    return buffer.getvalue()


_NPY_MAGIC_V1 = b"\x93NUMPY\x01\x00"
_NPY_UINT16_HEADER = re.compile(
    rb"\{'descr': '<u2', 'fortran_order': False, 'shape': \((\d+),\), \} *\n"
)


def decode_codes(data: bytes) -> np.ndarray:
    """The codes of a `<key>.codes.npy` payload as a 1-D uint16 array (a writable copy).

    The layout `encode_codes` writes (npy 1.0, little-endian uint16, 1-D) is
    recognised from its header text and read with `np.frombuffer`, ~15x faster
    than `np.load`, whose header parsing dominates for arrays of a few hundred
    codes; any other npy goes through `np.lib.format.read_array` (no pickle)
    and must hold 1-D uint16 values.
    """
    if data[:8] == _NPY_MAGIC_V1:
        start = 10 + int.from_bytes(data[8:10], "little")
        match = _NPY_UINT16_HEADER.fullmatch(data, 10, start)
        if match and 2 * int(match.group(1)) == len(data) - start:
            return np.frombuffer(data, dtype="<u2", offset=start).astype(np.uint16)
    codes = np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
    if codes.ndim != 1 or codes.dtype.kind != "u" or codes.dtype.itemsize != 2:
        raise ShardFormatError(f"codes must be 1-D uint16, got {codes.dtype} {codes.shape}")
    return codes.astype(np.uint16)


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


def read_index(out_dir: Path) -> list[ShardIndexRow]:
    """The rows of `out_dir/index.parquet`, in file order (sorted by key)."""
    table = pq.read_table(out_dir / INDEX_NAME, schema=SHARD_INDEX_ARROW_SCHEMA)
    return [ShardIndexRow(**row) for row in table.to_pylist()]


def _member_range(row: ShardIndexRow, member: Member) -> tuple[int, int]:
    """(byte offset, byte size) of one member's data in its shard."""
    if member == "flac":
        return row.flac_offset, row.flac_size
    if member == "codes":
        return row.codes_offset, row.codes_size
    if member == "json":
        return row.json_offset, row.json_size
    raise ValueError(f"member must be 'flac', 'codes' or 'json', got {member!r}")


def read_member(lake_root: Path, row: ShardIndexRow, member: Member) -> bytes:
    """One member's data bytes, found by the index offsets: a seek and a read, no tar parsing.

    `member` is "flac", "codes" (the `.codes.npy` bytes) or "json".
    """
    offset, size = _member_range(row, member)
    with (lake_root / row.shard).open("rb") as handle:
        handle.seek(offset)
        data = handle.read(size)
    if len(data) != size:
        raise ShardFormatError(
            f"{row.shard}: {member} of {row.key!r} needs {size} bytes at {offset}, got {len(data)}"
        )
    return data


def read_members(
    lake_root: Path, rows: Iterable[ShardIndexRow], member: Member
) -> Iterator[bytes]:
    """`read_member` for many rows, in their order, opening each shard once per run of rows.

    Rows in index order (sorted by key, so grouped by shard) open every shard once.
    """
    open_shard: str | None = None
    handle: io.BufferedReader | None = None
    try:
        for row in rows:
            if row.shard != open_shard:
                if handle is not None:
                    handle.close()
                handle = (lake_root / row.shard).open("rb")
                open_shard = row.shard
            offset, size = _member_range(row, member)
            handle.seek(offset)
            data = handle.read(size)
            if len(data) != size:
                raise ShardFormatError(
                    f"{row.shard}: {member} of {row.key!r} needs {size} bytes at {offset}, "
                    f"got {len(data)}"
                )
            yield data
    finally:
        if handle is not None:
            handle.close()


def _split_member_name(name: str) -> tuple[str, str]:
    """(key, extension) of a member name: the key is the path up to the basename's first dot.

    Absolute names, names with a `..` component and names without an extension are refused.
    """
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or name.startswith("\\"):
        raise ShardFormatError(f"unsafe member name {name!r}")
    folder, _, basename = name.rpartition("/")
    stem, dot, extension = basename.partition(".")
    if not stem or not dot or not extension:
        raise ShardFormatError(f"member name {name!r} has no key or no extension")
    return (f"{folder}/{stem}" if folder else stem), extension


def iter_shard_samples(shard_path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Yield `(key, {extension: data})` for each sample of a shard, in tar order.

    Walks the tar headers one by one (nothing is extracted to disk). Refused
    with `ShardFormatError`: members that are not regular files, absolute
    names or names with a `..` component, names without an extension, a
    sample whose members are not consecutive, and an extension repeated
    within a sample.
    """
    seen: set[str] = set()
    key: str | None = None
    members: dict[str, bytes] = {}
    with tarfile.open(shard_path, mode="r:", encoding=TAR_ENCODING) as tar:
        for info in tar:
            if not info.isreg():
                raise ShardFormatError(f"{shard_path}: {info.name!r} is not a regular file")
            member_key, extension = _split_member_name(info.name)
            if member_key != key:
                if key is not None:
                    yield key, members
                if member_key in seen:
                    raise ShardFormatError(
                        f"{shard_path}: members of {member_key!r} are not consecutive"
                    )
                seen.add(member_key)
                key, members = member_key, {}
            if extension in members:
                raise ShardFormatError(f"{shard_path}: {info.name!r} appears twice")
            handle = tar.extractfile(info)
            if handle is None:  # unreachable for regular files; kept for the type checker
                raise ShardFormatError(f"{shard_path}: cannot read {info.name!r}")
            members[extension] = handle.read()
    if key is not None:
        yield key, members


def hf_features() -> datasets.Features:
    """The Hugging Face `datasets` features of our shards, for `load_dataset("webdataset", ...)`.

    Pass them as `features=`: without them `datasets` infers the types from the
    first 5 samples, and a metadata field that is null in all five (e.g. no
    speaker) becomes type null, so the first later sample with a value fails
    with "Couldn't cast array of type string to null".
    """
    import datasets  # a reader's dependency only; the writer does not need it

    meta = datasets.Features.from_arrow_schema(arrow_schema(ShardSampleMeta))
    return datasets.Features(
        {
            "flac": datasets.Audio(),
            "codes.npy": datasets.List(datasets.Value("uint16")),
            "json": dict(meta),
            "__key__": datasets.Value("string"),
            "__url__": datasets.Value("string"),
        }
    )
