"""The lake: one folder of immutable per-unit files, written atomically.

Every writer goes through `atomic_write`: the bytes land in a temporary file
in the destination folder and are renamed into place only when complete, so a
reader never sees half a file and a killed step leaves nothing a re-run trips
over. When the new bytes equal the file already there, the file is left alone
(its mtime too), so an unchanged re-run changes nothing on disk.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.hashing import file_sha256

TMP_SUFFIX = ".tmp"


@contextlib.contextmanager
def atomic_write(path: Path) -> Iterator[io.BufferedWriter]:
    """Open a temporary file next to `path`; rename it onto `path` when the block succeeds.

    On any exception the temporary file is removed and `path` is untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists() and file_sha256(path) == file_sha256(tmp):
            tmp.unlink()
            return
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_write(path) as handle:
        handle.write(data)


def write_parquet_atomic(path: Path, table: pa.Table) -> None:
    """Write `table` as Parquet to `path` atomically and deterministically.

    Fixed writer settings make identical tables give identical bytes.
    """
    with atomic_write(path) as handle:
        pq.write_table(
            table,
            handle,
            compression="zstd",
            use_dictionary=True,
            write_statistics=True,
            row_group_size=64 * 1024,
        )


def remove_stale_temporaries(folder: Path) -> int:
    """Delete temporary files a killed writer left in `folder`; return how many."""
    removed = 0
    if folder.is_dir():
        for tmp in folder.rglob(f".*{TMP_SUFFIX}"):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed
