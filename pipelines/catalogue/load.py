"""Loading the catalogue's tables from the lake files, the same way for a rebuild and an update.

Why this module is long: every table's load (units, sources, releases, runs,
evaluations and their per-utterance scores) shares one delete-and-reload protocol and
one SQL vocabulary; split, the update and the rebuild could drift apart.

Each entity (work unit, source, release, run, evaluation) is loaded by deleting its
rows and re-reading its files, so an updated catalogue equals a rebuilt one.
Loading is vectorised: the unit tables are filled by `INSERT ... SELECT` over
`read_parquet` of the lake files, about a million utterances per statement (so
memory stays bounded), never row by row in Python; only the few JSON files of
releases, runs and evaluations are parsed in Python, each validated with its
contract. Shards themselves are never opened: their indexes say what they hold.

A unit's codes are those of its code index (the configured tokenizer's) only when
that index is aligned with the unit's audio index: the same keys, each in the code
shard of the audio shard it is in (same shard number). A code index that is not
(stale: the quality step rewrote the audio shards after a policy edit and the
tokens step has not run since) is not catalogued: the unit's utterances have no
codes until it has.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow as pa
from pydantic import ValidationError

from pipelines.catalogue.errors import CatalogueError
from pipelines.catalogue.scan import GROUP_OF_KIND, UNIT_KINDS, LakeFile
from pipelines.catalogue.tables import (
    CATALOGUE_SCHEMA_VERSION,
    MANIFEST_FIELDS,
    QUALITY_MEASURES,
    RELEASE_NESTED,
    RELEASE_RENAMED,
    RELEASE_SHARD_KINDS,
    TABLES,
    table_arrow_schema,
)
from pipelines.lake.paths import EVAL_UTTERANCES_SUFFIX, Lake
from pipelines.project import Project
from schemas import MANIFEST_ARROW_SCHEMA, QUALITY_ARROW_SCHEMA
from schemas.release import RELEASE_UTTERANCE_ARROW_SCHEMA, Release
from schemas.shards import CODE_INDEX_ARROW_SCHEMA, SHARD_INDEX_ARROW_SCHEMA
from schemas.training import EVAL_UTTERANCE_ARROW_SCHEMA, EvalRecord, RunRecord

BATCH_MANIFEST_BYTES = 64 * 2**20
"""Manifest bytes loaded per statement (about a million utterances): bounds the joins' memory."""


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


_EMPTY_SCHEMAS = {
    "manifest": MANIFEST_ARROW_SCHEMA,
    "quality": QUALITY_ARROW_SCHEMA,
    "shard_index": SHARD_INDEX_ARROW_SCHEMA,
    "code_index": CODE_INDEX_ARROW_SCHEMA,
    "release_utterances": RELEASE_UTTERANCE_ARROW_SCHEMA,
    "eval_utterances": EVAL_UTTERANCE_ARROW_SCHEMA,
}


def _parquet_relation(con: duckdb.DuckDBPyConnection, kind: str, paths: list[Path]) -> str:
    """SQL for the rows of `paths` plus a `filename` column; typed and empty for no paths."""
    if paths:
        listed = ", ".join(_sql_str(str(p)) for p in paths)
        return f"read_parquet([{listed}], filename = true, union_by_name = true)"
    con.register(f"_empty_{kind}", _EMPTY_SCHEMAS[kind].empty_table())
    return f"(SELECT *, NULL::VARCHAR AS filename FROM _empty_{kind})"


# The unit a row belongs to is the unit its file belongs to (by path), so deleting a
# unit's rows and re-reading its files always replace exactly the same rows.
_UNIT_OF_FILE = "parse_filename(filename, true)"
_UNIT_OF_INDEX = "parse_filename(parse_dirpath(filename))"


_SHARD_NUMBER = r"'-(\d+)\.tar$'"


