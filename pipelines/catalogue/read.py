"""Reading the catalogue: read-only connections and one-statement queries.

Everyone but the two writers in `pipelines/catalogue/build.py` reads through
these; many readers may hold the file at once.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

from pipelines.catalogue.errors import CatalogueError
from pipelines.catalogue.lock import DEFAULT_LOCK_WAIT_S, connect_catalogue
from pipelines.lake.views import read_only_query


def open_catalogue_readonly(
    path: Path, *, wait_s: float = DEFAULT_LOCK_WAIT_S
) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the catalogue at `path` (DuckDB `read_only=True`).

    Many readers may hold the file at once; an update in progress holds it
    exclusively, so a reader waits up to `wait_s` seconds for it to finish, then
    raises `CatalogueLockedError`. A missing file is a `CatalogueError`.
    """
    path = Path(path)
    if not path.exists():
        raise CatalogueError(
            f"no catalogue at {path}: build it first (rebuild_catalogue, or materialize the "
            "catalogue asset)"
        )
    return connect_catalogue(path, read_only=True, wait_s=wait_s)


def query_catalogue(path: Path, sql: str) -> pa.Table:
    """Run one read-only SQL statement (SELECT or EXPLAIN) on the catalogue; return Arrow.

    Raises `QueryError` for anything else (several statements, writes, DDL) or when
    the query fails, `CatalogueError` when the catalogue cannot be opened.
    """
    return read_only_query(open_catalogue_readonly(path), sql)
