"""The catalogue's tables and views: their names, columns and DuckDB types.

The tables that mirror a contract of `schemas/` take their columns from it:
`releases`, `release_shards` and `release_utterances` from `schemas/release.py`,
`runs`, `evals` and `eval_utterances` from `schemas/training.py` (one column per model
field, in the model's order, typed through the model's Arrow schema), so a field added to a
contract becomes a column without a change here. The other tables join or
summarise several lake files and are written out. Every table and view is
documented in `docs/catalogue.md`.
"""

from __future__ import annotations

import types
import typing

import duckdb
import pyarrow as pa
from pydantic import BaseModel, create_model

from schemas.arrow import arrow_schema
from schemas.release import RELEASE_UTTERANCE_ARROW_SCHEMA, Release, ReleaseShard
from schemas.training import EVAL_UTTERANCE_ARROW_SCHEMA, EvalRecord, RunRecord

CATALOGUE_SCHEMA_VERSION = 4
"""Bumped whenever a table or view changes; `update_catalogue` rebuilds older files."""

# DuckDB's type for each Arrow type a contract field can have as a catalogue column.
_DUCKDB_OF_ARROW: dict[pa.DataType, str] = {
    pa.string(): "VARCHAR",
    pa.int64(): "BIGINT",
    pa.float64(): "DOUBLE",
    pa.bool_(): "BOOLEAN",
    pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ",
    pa.list_(pa.string()): "VARCHAR[]",
}

RELEASE_RENAMED = {"where": "where_sql"}
"""`Release` fields stored under another column name (`where` is an SQL keyword)."""

RELEASE_SHARD_KINDS = {"shards": "audio", "code_shards": "codes"}
"""`Release` fields listing shards, and the `kind` their rows have in `release_shards`."""

RELEASE_NESTED = frozenset(RELEASE_SHARD_KINDS)
"""`Release` fields stored as rows of their own table (`release_shards`), not as columns."""


def arrow_columns(schema: pa.Schema) -> list[tuple[str, str]]:
    """The catalogue columns of an Arrow schema: (name, DuckDB type), in the schema's order."""
    columns = []
    for arrow_field in schema:
        duck_type = _DUCKDB_OF_ARROW.get(arrow_field.type)
        if duck_type is None:
            raise TypeError(f"no catalogue column type for {arrow_field.name}: {arrow_field.type}")
        columns.append((arrow_field.name, duck_type))
    return columns