def _unit_rows_sql(index: str, codes: str, tokenizer_sha256: str | None) -> str:
    """`WITH` tables `s` (audio index rows) and `c` (code index rows of aligned units only).

    A unit's code index is aligned when every audio sample has a code sample of the same
    key, utterance and tokenizer in the code shard of the same number that names the
    audio shard as its own, and no code sample lacks its audio sample.
    """
    tokenizer = _sql_str(tokenizer_sha256) if tokenizer_sha256 else "NULL"
    return f"""
s AS (
    SELECT {_UNIT_OF_INDEX} AS unit, utterance_id, key, shard FROM {index}
), c_all AS (
    SELECT {_UNIT_OF_INDEX} AS unit, utterance_id, key, shard AS codes_shard, audio_shard,
           n_codes, tokenizer_sha256, tokenizer_is_demo, shard_sha256, shard_bytes, duration_s,
           source
    FROM {codes}
), aligned AS (
    SELECT coalesce(s.unit, c_all.unit) AS unit
    FROM s FULL OUTER JOIN c_all ON c_all.unit = s.unit AND c_all.key = s.key
    GROUP BY ALL
    HAVING bool_and(
        s.key IS NOT NULL AND c_all.key IS NOT NULL
        AND c_all.utterance_id = s.utterance_id AND c_all.audio_shard = s.shard
        AND regexp_extract(c_all.codes_shard, {_SHARD_NUMBER}, 1)
            = regexp_extract(s.shard, {_SHARD_NUMBER}, 1)
        AND c_all.tokenizer_sha256 IS NOT DISTINCT FROM {tokenizer})
), c AS (
    SELECT * FROM c_all WHERE unit IN (SELECT unit FROM aligned)
)"""


def _utterances_insert_sql(
    manifests: str, quality: str, index: str, codes: str, tokenizer_sha256: str | None
) -> str:
    manifest_columns = ", ".join(MANIFEST_FIELDS)
    measures = ", ".join(QUALITY_MEASURES)
    return f"""
INSERT INTO utterances BY NAME
WITH m AS (
    SELECT {_UNIT_OF_FILE} AS unit, {manifest_columns}, duration_s AS declared_duration_s,
           status AS ingest_status, reject_reason AS ingest_reason,
           reject_message AS ingest_message
    FROM {manifests}
), q AS (
    SELECT {_UNIT_OF_FILE} AS unit, utterance_id, status, reject_stage, reject_rule,
           reject_value, reject_threshold, reject_message, failed_rules, policy_version,
           duration_s AS measured_duration_s, {measures}
    FROM {quality}
), {_unit_rows_sql(index, codes, tokenizer_sha256).strip()}
SELECT m.* EXCLUDE (ingest_reason, ingest_message),
       CASE WHEN m.ingest_status = 'rejected' THEN 'rejected'
            ELSE coalesce(q.status, 'pending') END AS status,
       CASE WHEN m.ingest_status = 'rejected' THEN 'ingest' ELSE q.reject_stage END
           AS reject_stage,
       CASE WHEN m.ingest_status = 'rejected' THEN m.ingest_reason ELSE q.reject_rule END
           AS reject_rule,
       q.reject_value, q.reject_threshold,
       CASE WHEN m.ingest_status = 'rejected' THEN m.ingest_message ELSE q.reject_message END
           AS reject_message,
       q.failed_rules, q.policy_version,
       coalesce(q.measured_duration_s, m.declared_duration_s) AS duration_s,
       q.measured_duration_s, {", ".join("q." + c for c in QUALITY_MEASURES)},
       c.n_codes, c.tokenizer_sha256, c.tokenizer_is_demo,
       s.key, s.shard, c.codes_shard
FROM m
LEFT JOIN q ON q.unit = m.unit AND q.utterance_id = m.utterance_id
LEFT JOIN s ON s.unit = m.unit AND s.utterance_id = m.utterance_id
LEFT JOIN c ON c.unit = m.unit AND c.utterance_id = m.utterance_id
"""


def _code_shards_insert_sql(index: str, codes: str, tokenizer_sha256: str | None) -> str:
    return f"""
INSERT INTO code_shards BY NAME
WITH {_unit_rows_sql(index, codes, tokenizer_sha256).strip()}
SELECT codes_shard AS shard, source, unit, tokenizer_sha256, tokenizer_is_demo,
       shard_sha256 AS sha256, shard_bytes AS bytes, count(*) AS n_samples,
       sum(n_codes) AS n_codes, sum(duration_s) AS duration_s, audio_shard
FROM c
GROUP BY ALL
"""


def _in_list(values: Iterable[str]) -> str:
    return "(" + ", ".join(_sql_str(v) for v in sorted(values)) + ")"


def _unit_batches(files: list[LakeFile], units: set[str]) -> list[dict[str, list[LakeFile]]]:
    """The unit files of `units`, per kind, in batches of about `BATCH_MANIFEST_BYTES`."""
    by_unit: dict[str, list[LakeFile]] = defaultdict(list)
    for f in files:
        if f.group == "unit" and f.entity in units:
            by_unit[f.entity].append(f)
    batches: list[dict[str, list[LakeFile]]] = []
    batch: dict[str, list[LakeFile]] = defaultdict(list)
    batch_bytes = 0
    for unit in sorted(by_unit):
        for f in by_unit[unit]:
            batch[f.kind].append(f)
            batch_bytes += f.size_bytes if f.kind == "manifest" else 0
        if batch_bytes >= BATCH_MANIFEST_BYTES:
            batches.append(batch)
            batch, batch_bytes = defaultdict(list), 0
    if batch:
        batches.append(batch)
    return batches


