"""Read-only SQL over the lake with DuckDB.

Views (today): `manifest_rows` (every manifest row), `manifests` (rows that
passed ingest) and `rejections` (rows ingest rejected, with `reject_reason` and
`reject_message`). Only read statements are accepted.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from pipelines.lake import Lake
from schemas import MANIFEST_ARROW_SCHEMA

READ_STATEMENTS = {
    duckdb.StatementType.SELECT,
    duckdb.StatementType.EXPLAIN,
}


class QueryError(Exception):
    """A query was refused or failed; the message says why."""


def lake_connection(lake: Lake) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with views over the lake's Parquet files."""
    con = duckdb.connect(":memory:")
    manifests = sorted((lake.root / "manifests").glob("*/*.parquet"))
    if manifests:
        files = ", ".join("'" + str(p).replace("'", "''") + "'" for p in manifests)
        con.execute(f"CREATE VIEW manifest_rows AS SELECT * FROM read_parquet([{files}])")
    else:
        con.register(
            "_empty_manifest",
            pa.table({n: [] for n in MANIFEST_ARROW_SCHEMA.names}, schema=MANIFEST_ARROW_SCHEMA),
        )
        con.execute("CREATE VIEW manifest_rows AS SELECT * FROM _empty_manifest")
    con.execute(
        "CREATE VIEW manifests AS SELECT * EXCLUDE (status, reject_reason, reject_message)"
        " FROM manifest_rows WHERE status = 'ok'"
    )
    con.execute("CREATE VIEW rejections AS SELECT * FROM manifest_rows WHERE status = 'rejected'")
    return con


def run_query(lake: Lake, sql: str) -> pa.Table:
    """Run one read-only SQL statement over the lake views; return the result as Arrow."""
    con = lake_connection(lake)
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as error:
        raise QueryError(f"cannot parse SQL: {error}") from error
    if len(statements) != 1:
        raise QueryError(f"expected one SQL statement, got {len(statements)}")
    if statements[0].type not in READ_STATEMENTS:
        raise QueryError(f"only read queries are allowed here, not {statements[0].type.name}")
    try:
        return con.sql(sql).to_arrow_table()
    except duckdb.Error as error:
        raise QueryError(str(error)) from error
    finally:
        con.close()


SUMMARY_SQL = """
SELECT source,
       count(*) AS inputs,
       count(*) FILTER (WHERE status = 'ok') AS ok,
       count(*) FILTER (WHERE status = 'rejected') AS rejected,
       round(coalesce(sum(duration_s) FILTER (WHERE status = 'ok'), 0) / 3600, 4) AS ok_hours,
       string_agg(DISTINCT language, ',' ORDER BY language)
           FILTER (WHERE status = 'ok' AND language IS NOT NULL) AS languages
FROM manifest_rows GROUP BY source ORDER BY source
"""

REJECTIONS_SQL = """
SELECT source, reject_reason, count(*) AS n FROM manifest_rows
WHERE status = 'rejected' GROUP BY ALL ORDER BY source, reject_reason
"""