def _is_mapping(annotation: object) -> bool:
    """Whether a field holds a free-form mapping (`dict[...]`, possibly `| None`)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_is_mapping(a) for a in typing.get_args(annotation) if a is not type(None))
    return annotation is dict or typing.get_origin(annotation) is dict


def model_columns(
    model: type[BaseModel],
    *,
    renamed: dict[str, str] | None = None,
    nested: frozenset[str] = frozenset(),
) -> list[tuple[str, str]]:
    """The catalogue columns of a contract: one per field, in the model's order.

    Types come from the model's Arrow schema (`schemas.arrow.arrow_schema`); a
    mapping field (`dict[...]`, which has no Arrow type) is a DuckDB `JSON` column.
    `renamed` maps field names to column names; `nested` fields are left out.

    >>> from pydantic import BaseModel
    >>> class Run(BaseModel):
    ...     run_id: str
    ...     world_size: int = 1
    ...     metrics: dict[str, float] = {}
    >>> model_columns(Run)
    [('run_id', 'VARCHAR'), ('world_size', 'BIGINT'), ('metrics', 'JSON')]
    """
    renamed = renamed or {}
    fields = {n: f for n, f in model.model_fields.items() if n not in nested}
    plain = create_model(  # the model without its mapping fields, for its Arrow schema
        f"_{model.__name__}Columns",
        **{n: (f.annotation, ...) for n, f in fields.items() if not _is_mapping(f.annotation)},
    )
    typed = dict(arrow_columns(arrow_schema(plain)))
    return [
        (renamed.get(n, n), "JSON" if _is_mapping(f.annotation) else typed[n])
        for n, f in fields.items()
    ]


UTTERANCE_COLUMNS: list[tuple[str, str]] = [
    # manifest (ingest)
    ("utterance_id", "VARCHAR"),
    ("source", "VARCHAR"),
    ("corpus_kind", "VARCHAR"),
    ("unit", "VARCHAR"),
    ("split", "VARCHAR"),
    ("subsets", "VARCHAR[]"),
    ("speaker", "VARCHAR"),
    ("language", "VARCHAR"),
    ("text", "VARCHAR"),
    ("audio_path", "VARCHAR"),
    ("audio_member", "VARCHAR"),
    ("offset_s", "DOUBLE"),
    ("is_segment", "BOOLEAN"),
    ("declared_sample_rate_hz", "BIGINT"),
    ("extra", "JSON"),
    ("ingest_status", "VARCHAR"),
    # decision
    ("status", "VARCHAR"),
    ("reject_stage", "VARCHAR"),
    ("reject_rule", "VARCHAR"),
    ("reject_value", "DOUBLE"),
    ("reject_threshold", "DOUBLE"),
    ("reject_message", "VARCHAR"),
    ("failed_rules", "VARCHAR[]"),
    ("policy_version", "VARCHAR"),
    # durations
    ("duration_s", "DOUBLE"),
    ("declared_duration_s", "DOUBLE"),
    ("measured_duration_s", "DOUBLE"),
    # quality measures
    ("source_sample_rate_hz", "BIGINT"),
    ("source_channels", "BIGINT"),
    ("wada_snr_db", "DOUBLE"),
    ("stnr_snr_db", "DOUBLE"),
    ("clipping_ratio", "DOUBLE"),
    ("longest_clipped_run", "BIGINT"),
    ("silence_ratio", "DOUBLE"),
    ("leading_silence_s", "DOUBLE"),
    ("trailing_silence_s", "DOUBLE"),
    ("rms_dbfs", "DOUBLE"),
    ("peak_dbfs", "DOUBLE"),
    ("dc_offset", "DOUBLE"),
    ("bandwidth_hz", "DOUBLE"),
    ("non_finite_samples", "BIGINT"),
    ("chars_per_s", "DOUBLE"),
    ("pcm_sha256", "VARCHAR"),
    # codes (the configured tokenizer's code index)
    ("n_codes", "BIGINT"),
    ("tokenizer_sha256", "VARCHAR"),
    ("tokenizer_is_demo", "BOOLEAN"),
    # shards
    ("key", "VARCHAR"),
    ("shard", "VARCHAR"),
    ("codes_shard", "VARCHAR"),
]
"""The `utterances` table: a unit's manifest, quality, audio index and code index rows joined."""

QUALITY_MEASURES = [
    "source_sample_rate_hz",
    "source_channels",
    "wada_snr_db",
    "stnr_snr_db",
    "clipping_ratio",
    "longest_clipped_run",
    "silence_ratio",
    "leading_silence_s",
    "trailing_silence_s",
    "rms_dbfs",
    "peak_dbfs",
    "dc_offset",
    "bandwidth_hz",
    "non_finite_samples",
    "chars_per_s",
    "pcm_sha256",
]
"""Columns of `utterances` copied unchanged from the unit's quality file."""

MANIFEST_FIELDS = [
    "utterance_id",
    "source",
    "corpus_kind",
    "split",
    "subsets",
    "speaker",
    "language",
    "text",
    "audio_path",
    "audio_member",
    "offset_s",
    "is_segment",
    "declared_sample_rate_hz",
    "extra",
]
"""Columns of `utterances` copied unchanged from the unit's manifest."""

TABLES: dict[str, list[tuple[str, str]]] = {
    "catalogue_info": [("name", "VARCHAR"), ("value", "VARCHAR")],
    "sources": [("name", "VARCHAR"), ("kind", "VARCHAR"), ("path", "VARCHAR"), ("options", "JSON")],
    "units": [
        ("unit", "VARCHAR"),
        ("source", "VARCHAR"),
        ("n_inputs", "BIGINT"),
        ("declared_duration_s", "DOUBLE"),
        ("items_sha256", "VARCHAR"),
    ],
    "utterances": UTTERANCE_COLUMNS,
    "shards": [
        ("shard", "VARCHAR"),
        ("source", "VARCHAR"),
        ("unit", "VARCHAR"),
        ("sha256", "VARCHAR"),
        ("bytes", "BIGINT"),
        ("n_samples", "BIGINT"),
        ("duration_s", "DOUBLE"),
    ],
    "code_shards": [
        ("shard", "VARCHAR"),
        ("source", "VARCHAR"),
        ("unit", "VARCHAR"),
        ("tokenizer_sha256", "VARCHAR"),
        ("tokenizer_is_demo", "BOOLEAN"),
        ("sha256", "VARCHAR"),
        ("bytes", "BIGINT"),
        ("n_samples", "BIGINT"),
        ("n_codes", "BIGINT"),
        ("duration_s", "DOUBLE"),
        ("audio_shard", "VARCHAR"),
    ],
    "releases": model_columns(Release, renamed=RELEASE_RENAMED, nested=RELEASE_NESTED),
    "release_shards": [
        ("release", "VARCHAR"),
        ("kind", "VARCHAR"),
        *model_columns(ReleaseShard),
    ],
    "release_utterances": [("release", "VARCHAR"), *arrow_columns(RELEASE_UTTERANCE_ARROW_SCHEMA)],
    "runs": model_columns(RunRecord),
    "evals": model_columns(EvalRecord),
    "eval_utterances": arrow_columns(EVAL_UTTERANCE_ARROW_SCHEMA),
    "lake_files": [
        ("path", "VARCHAR"),
        ("kind", "VARCHAR"),
        ("entity", "VARCHAR"),
        ("size_bytes", "BIGINT"),
        ("mtime_ns", "BIGINT"),
        ("inode", "BIGINT"),
    ],
}

