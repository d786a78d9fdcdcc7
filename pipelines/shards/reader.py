"""Read shards back: members by their index offsets (a seek and a read), or tar headers.

`read_index` and `read_code_index` read a unit's audio or code shard index;
`read_member` fetches one member by its index offsets (no tar parsing),
`read_members` many (one open per shard); `iter_shard_samples` walks a
shard's headers for readers without the index; `hf_features` are the Hugging
Face `datasets` features to load the audio shards with. `decode_codes` (in
`schemas/shards.py`) turns `.codes.npy` bytes into uint16 codes fast.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import pyarrow.parquet as pq

from schemas.arrow import arrow_schema
from schemas.shards import (
    CODE_INDEX_ARROW_SCHEMA,
    INDEX_NAME,
    SHARD_INDEX_ARROW_SCHEMA,
    TAR_ENCODING,
    AudioSampleMeta,
    CodeIndexRow,
    CodeSampleMeta,
    Member,
    ShardFormatError,
    ShardIndexRow,
)

IndexRow = ShardIndexRow | CodeIndexRow

if TYPE_CHECKING:
    import datasets


def read_index(out_dir: Path) -> list[ShardIndexRow]:
    """The rows of an audio shard folder's `index.parquet`, in file order (sorted by key)."""
    table = pq.read_table(out_dir / INDEX_NAME, schema=SHARD_INDEX_ARROW_SCHEMA)
    return [ShardIndexRow(**row) for row in table.to_pylist()]


def read_code_index(out_dir: Path) -> list[CodeIndexRow]:
    """The rows of a code shard folder's `index.parquet`, in file order (sorted by key)."""
    table = pq.read_table(out_dir / INDEX_NAME, schema=CODE_INDEX_ARROW_SCHEMA)
    return [CodeIndexRow(**row) for row in table.to_pylist()]


def _member_range(row: IndexRow, member: Member) -> tuple[int, int]:
    """(byte offset, byte size) of one member's data in its shard."""
    if member == "flac" and isinstance(row, ShardIndexRow):
        return row.flac_offset, row.flac_size
    if member == "codes" and isinstance(row, CodeIndexRow):
        return row.codes_offset, row.codes_size
    if member == "json":
        return row.json_offset, row.json_size
    raise ValueError(f"a {type(row).__name__} has no member {member!r}")


def read_member(lake_root: Path, row: IndexRow, member: Member) -> bytes:
    """One member's data bytes, found by the index offsets: a seek and a read, no tar parsing.

    `member` is "flac" or "json" of an audio shard row, "codes" (the `.codes.npy`
    bytes) or "json" of a code shard row.
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


def read_members(lake_root: Path, rows: Iterable[IndexRow], member: Member) -> Iterator[bytes]:
    """`read_member` for many rows, in their order, opening each shard once per run of rows.

    Rows in index order (sorted by key, so grouped by shard) open every shard once.
    """
    for (data,) in read_sample_members(lake_root, rows, (member,)):
        yield data


def read_sample_members(
    lake_root: Path, rows: Iterable[IndexRow], members: tuple[Member, ...]
) -> Iterator[tuple[bytes, ...]]:
    """Several members of each row's sample (in `members` order) in one pass over the shards.

    Each shard is opened once per run of rows; a sample's members are consecutive in
    its tar, so reading them together is one forward walk through the file.
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
            payloads = []
            for member in members:
                offset, size = _member_range(row, member)
                handle.seek(offset)
                data = handle.read(size)
                if len(data) != size:
                    raise ShardFormatError(
                        f"{row.shard}: {member} of {row.key!r} needs {size} bytes at {offset}, "
                        f"got {len(data)}"
                    )
                payloads.append(data)
            yield tuple(payloads)
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
    """The Hugging Face `datasets` features of our audio shards, for `load_dataset("webdataset")`.

    Pass them as `features=`: without them `datasets` infers the types from the
    first 5 samples, and a metadata field that is null in all five (e.g. no
    speaker) becomes type null, so the first later sample with a value fails
    with "Couldn't cast array of type string to null".
    """
    import datasets  # a reader's dependency only; the writer does not need it

    meta = datasets.Features.from_arrow_schema(arrow_schema(AudioSampleMeta))
    return datasets.Features(
        {
            "flac": datasets.Audio(),
            "json": dict(meta),
            "__key__": datasets.Value("string"),
            "__url__": datasets.Value("string"),
        }
    )


def hf_code_features() -> datasets.Features:
    """The Hugging Face `datasets` features of our code shards (codes and their JSON).

    Loaded in the same shard order as the audio shards, row i of one is row i of
    the other (`__key__` equal).
    """
    import datasets

    meta = datasets.Features.from_arrow_schema(arrow_schema(CodeSampleMeta))
    return datasets.Features(
        {
            "codes.npy": datasets.List(datasets.Value("uint16")),
            "json": dict(meta),
            "__key__": datasets.Value("string"),
            "__url__": datasets.Value("string"),
        }
    )
