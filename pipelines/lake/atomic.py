"""The lake: one folder of immutable per-unit files, written atomically.

Every writer goes through `atomic_write`: the bytes land in a temporary file
in the destination folder and are renamed into place only when complete, so a
reader never sees half a file and a killed step leaves nothing a re-run trips
over. When the new bytes equal the file already there, the file is left alone
(its mtime too), so an unchanged re-run changes nothing on disk.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.hashing import file_sha256

TMP_SUFFIX = ".tmp"


# Errors of the write itself (not of what the caller read while writing): re-raised naming
# the file, since "No space left on device" alone does not say where.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG})


class LakeWriteError(OSError):
    """Writing a lake file failed (disk full, read-only, ...); the message names the file."""


def _process_umask() -> int:
    # os.umask can only be read by setting it; done once, before any writer thread runs.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _process_umask()
FILE_MODE = 0o666 & ~_UMASK
"""Mode of every lake file: what `open()` would give under the process umask.

`mkstemp` creates its file 0600 whatever the umask, so without a chmod a team
sharing the lake (or a reader in another account) could not open the shards.
"""


@contextlib.contextmanager
def atomic_write(path: Path) -> Iterator[io.BufferedWriter]:
    """Open a temporary file next to `path`; rename it onto `path` when the block succeeds.

    On any exception the temporary file is removed and `path` is untouched; an
    OSError (a full disk, a read-only lake) comes back as LakeWriteError naming `path`.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent
        )
    except OSError as error:
        raise _naming(error, path) from error
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), FILE_MODE)
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists() and file_sha256(path) == file_sha256(tmp):
            tmp.unlink()
            return
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if (
            isinstance(error, OSError)
            and not isinstance(error, LakeWriteError)
            and error.errno in WRITE_ERRNOS
        ):
            raise _naming(error, path) from error
        raise


def _naming(error: OSError, path: Path) -> LakeWriteError:
    """`error` as a LakeWriteError whose message says which file could not be written."""
    reason = error.strerror or str(error)
    return LakeWriteError(error.errno, f"cannot write {path}: {reason}")


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