SNR_BUCKET_DB = 5
"""Width of the WADA-SNR buckets of `snr_histogram` and `eval_by_snr` (dB)."""

SNR_BUCKET_SQL = f"floor(u.wada_snr_db / {SNR_BUCKET_DB}) * {SNR_BUCKET_DB}"
"""Lower edge of an utterance's 5 dB WADA-SNR bucket (`u` is the `utterances` row)."""

DURATION_BUCKETS_S: tuple[float, ...] = (0.0, 2.0, 5.0, 10.0, 20.0, 30.0)
"""Lower edges of the duration buckets of `eval_by_duration` (s); the last is open-ended."""


def _duration_bucket_sql(column: str) -> str:
    """SQL of the lower edge of `column`'s duration bucket (`DURATION_BUCKETS_S`)."""
    edges = sorted(DURATION_BUCKETS_S, reverse=True)
    cases = " ".join(f"WHEN {column} >= {edge} THEN {edge}" for edge in edges)
    return f"CASE {cases} END"


DURATION_BUCKET_SQL = _duration_bucket_sql("u.duration_s")
"""Lower edge of an utterance's duration bucket (`u` is the `utterances` row)."""

# Totals of a group of `eval_utterances` rows `e`: the corpus error rate is total errors
# over total reference units (never the mean of per-utterance rates).
_EVAL_TOTALS = """count(*) AS n_utterances, sum(e.n_ref_units) AS n_ref_units,
               sum(e.n_errors) AS n_errors, sum(e.substitutions) AS substitutions,
               sum(e.deletions) AS deletions, sum(e.insertions) AS insertions,
               sum(e.n_errors) / nullif(sum(e.n_ref_units), 0) AS error_rate,
               avg(e.loss) AS mean_loss"""


def _eval_breakdown_sql(columns: str, group: str, where: str = "TRUE") -> str:
    """A view of error rates per evaluation, task, metric and `columns` (over `utterances`)."""
    return f"""
        SELECT e.eval_id, e.task, e.metric, {columns}, {_EVAL_TOTALS}
        FROM eval_utterances e JOIN utterances u ON u.utterance_id = e.utterance_id
        WHERE {where}
        GROUP BY e.eval_id, e.task, e.metric, {group}"""


EVAL_VIEWS: dict[str, str] = {
    "eval_error_rates": f"""
        SELECT e.eval_id, e.eval_set, e.task, e.metric, {_EVAL_TOTALS}
        FROM eval_utterances e GROUP BY e.eval_id, e.eval_set, e.task, e.metric""",
    "eval_by_source": _eval_breakdown_sql("u.source", "u.source"),
    "eval_by_language": _eval_breakdown_sql("u.language", "u.language"),
    "eval_by_speaker": _eval_breakdown_sql("u.source, u.speaker", "u.source, u.speaker"),
    "eval_by_snr": _eval_breakdown_sql(
        f"{SNR_BUCKET_SQL} AS snr_db_from, {SNR_BUCKET_SQL} + {SNR_BUCKET_DB} AS snr_db_to",
        "snr_db_from, snr_db_to",
        "u.wada_snr_db IS NOT NULL",
    ),
    "eval_by_duration": _eval_breakdown_sql(
        f"{DURATION_BUCKET_SQL} AS duration_s_from", "duration_s_from", "u.duration_s IS NOT NULL"
    ),
}
"""Error rates of every evaluation per set, and broken down by the data's own properties:
source, language, speaker, 5 dB WADA-SNR bucket, duration bucket (docs/evaluation.md)."""