def _load_units(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    files: list[LakeFile],
    units: set[str],
    tokenizer_sha256: str | None,
) -> None:
    """Replace the `utterances`, `shards` and `code_shards` rows of `units` with what their
    files hold (codes of tokenizer `tokenizer_sha256`, the configured one)."""
    if not units:
        return
    in_units = _in_list(units)
    for table in ("utterances", "shards", "code_shards"):
        con.execute(f"DELETE FROM {table} WHERE unit IN {in_units}")
    for batch in _unit_batches(files, units):
        if not batch["manifest"]:
            continue  # no manifest: the unit has no utterances (yet, or any more)
        relations = {
            kind: _parquet_relation(con, kind, [lake.root / f.path for f in batch[kind]])
            for kind in UNIT_KINDS
        }
        con.execute(
            _utterances_insert_sql(
                relations["manifest"],
                relations["quality"],
                relations["shard_index"],
                relations["code_index"],
                tokenizer_sha256,
            )
        )
        if batch["shard_index"]:
            con.execute(
                f"""
                INSERT INTO shards BY NAME
                SELECT shard, source, {_UNIT_OF_INDEX} AS unit, shard_sha256 AS sha256,
                       shard_bytes AS bytes, count(*) AS n_samples, sum(duration_s) AS duration_s
                FROM {relations["shard_index"]}
                GROUP BY ALL
                """
            )
        if batch["code_index"]:
            con.execute(
                _code_shards_insert_sql(
                    relations["shard_index"], relations["code_index"], tokenizer_sha256
                )
            )


def insert_rows(
    con: duckdb.DuckDBPyConnection, table: str, rows: list[dict[str, Any]], schema: pa.Schema
) -> None:
    """Insert Python `rows` into `table` by column name, typed by `schema` (one statement)."""
    if not rows:
        return
    arrow = pa.Table.from_pylist(rows, schema=schema)
    con.register("_rows", arrow)
    try:
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _rows")
    finally:
        con.unregister("_rows")


def _load_units_index(
    con: duckdb.DuckDBPyConnection, lake: Lake, files: list[LakeFile], sources: set[str]
) -> None:
    """Replace the `units` rows of `sources` with their `units.json`."""
    if not sources:
        return
    con.execute(f"DELETE FROM units WHERE source IN {_in_list(sources)}")
    rows = []
    for f in files:
        if f.kind == "units_index" and f.entity in sources:
            payload = _read_json(lake.root / f.path)
            for unit in payload.get("units", []):
                rows.append(
                    {
                        "unit": unit["unit"],
                        "source": unit.get("source", f.entity),
                        "n_inputs": unit.get("n_inputs"),
                        "declared_duration_s": unit.get("declared_duration_s"),
                        "items_sha256": unit.get("items_sha256"),
                    }
                )
    insert_rows(con, "units", rows, table_arrow_schema("units"))


def _info_rows(project: Project, tokenizer_sha256: str | None) -> list[dict[str, Any]]:
    """The `catalogue_info` rows: schema version, lake root, the tokenizer whose codes it holds."""
    return [
        {"name": "schema_version", "value": str(CATALOGUE_SCHEMA_VERSION)},
        {"name": "lake_root", "value": str(project.lake.root.resolve())},
        {"name": "tokenizer_sha256", "value": tokenizer_sha256},
    ]


def _load_info(
    con: duckdb.DuckDBPyConnection, project: Project, tokenizer_sha256: str | None
) -> None:
    """Replace `catalogue_info` (the tokenizer may have changed since the last build)."""
    con.execute("DELETE FROM catalogue_info")
    insert_rows(
        con,
        "catalogue_info",
        _info_rows(project, tokenizer_sha256),
        table_arrow_schema("catalogue_info"),
    )


def _load_sources(con: duckdb.DuckDBPyConnection, project: Project) -> None:
    """Replace `sources` with the project's source list (from `voxlake.yaml`)."""
    con.execute("DELETE FROM sources")
    rows = [
        {
            "name": s.name,
            "kind": s.kind.value,
            "path": s.path,
            "options": json.dumps(s.options, sort_keys=True),
        }
        for s in project.config.sources
    ]
    insert_rows(con, "sources", rows, table_arrow_schema("sources"))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CatalogueError(f"{path}: cannot read JSON ({error})") from error
    if not isinstance(payload, dict):
        raise CatalogueError(f"{path}: expected a JSON object, got {type(payload).__name__}")
    return payload


