"""The shard writer lays out tars itself (headers computed once, when shards are planned):
its bytes must be exactly what Python's `tarfile` writes for the same members, long
(PAX) and non-ASCII names included, so every tar reader reads them."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pyarrow as pa
from pydantic import BaseModel

from pipelines.shards.writer import (
    MEMBER_MODE,
    PlacedSample,
    ShardField,
    ShardSample,
    write_shards,
)
from schemas import ShardLimits

FIELD = ShardField(prefix="audio", members=("flac", "json"))


class _Row(BaseModel):
    key: str
    shard: str
    offsets: list[int]


def _tarfile_bytes(samples: list[ShardSample]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
        for sample in sorted(samples, key=lambda s: s.key):
            for ext, data in zip(FIELD.members, sample.payloads, strict=True):
                info = tarfile.TarInfo(f"{sample.key}.{ext}")
                info.size, info.mtime, info.mode = len(data), 0, MEMBER_MODE
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_shard_bytes_equal_tarfiles_and_offsets_point_at_the_data(tmp_path: Path) -> None:
    samples = [
        ShardSample("b", "s/b", (b"\x01" * 513, b'{"x":1}')),
        ShardSample("a" * 150, "s/long", (b"", b"{}")),  # a name only PAX can hold
        ShardSample("c", "s/c", (b"\x02" * 512, '{"t":"é"}'.encode())),
    ]
    lake = tmp_path / "lake"
    placed = write_shards(
        samples,
        lake / "shards" / "s" / "u",
        FIELD,
        lake_root=lake,
        index_row=lambda p: _Row(key=p.sample.key, shard=p.shard, offsets=[o for o, _ in p.ranges]),
        index_schema=pa.schema(
            [("key", pa.string()), ("shard", pa.string()), ("offsets", pa.list_(pa.int64()))]
        ),
        limits=ShardLimits(),
    )
    tar_path = lake / "shards" / "s" / "u" / "audio-000000.tar"
    data = tar_path.read_bytes()
    assert data == _tarfile_bytes(samples)
    for item in placed:
        assert isinstance(item, PlacedSample) and item.shard == "shards/s/u/audio-000000.tar"
        for (offset, size), payload in zip(item.ranges, item.sample.payloads, strict=True):
            assert data[offset : offset + size] == payload
