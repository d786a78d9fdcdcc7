"""One writer, many readers: the catalogue's writer lock and its DuckDB connections.

Writers (`rebuild_catalogue`, `update_catalogue`) exclude each other with a lock
file beside the catalogue (`<catalogue>.lock`, held with `flock`, so it is
released when its process dies) and with DuckDB's own file lock; a conflict
that outlasts the wait is a `CatalogueLockedError` that says who holds what.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb

from pipelines.catalogue.errors import CatalogueLockedError
from pipelines.locks import LockHeldError, process_lock

DEFAULT_LOCK_WAIT_S = 10.0
"""How long a writer or reader waits for a conflicting lock before giving up (seconds)."""


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _is_lock_error(error: duckdb.Error) -> bool:
    return isinstance(error, duckdb.IOException) and "lock" in str(error).lower()


@contextlib.contextmanager
def writer_lock(path: Path, wait_s: float) -> Iterator[None]:
    """Hold `<catalogue>.lock` exclusively (flock; released when the process dies).

    Waits up to `wait_s` seconds for another writer, then raises `CatalogueLockedError`
    naming the process that holds the lock.
    """
    lock_path = _lock_path(path)
    try:
        with process_lock(lock_path, wait_s):
            yield
    except LockHeldError as error:
        raise CatalogueLockedError(
            f"a catalogue writer is already running (process {error.holder} holds "
            f"{lock_path}); only one process may write {path.name} at a time: "
            "wait for it to finish"
        ) from None


def connect_catalogue(path: Path, read_only: bool, wait_s: float) -> duckdb.DuckDBPyConnection:
    """Open `path`, waiting up to `wait_s` for another process's conflicting lock."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.ConnectionException as error:
            # DuckDB shares one database per file within a process; a connection of the
            # other mode (read-only vs read-write) already open here blocks this one.
            raise CatalogueLockedError(
                f"this process already holds catalogue {path} open in another mode; "
                f"close that connection first ({error})"
            ) from error
        except duckdb.Error as error:
            if not _is_lock_error(error):
                raise
            if time.monotonic() >= deadline:
                if read_only:
                    message = (
                        f"catalogue {path} is being written by another process (a catalogue "
                        "writer is running); try again when it finishes"
                    )
                else:
                    message = (
                        f"catalogue {path} is locked by another process: a catalogue writer "
                        "is already running, or a reader holds it open (DuckDB allows one "
                        "writing process per file)"
                    )
                raise CatalogueLockedError(f"{message}. DuckDB: {error}") from error
            time.sleep(0.1)