VIEWS: dict[str, str] = {
    "accepted": "SELECT * FROM utterances WHERE status = 'accepted'",
    "rejections": """
        SELECT utterance_id, source, unit, language, speaker, reject_stage, reject_rule,
               reject_value, reject_threshold, reject_message, failed_rules, policy_version,
               duration_s, audio_path, audio_member, offset_s
        FROM utterances WHERE status = 'rejected'""",
    "hours_by_source_language_status": """
        SELECT source, language, status, count(*) AS n_utterances,
               coalesce(sum(duration_s), 0) / 3600 AS hours
        FROM utterances GROUP BY source, language, status""",
    "snr_histogram": """
        SELECT source, floor(wada_snr_db / 5) * 5 AS snr_db_from,
               floor(wada_snr_db / 5) * 5 + 5 AS snr_db_to, count(*) AS n_utterances,
               coalesce(sum(duration_s), 0) / 3600 AS hours
        FROM utterances WHERE wada_snr_db IS NOT NULL
        GROUP BY source, snr_db_from, snr_db_to""",
    "unit_progress": """
        WITH counted AS (
            SELECT unit, any_value(source) AS source, count(*) AS n_manifest_rows,
                   count(*) FILTER (WHERE status = 'accepted') AS n_accepted,
                   count(*) FILTER (WHERE status = 'rejected') AS n_rejected,
                   count(*) FILTER (WHERE status = 'pending') AS n_pending,
                   count(n_codes) AS n_tokenized, count(key) AS n_sharded
            FROM utterances GROUP BY unit)
        SELECT coalesce(u.unit, c.unit) AS unit, coalesce(u.source, c.source) AS source,
               u.n_inputs, coalesce(c.n_manifest_rows, 0) AS n_manifest_rows,
               coalesce(c.n_accepted, 0) AS n_accepted, coalesce(c.n_rejected, 0) AS n_rejected,
               coalesce(c.n_pending, 0) AS n_pending, coalesce(c.n_tokenized, 0) AS n_tokenized,
               coalesce(c.n_sharded, 0) AS n_sharded
        FROM units u FULL OUTER JOIN counted c ON c.unit = u.unit""",
    **EVAL_VIEWS,
}


def _columns_sql(columns: list[tuple[str, str]]) -> str:
    return ", ".join(f"{name} {kind}" for name, kind in columns)


def create_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create every table and view of the catalogue, empty, on `con`."""
    for table, columns in TABLES.items():
        con.execute(f"CREATE TABLE {table} ({_columns_sql(columns)})")
    for view, sql in VIEWS.items():
        con.execute(f"CREATE VIEW {view} AS {sql.strip()}")


def described_columns(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[str, str]]]:
    """Each table's columns on `con` as (name, type), in order, types as DuckDB spells them."""
    rows = con.execute(
        """
        SELECT table_name, column_name, data_type FROM duckdb_columns()
        WHERE database_name = current_database() AND schema_name = 'main'
        ORDER BY table_name, column_index
        """
    ).fetchall()
    columns: dict[str, list[tuple[str, str]]] = {}
    for table, column, duck_type in rows:
        columns.setdefault(table, []).append((column, duck_type))
    return columns


def tables_unlike_definitions(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The tables on `con` whose columns differ from `TABLES` (e.g. a contract gained a field)."""
    # DuckDB spells types its own way (TIMESTAMPTZ is `TIMESTAMP WITH TIME ZONE`): compare
    # with the tables as DuckDB creates them from the definitions.
    with duckdb.connect() as fresh:
        create_tables(fresh)
        expected = described_columns(fresh)
    found = described_columns(con)
    return [table for table in TABLES if found.get(table) != expected[table]]


_ARROW_OF_DUCKDB = {
    "VARCHAR": pa.string(),
    "JSON": pa.string(),
    "BIGINT": pa.int64(),
    "DOUBLE": pa.float64(),
    "BOOLEAN": pa.bool_(),
    "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
    "VARCHAR[]": pa.list_(pa.string()),
}


def table_arrow_schema(table: str) -> pa.Schema:
    """The Arrow schema of a catalogue table's columns (for inserting Python rows)."""
    return pa.schema([(name, _ARROW_OF_DUCKDB[kind]) for name, kind in TABLES[table]])
