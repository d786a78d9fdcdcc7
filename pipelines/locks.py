"""An exclusive lock held by one process, naming its holder: flock on a small file.

Used for the catalogue's single writer and for one `voxlake run` per project. The
lock dies with its process (flock), and the file holds the holder's pid so whoever
is refused can say who holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path


class LockHeldError(RuntimeError):
    """Another process holds the lock; `holder` is its pid as it wrote it (or "unknown")."""

    def __init__(self, path: Path, holder: str) -> None:
        self.path = path
        self.holder = holder
        super().__init__(f"process {holder} holds {path}")


@contextlib.contextmanager
def process_lock(path: Path, wait_s: float = 0.0) -> Iterator[None]:
    """Hold `path` exclusively, waiting up to `wait_s` seconds; LockHeldError after that."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    raise LockHeldError(path, handle.read().strip() or "unknown") from None
                time.sleep(0.1)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