def _load_releases(
    con: duckdb.DuckDBPyConnection, lake: Lake, files: list[LakeFile], names: set[str]
) -> None:
    """Replace the rows of releases `names` in `releases`, `release_shards`, `release_utterances`.

    A release exists once its `release.json` exists; an `utterances.parquet`
    without it (a release still being written) is not loaded yet.
    """
    if not names:
        return
    in_names = _in_list(names)
    con.execute(f"DELETE FROM releases WHERE name IN {in_names}")
    con.execute(f"DELETE FROM release_shards WHERE release IN {in_names}")
    con.execute(f"DELETE FROM release_utterances WHERE release IN {in_names}")
    registered: set[str] = set()
    release_rows: list[dict[str, Any]] = []
    shard_rows: list[dict[str, Any]] = []
    for f in files:
        if f.kind != "release" or f.entity not in names:
            continue
        path = lake.root / f.path
        try:
            release = Release.model_validate_json(path.read_bytes())
        except (OSError, ValueError) as error:
            raise CatalogueError(f"{path}: not a valid release ({error})") from error
        if release.name != f.entity:
            raise CatalogueError(
                f"{path}: names release {release.name!r} but lies in folder {f.entity!r}"
            )
        registered.add(f.entity)
        row = release.model_dump(exclude=set(RELEASE_NESTED))
        for field_name, column in RELEASE_RENAMED.items():
            row[column] = row.pop(field_name)
        for column, duck_type in TABLES["releases"]:
            if duck_type == "JSON":
                row[column] = json.dumps(row[column], sort_keys=True)
        release_rows.append(row)
        for field_name, kind in RELEASE_SHARD_KINDS.items():
            shard_rows.extend(
                {"release": release.name, "kind": kind, **s.model_dump()}
                for s in getattr(release, field_name)
            )
    insert_rows(con, "releases", release_rows, table_arrow_schema("releases"))
    insert_rows(con, "release_shards", shard_rows, table_arrow_schema("release_shards"))
    utterance_paths = [
        lake.root / f.path
        for f in files
        if f.kind == "release_utterances" and f.entity in registered
    ]
    if utterance_paths:
        relation = _parquet_relation(con, "release_utterances", utterance_paths)
        con.execute(
            f"""
            INSERT INTO release_utterances BY NAME
            SELECT {_UNIT_OF_INDEX} AS release,
                   {_present_columns(con, relation, RELEASE_UTTERANCE_ARROW_SCHEMA)}
            FROM {relation}
            """
        )


def _present_columns(con: duckdb.DuckDBPyConnection, relation: str, schema: pa.Schema) -> str:
    """SQL selecting `schema`'s columns from `relation`, NULL for those its files lack.

    Files written before a contract gained a field (e.g. a release's `eval_set`) lack
    its column; their rows read as the field's default, None.
    """
    found = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()}
    return ", ".join(name if name in found else f"NULL AS {name}" for name in schema.names)


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    # Times without a zone are taken as UTC, the zone every voxlake writer uses.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


def _validation_message(error: ValidationError) -> str:
    """Pydantic's problems on one line: `field: message; field: message`."""
    problems = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        problems.append(f"{where}: {problem['msg']}")
    return "; ".join(problems)


_RECORD_MODELS: dict[str, tuple[type[RunRecord] | type[EvalRecord], str, str, str]] = {
    # kind: (model, table, id column, what the file is)
    "run": (RunRecord, "runs", "run_id", "run record (schemas.training.RunRecord)"),
    "eval": (EvalRecord, "evals", "eval_id", "evaluation record (schemas.training.EvalRecord)"),
}


