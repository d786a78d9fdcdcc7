"""Lake writes are atomic and idempotent: no half files, no rewrite of identical bytes."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pytest

from pipelines.lake.atomic import atomic_write, remove_stale_temporaries, write_parquet_atomic


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "unit.parquet"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(target) as handle:
        handle.write(b"half of the new")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unit.parquet"]


def test_failed_first_write_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "unit.parquet"
    with pytest.raises(RuntimeError), atomic_write(target) as handle:
        handle.write(b"partial")
        raise RuntimeError("boom")
    assert list(target.parent.iterdir()) == []


def test_identical_rewrite_keeps_file_untouched(tmp_path: Path) -> None:
    target = tmp_path / "m.parquet"
    table = pa.table({"utterance_id": ["a/1", "a/2"], "duration_s": [1.5, None]})
    write_parquet_atomic(target, table)
    os.utime(target, (1_000_000, 1_000_000))
    write_parquet_atomic(target, table)
    assert target.stat().st_mtime == 1_000_000
    first = target.read_bytes()
    write_parquet_atomic(target, pa.table({"utterance_id": ["a/1"], "duration_s": [1.0]}))
    assert target.read_bytes() != first


def test_parquet_bytes_are_deterministic(tmp_path: Path) -> None:
    table = pa.table({"x": list(range(1000)), "s": [str(i) for i in range(1000)]})
    write_parquet_atomic(tmp_path / "a.parquet", table)
    write_parquet_atomic(tmp_path / "b.parquet", table)
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


def test_stale_temporaries_are_removed(tmp_path: Path) -> None:
    (tmp_path / ".unit.parquet.abc.tmp").write_bytes(b"x")
    (tmp_path / "unit.parquet").write_bytes(b"y")
    assert remove_stale_temporaries(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["unit.parquet"]
