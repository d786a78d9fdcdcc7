"""Views of the lake before any catalogue exists: the rows steps read, and read-only SQL.

Rows of one unit, as the steps read them (polars), with one column naming:
`duration_s` is always the measured duration (s) and `declared_duration_s` the one
the source declares (the manifest's `duration_s`):
- `unit_manifest`: the unit's manifest rows (what the quality step judges);
- `decided_rows`: every quality decision joined with its manifest row (text,
  speaker, split, audio reference), what the quality report reads;
- `accepted_rows`: the same for the accepted utterances only, what the tokens and
  shards steps read.

SQL (DuckDB) views for `voxlake query`: `manifest_rows` (every manifest row),
`manifests` (rows that passed ingest), `ingest_rejections` (rows ingest rejected,
with `reject_reason` and `reject_message`; the catalogue's `rejections` holds every
stage's), `quality` (one decision per utterance: measures, status, rule, value,
threshold, policy version) and `accepted` (manifest fields and measures of the
accepted utterances). Only read statements are accepted.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa

from pipelines.lake.paths import Lake
from schemas import MANIFEST_ARROW_SCHEMA, QUALITY_ARROW_SCHEMA

READ_STATEMENTS = {
    duckdb.StatementType.SELECT,
    duckdb.StatementType.EXPLAIN,
}


class QueryError(Exception):
    """A query was refused or failed; the message says why."""


# What a decided row takes from the manifest besides the declared duration: what is
# said, by whom, in which split, and where the audio is.
DESCRIPTION_COLUMNS = (
    "text",
    "speaker",
    "split",
    "audio_path",
    "audio_member",
    "offset_s",
    "is_segment",
)


def unit_manifest(lake: Lake, source: str, unit: str) -> pl.DataFrame:
    """One unit's manifest rows, in file order, with `duration_s` named `declared_duration_s`.

    Raises FileNotFoundError when the unit has no manifest.
    """
    return pl.read_parquet(lake.manifest(source, unit)).rename(
        {"duration_s": "declared_duration_s"}
    )


def decided_rows(lake: Lake, source: str, unit: str) -> pl.DataFrame:
    """Every quality decision of one unit joined with its manifest row, in file order.

    Columns: every `QualityRecord` column, with `duration_s` the measured duration
    (null where the audio was never measured) and `declared_duration_s` the
    manifest's, plus `DESCRIPTION_COLUMNS` from the manifest. Raises
    FileNotFoundError when the unit has no quality file or its quality file has no
    manifest (the lake is inconsistent), and ValueError when the join does not give
    exactly one row per decision.
    """
    quality_file = lake.quality(source, unit)
    manifest_file = lake.manifest(source, unit)
    if not manifest_file.exists():
        raise FileNotFoundError(
            f"{quality_file} has no manifest {manifest_file}: the lake is inconsistent; "
            "re-materialize the unit's manifest and quality"
        )
    decisions = pl.read_parquet(quality_file)
    described = unit_manifest(lake, source, unit).select(
        "utterance_id", "declared_duration_s", *DESCRIPTION_COLUMNS
    )
    # The decision's own copy of the declared duration gives way to the manifest's,
    # which is what the manifest step declared and what every step cuts by.
    rows = decisions.drop("declared_duration_s").join(
        described, on="utterance_id", how="left", maintain_order="left"
    )
    if rows.height != decisions.height:
        raise ValueError(
            f"joining {decisions.height} quality decisions of {unit} with their manifest gave "
            f"{rows.height} rows: the manifest holds an utterance id twice"
        )
    return rows


def accepted_rows(lake: Lake, source: str, unit: str) -> pl.DataFrame:
    """The unit's accepted utterances, as `decided_rows` gives them, sorted by utterance id."""
    rows = decided_rows(lake, source, unit)
    return rows.filter(pl.col("status") == "accepted").sort("utterance_id")


def _parquet_view(
    con: duckdb.DuckDBPyConnection, name: str, folder: Path, schema: pa.Schema
) -> None:
    files = sorted(folder.glob("*/*.parquet"))
    if files:
        listed = ", ".join("'" + str(p).replace("'", "''") + "'" for p in files)
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet([{listed}])")
    else:
        # An empty lake still answers queries, with the right columns.
        con.register(f"_empty_{name}", schema.empty_table())
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM _empty_{name}")


def lake_connection(lake: Lake) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with views over the lake's Parquet files."""
    con = duckdb.connect(":memory:")
    _parquet_view(con, "manifest_rows", lake.manifests_dir(), MANIFEST_ARROW_SCHEMA)
    _parquet_view(con, "quality", lake.quality_dir(), QUALITY_ARROW_SCHEMA)
    con.execute(
        "CREATE VIEW manifests AS SELECT * EXCLUDE (status, reject_reason, reject_message)"
        " FROM manifest_rows WHERE status = 'ok'"
    )
    con.execute(
        "CREATE VIEW ingest_rejections AS SELECT * FROM manifest_rows WHERE status = 'rejected'"
    )
    con.execute(
        "CREATE VIEW accepted AS SELECT m.*, q.* EXCLUDE (utterance_id, source, unit, language,"
        " duration_s, status, reject_stage, reject_rule, reject_value, reject_threshold,"
        " reject_message, failed_rules), q.duration_s AS measured_duration_s"
        " FROM manifests m JOIN quality q USING (utterance_id) WHERE q.status = 'accepted'"
    )
    return con


def read_only_query(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    """Run `sql` on `con` if it is exactly one read statement (SELECT/EXPLAIN); else QueryError.

    Closes `con` afterwards.
    """
    try:
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


def run_query(lake: Lake, sql: str) -> pa.Table:
    """Run one read-only SQL statement over the lake views; return the result as Arrow."""
    return read_only_query(lake_connection(lake), sql)


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

QUALITY_SUMMARY_SQL = """
SELECT source,
       count(*) FILTER (WHERE status = 'accepted') AS accepted,
       count(*) FILTER (WHERE status = 'rejected') AS rejected,
       round(coalesce(sum(duration_s) FILTER (WHERE status = 'accepted'), 0) / 3600, 4)
           AS accepted_hours,
       round(median(wada_snr_db) FILTER (WHERE status = 'accepted'), 1) AS median_snr_db,
       string_agg(DISTINCT policy_version, ',') AS policy
FROM quality GROUP BY source ORDER BY source
"""

QUALITY_REJECTIONS_SQL = """
SELECT source, reject_stage AS stage, reject_rule AS rule, count(*) AS n FROM quality
WHERE status = 'rejected' AND reject_stage <> 'ingest' GROUP BY ALL ORDER BY ALL
"""