def _load_records(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    files: list[LakeFile],
    ids: set[str],
    kind: Literal["run", "eval"],
) -> None:
    """Replace the `runs` (or `evals`) rows of `ids` with their JSON files.

    Each file is validated with its contract (`RunRecord` or `EvalRecord`, which
    forbid unknown fields); its id must equal the file's name. Times without a
    zone are read as UTC; mapping fields (`deepspeed_config`, `metrics`) are stored
    as JSON.
    A file that does not validate is a `CatalogueError` naming it.
    """
    if not ids:
        return
    model, table, id_column, what = _RECORD_MODELS[kind]
    con.execute(f"DELETE FROM {table} WHERE {id_column} IN {_in_list(ids)}")
    rows = []
    for f in files:
        if f.kind != kind or f.entity not in ids:
            continue
        path = lake.root / f.path
        try:
            record = model.model_validate_json(path.read_bytes())
        except OSError as error:
            raise CatalogueError(f"{path}: cannot read ({error})") from error
        except ValidationError as error:
            raise CatalogueError(
                f"{path}: not a valid {what}: {_validation_message(error)}"
            ) from error
        row = record.model_dump()
        if row[id_column] != f.entity:
            raise CatalogueError(
                f"{path}: {id_column} {row[id_column]!r} differs from the file name ({f.entity!r})"
            )
        for name, duck_type in TABLES[table]:
            if duck_type == "TIMESTAMPTZ":
                row[name] = _utc(row[name])
            elif duck_type == "JSON":
                row[name] = json.dumps(row[name], sort_keys=True)
        rows.append(row)
    insert_rows(con, table, rows, table_arrow_schema(table))
    if kind == "eval":
        _load_eval_utterances(con, lake, files, ids, {row["eval_id"] for row in rows})


def _load_eval_utterances(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    files: list[LakeFile],
    ids: set[str],
    registered: set[str],
) -> None:
    """Replace the `eval_utterances` rows of evaluations `ids` with their parquet files.

    Rows are loaded only for an evaluation whose record exists (`registered`): the
    record is written last, so per-utterance rows without one are an evaluation still
    being written. Every row must name the evaluation its file is named after.
    """
    con.execute(f"DELETE FROM eval_utterances WHERE eval_id IN {_in_list(ids)}")
    wanted = [f for f in files if f.kind == "eval_utterances" and f.entity in registered]
    if not wanted:
        return
    relation = _parquet_relation(con, "eval_utterances", [lake.root / f.path for f in wanted])
    try:
        stray = con.execute(
            f"""
            SELECT filename, eval_id FROM {relation}
            WHERE parse_filename(filename) IS DISTINCT FROM
                  eval_id || {_sql_str(EVAL_UTTERANCES_SUFFIX)}
            LIMIT 1
            """
        ).fetchone()
        if stray is not None:
            raise CatalogueError(f"{stray[0]}: holds rows of evaluation {stray[1]!r}, not its own")
        con.execute(
            f"""
            INSERT INTO eval_utterances BY NAME
            SELECT {_present_columns(con, relation, EVAL_UTTERANCE_ARROW_SCHEMA)}
            FROM {relation}
            """
        )
    except duckdb.Error as error:
        raise CatalogueError(
            f"evaluation rows of {', '.join(sorted(registered))}: {error}"
        ) from error


def _record_files(
    con: duckdb.DuckDBPyConnection, files: list[LakeFile], refreshed: dict[str, set[str]]
) -> None:
    """Make `lake_files` hold the current files of every refreshed entity."""
    for group, entities in refreshed.items():
        if not entities:
            continue
        kinds = [k for k, g in GROUP_OF_KIND.items() if g == group]
        con.execute(
            f"DELETE FROM lake_files WHERE kind IN {_in_list(kinds)} "
            f"AND entity IN {_in_list(entities)}"
        )
    rows = [
        {
            "path": f.path,
            "kind": f.kind,
            "entity": f.entity,
            "size_bytes": f.size_bytes,
            "mtime_ns": f.mtime_ns,
            "inode": f.inode,
        }
        for f in files
        if f.entity in refreshed.get(f.group, set())
    ]
    insert_rows(con, "lake_files", rows, table_arrow_schema("lake_files"))


def load_entities(
    con: duckdb.DuckDBPyConnection,
    project: Project,
    files: list[LakeFile],
    refreshed: dict[str, set[str]],
    tokenizer_sha256: str | None,
) -> None:
    """Replace every refreshed entity's rows (and the sources) in one transaction.

    `files` are `scan_lake(project.lake, tokenizer_sha256)`: units get the codes of
    tokenizer `tokenizer_sha256` (the configured one), which `catalogue_info` records.
    """
    lake = project.lake
    # Row order means nothing in the catalogue; keeping the files' order costs a third of
    # the loading time over many small unit files.
    con.execute("SET preserve_insertion_order = false")
    con.execute("BEGIN TRANSACTION")
    try:
        _load_info(con, project, tokenizer_sha256)
        _load_sources(con, project)
        _load_units_index(con, lake, files, refreshed["source"])
        _load_units(con, lake, files, refreshed["unit"], tokenizer_sha256)
        _load_releases(con, lake, files, refreshed["release"])
        _load_records(con, lake, files, refreshed["run"], "run")
        _load_records(con, lake, files, refreshed["eval"], "eval")
        _record_files(con, files, refreshed)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
