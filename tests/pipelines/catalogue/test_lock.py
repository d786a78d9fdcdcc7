"""One writer, many readers: readers cannot write, a second writer gets a clear error,
a rebuild replaces the file under open readers.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from catalogue_lake import REPO

from pipelines.catalogue.build import rebuild_catalogue, update_catalogue
from pipelines.catalogue.errors import CatalogueError, CatalogueLockedError
from pipelines.catalogue.read import open_catalogue_readonly, query_catalogue
from pipelines.lake.views import QueryError
from pipelines.project import Project

# ---------------------------------------------------------------------------
# One writer, many readers


def test_readers_cannot_write(built: Path) -> None:
    con = open_catalogue_readonly(built)
    try:
        with pytest.raises(duckdb.Error, match="read-only"):
            con.execute("DELETE FROM utterances")
    finally:
        con.close()
    with pytest.raises(QueryError, match="only read queries"):
        query_catalogue(built, "DELETE FROM utterances")
    with pytest.raises(QueryError, match="one SQL statement"):
        query_catalogue(built, "SELECT 1; SELECT 2")
    with pytest.raises(QueryError):
        query_catalogue(built, "SELECT no_such_column FROM utterances")
    assert query_catalogue(built, "SELECT count(*) AS n FROM accepted").num_rows == 1
    with pytest.raises(CatalogueError, match="no catalogue"):
        open_catalogue_readonly(built.parent / "missing.duckdb")


def _hold(script: str) -> subprocess.Popen[str]:
    """A second process that runs `script`, says 'ready', and holds on until stdin closes."""
    process = subprocess.Popen(
        [sys.executable, "-c", script + "\nprint('ready', flush=True)\nsys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


def _release_process(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.close()
    assert process.wait(timeout=30) == 0


def test_a_second_writer_gets_a_clear_error(copied_lake: Project) -> None:
    path = copied_lake.catalogue_path
    update_catalogue(copied_lake)
    # Another process with the file open read-write (a writer, or a DuckDB shell).
    holder = _hold(f"import sys, duckdb\ncon = duckdb.connect({str(path)!r})")
    try:
        with pytest.raises(CatalogueLockedError, match="writer is already running"):
            update_catalogue(copied_lake, lock_wait_s=0)
        with pytest.raises(CatalogueLockedError, match="writer is already running"):
            rebuild_catalogue(copied_lake, lock_wait_s=0)
        with pytest.raises(CatalogueLockedError, match="being written"):
            open_catalogue_readonly(path, wait_s=0)
    finally:
        _release_process(holder)
    # Another voxlake writer, holding the writer lock.
    holder = _hold(
        "import sys\nfrom pathlib import Path\nfrom pipelines.catalogue.lock import writer_lock\n"
        f"lock = writer_lock(Path({str(path)!r}), 0)\nlock.__enter__()"
    )
    try:
        with pytest.raises(CatalogueLockedError, match=f"process {holder.pid} holds"):
            update_catalogue(copied_lake, lock_wait_s=0)
        with pytest.raises(CatalogueLockedError, match="writer is already running"):
            rebuild_catalogue(copied_lake, lock_wait_s=0)
        # Readers are not affected by a writer that has not opened the file yet.
        assert query_catalogue(path, "SELECT 1 AS one").num_rows == 1
    finally:
        _release_process(holder)
    assert update_catalogue(copied_lake, lock_wait_s=0).mode == "update"


def test_a_rebuild_replaces_the_file_under_open_readers(copied_lake: Project) -> None:
    path = copied_lake.catalogue_path
    update_catalogue(copied_lake)
    reader = _hold(f"import sys, duckdb\ncon = duckdb.connect({str(path)!r}, read_only=True)")
    try:
        # An in-place update needs the file to itself; a rebuild renames a new file over it.
        with pytest.raises(CatalogueLockedError, match="reader holds it open"):
            update_catalogue(copied_lake, lock_wait_s=0)
        copied_lake.lake.eval_record("eval-0001").unlink()
        stats = rebuild_catalogue(copied_lake, lock_wait_s=0)
        assert stats.n_evals == 0
    finally:
        _release_process(reader)
    assert query_catalogue(path, "SELECT * FROM evals").num_rows == 0
