"""The DuckDB catalogue: the lake's tables and views in one file, written by one writer.

The catalogue is derived: everything in it comes from the lake's files (and the
project's source list), so it can be rebuilt at any time.

- `rebuild_catalogue` builds a new file from the lake alone, in a temporary file
  in the same folder that is renamed over the old one when complete: readers
  never see half a catalogue, and readers holding the old file keep reading it.
- `update_catalogue` refreshes only what changed: each work unit, release, run,
  evaluation or units index whose lake files differ from those recorded in the
  `lake_files` table is deleted and re-inserted, all in one transaction, with
  the same loading code as a rebuild, so an updated catalogue equals a rebuilt one.
- Only these two functions open the file read-write. Writers exclude each other
  with a lock file beside the catalogue (`<catalogue>.lock`) and DuckDB's own file
  lock; a second writer gets `CatalogueLockedError`. Everyone else reads through
  `open_catalogue_readonly` or `query_catalogue`.

Loading is vectorised: tables are filled by `INSERT ... SELECT` over
`read_parquet` of the lake files, about a million utterances per statement (so
memory stays bounded), never row by row in Python; only the few JSON files of
releases, runs and evaluations are parsed in Python. The token files' `codes`
column is never read. The tables and views are documented in
`docs/catalogue.md`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import shutil
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow as pa
from pydantic import ValidationError

from pipelines.lake.paths import Lake
from pipelines.lake.views import read_only_query
from pipelines.project import Project
from schemas import (
    MANIFEST_ARROW_SCHEMA,
    QUALITY_ARROW_SCHEMA,
    SHARD_INDEX_ARROW_SCHEMA,
    TOKENS_ARROW_SCHEMA,
)
from schemas.release import RELEASE_UTTERANCE_ARROW_SCHEMA, Release
from schemas.training import EvalRecord, RunRecord

CATALOGUE_SCHEMA_VERSION = 2
"""Bumped whenever a table or view changes; `update_catalogue` rebuilds older files."""

BATCH_MANIFEST_BYTES = 64 * 2**20
"""Manifest bytes loaded per statement (about a million utterances): bounds the joins' memory."""

DEFAULT_LOCK_WAIT_S = 10.0
"""How long a writer or reader waits for a conflicting lock before giving up (seconds)."""

# Lake file kinds, and the entity each kind's files belong to.
UNIT_KINDS = ("manifest", "quality", "tokens", "shard_index")
RELEASE_KINDS = ("release", "release_utterances")
GROUP_OF_KIND = {
    **dict.fromkeys(UNIT_KINDS, "unit"),
    "units_index": "source",
    **dict.fromkeys(RELEASE_KINDS, "release"),
    "run": "run",
    "eval": "eval",
}
GROUPS = ("unit", "source", "release", "run", "eval")

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
    # tokens
    ("n_codes", "BIGINT"),
    ("tokenizer_sha256", "VARCHAR"),
    ("tokenizer_is_demo", "BOOLEAN"),
    # shards
    ("key", "VARCHAR"),
    ("shard", "VARCHAR"),
]

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
    "releases": [
        ("name", "VARCHAR"),
        ("created_at", "TIMESTAMPTZ"),
        ("where_sql", "VARCHAR"),
        ("split_by", "VARCHAR"),
        ("dev_fraction", "DOUBLE"),
        ("test_fraction", "DOUBLE"),
        ("dedup", "BOOLEAN"),
        ("n_utterances", "BIGINT"),
        ("duration_s", "DOUBLE"),
        ("n_duplicates_dropped", "BIGINT"),
        ("policy_versions", "VARCHAR[]"),
        ("tokenizer_sha256", "VARCHAR[]"),
        ("tokenizer_is_demo", "BOOLEAN"),
        ("code_version", "VARCHAR"),
    ],
    "release_shards": [
        ("release", "VARCHAR"),
        ("shard", "VARCHAR"),
        ("sha256", "VARCHAR"),
        ("bytes", "BIGINT"),
        ("source", "VARCHAR"),
        ("unit", "VARCHAR"),
    ],
    "release_utterances": [
        ("release", "VARCHAR"),
        ("utterance_id", "VARCHAR"),
        ("key", "VARCHAR"),
        ("shard", "VARCHAR"),
        ("source", "VARCHAR"),
        ("language", "VARCHAR"),
        ("speaker", "VARCHAR"),
        ("duration_s", "DOUBLE"),
        ("split", "VARCHAR"),
        ("duplicate_of", "VARCHAR"),
    ],
    "runs": [
        ("run_id", "VARCHAR"),
        ("stage", "VARCHAR"),
        ("profile", "VARCHAR"),
        ("release", "VARCHAR"),
        ("base_checkpoint", "VARCHAR"),
        ("base_run_id", "VARCHAR"),
        ("checkpoint", "VARCHAR"),
        ("checkpoint_sha256", "VARCHAR"),
        ("config_path", "VARCHAR"),
        ("config_sha256", "VARCHAR"),
        ("tokenizer_sha256", "VARCHAR"),
        ("code_version", "VARCHAR"),
        ("deepspeed_config", "JSON"),
        ("world_size", "BIGINT"),
        ("status", "VARCHAR"),
        ("started_at", "TIMESTAMPTZ"),
        ("finished_at", "TIMESTAMPTZ"),
        ("resumed_from_step", "BIGINT"),
        ("dagster_run_id", "VARCHAR"),
        ("metrics", "JSON"),
    ],
    "evals": [
        ("eval_id", "VARCHAR"),
        ("run_id", "VARCHAR"),
        ("checkpoint", "VARCHAR"),
        ("checkpoint_sha256", "VARCHAR"),
        ("release", "VARCHAR"),
        ("split", "VARCHAR"),
        ("code_version", "VARCHAR"),
        ("created_at", "TIMESTAMPTZ"),
        ("dagster_run_id", "VARCHAR"),
        ("metrics", "JSON"),
    ],
    "lake_files": [
        ("path", "VARCHAR"),
        ("kind", "VARCHAR"),
        ("entity", "VARCHAR"),
        ("size_bytes", "BIGINT"),
        ("mtime_ns", "BIGINT"),
        ("inode", "BIGINT"),
    ],
}

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
}


class CatalogueError(Exception):
    """The catalogue cannot be built, opened or read; the message says why."""


class CatalogueLockedError(CatalogueError):
    """Another process holds the catalogue: a writer is running (or readers block a writer)."""


@dataclass
class CatalogueStats:
    """What a rebuild or update did, and what the catalogue holds afterwards."""

    path: Path
    mode: Literal["rebuild", "update"]
    reason: str = ""
    seconds: float = 0.0
    size_bytes: int = 0
    n_utterances: int = 0
    n_accepted: int = 0
    n_rejected: int = 0
    n_pending: int = 0
    n_units: int = 0
    n_shards: int = 0
    n_releases: int = 0
    n_runs: int = 0
    n_evals: int = 0
    units_refreshed: list[str] = field(default_factory=list)
    releases_refreshed: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------
# The lake files the catalogue reflects


@dataclass(frozen=True)
class LakeFile:
    """One lake file the catalogue reads, with the stat fields that tell a change.

    Lake files are immutable and replaced by atomic rename, so a changed file
    has a new inode, and (size, mtime_ns, inode) changes with its content;
    hashing every file on each update would read the whole lake.
    """

    path: str  # relative to the lake root, posix
    kind: str
    entity: str  # unit, source, release name, run id or eval id
    size_bytes: int
    mtime_ns: int
    inode: int

    @property
    def group(self) -> str:
        """What the entity is: 'unit', 'source', 'release', 'run' or 'eval'."""
        return GROUP_OF_KIND[self.kind]


def _visible(entries: Iterable[os.DirEntry[str]]) -> list[os.DirEntry[str]]:
    # Names starting with '.' are temporaries of writers still at work (or killed).
    return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)


def _subdirs(folder: Path) -> list[os.DirEntry[str]]:
    if not folder.is_dir():
        return []
    with os.scandir(folder) as entries:
        return [e for e in _visible(entries) if e.is_dir()]


def _files(folder: str | Path, suffix: str) -> list[os.DirEntry[str]]:
    with os.scandir(folder) as entries:
        return [e for e in _visible(entries) if e.name.endswith(suffix) and e.is_file()]


def scan_lake(lake: Lake) -> list[LakeFile]:
    """Every lake file the catalogue reads, sorted by path.

    Per unit: `manifests/<source>/<unit>.parquet`, `quality/...`, `tokens/...`,
    `shards/<source>/<unit>/index.parquet`; per source: `inventory/<source>/units.json`;
    per release: `releases/<name>/release.json` and `utterances.parquet`;
    `runs/<run_id>.json`; `evals/<eval_id>.json`.
    """
    root = lake.root
    found: list[LakeFile] = []

    def add(path: str, kind: str, entity: str) -> None:
        stat = os.stat(path)
        relative = Path(path).relative_to(root).as_posix()
        found.append(LakeFile(relative, kind, entity, stat.st_size, stat.st_mtime_ns, stat.st_ino))

    for kind, folder in (("manifest", "manifests"), ("quality", "quality"), ("tokens", "tokens")):
        for source_dir in _subdirs(root / folder):
            for entry in _files(source_dir.path, ".parquet"):
                add(entry.path, kind, entry.name.removesuffix(".parquet"))
    for source_dir in _subdirs(root / "shards"):
        for unit_dir in _subdirs(Path(source_dir.path)):
            index = os.path.join(unit_dir.path, "index.parquet")
            if os.path.isfile(index):
                add(index, "shard_index", unit_dir.name)
    for source_dir in _subdirs(root / "inventory"):
        units_json = lake.units_index(source_dir.name)
        if units_json.is_file():
            add(str(units_json), "units_index", source_dir.name)
    for release_dir in _subdirs(root / "releases"):
        for name, kind in (
            ("release.json", "release"),
            ("utterances.parquet", "release_utterances"),
        ):
            path = os.path.join(release_dir.path, name)
            if os.path.isfile(path):
                add(path, kind, release_dir.name)
    for folder, kind in (("runs", "run"), ("evals", "eval")):
        if (root / folder).is_dir():
            for entry in _files(root / folder, ".json"):
                add(entry.path, kind, entry.name.removesuffix(".json"))
    found.sort(key=lambda f: f.path)
    return found


# ---------------------------------------------------------------------------
# Locks


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _is_lock_error(error: duckdb.Error) -> bool:
    return isinstance(error, duckdb.IOException) and "lock" in str(error).lower()


@contextlib.contextmanager
def _writer_lock(path: Path, wait_s: float) -> Iterator[None]:
    """Hold `<catalogue>.lock` exclusively (flock; released when the process dies)."""
    lock_path = _lock_path(path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a+") as handle:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "unknown"
                    raise CatalogueLockedError(
                        f"a catalogue writer is already running (process {holder} holds "
                        f"{lock_path}); only one process may write {path.name} at a time: "
                        "wait for it to finish"
                    ) from None
                time.sleep(0.1)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _connect(path: Path, read_only: bool, wait_s: float) -> duckdb.DuckDBPyConnection:
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


# ---------------------------------------------------------------------------
# Loading


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _columns_sql(columns: list[tuple[str, str]]) -> str:
    return ", ".join(f"{name} {kind}" for name, kind in columns)


def _create_schema(con: duckdb.DuckDBPyConnection) -> None:
    for table, columns in TABLES.items():
        con.execute(f"CREATE TABLE {table} ({_columns_sql(columns)})")
    for view, sql in VIEWS.items():
        con.execute(f"CREATE VIEW {view} AS {sql.strip()}")


_EMPTY_SCHEMAS = {
    "manifest": MANIFEST_ARROW_SCHEMA,
    "quality": QUALITY_ARROW_SCHEMA,
    "tokens": TOKENS_ARROW_SCHEMA,
    "shard_index": SHARD_INDEX_ARROW_SCHEMA,
    "release_utterances": RELEASE_UTTERANCE_ARROW_SCHEMA,
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

_QUALITY_MEASURES = [
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

_MANIFEST_FIELDS = [
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


def _utterances_insert_sql(manifests: str, quality: str, tokens: str, index: str) -> str:
    manifest_columns = ", ".join(_MANIFEST_FIELDS)
    measures = ", ".join(_QUALITY_MEASURES)
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
), t AS (
    SELECT {_UNIT_OF_FILE} AS unit, utterance_id, n_codes, tokenizer_sha256, tokenizer_is_demo
    FROM {tokens}
), s AS (
    SELECT {_UNIT_OF_INDEX} AS unit, utterance_id, key, shard
    FROM {index}
)
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
       q.measured_duration_s, {", ".join("q." + c for c in _QUALITY_MEASURES)},
       t.n_codes, t.tokenizer_sha256, t.tokenizer_is_demo,
       s.key, s.shard
FROM m
LEFT JOIN q ON q.unit = m.unit AND q.utterance_id = m.utterance_id
LEFT JOIN t ON t.unit = m.unit AND t.utterance_id = m.utterance_id
LEFT JOIN s ON s.unit = m.unit AND s.utterance_id = m.utterance_id
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
    con: duckdb.DuckDBPyConnection, lake: Lake, files: list[LakeFile], units: set[str]
) -> None:
    """Replace the `utterances` and `shards` rows of `units` with what their files hold."""
    if not units:
        return
    in_units = _in_list(units)
    con.execute(f"DELETE FROM utterances WHERE unit IN {in_units}")
    con.execute(f"DELETE FROM shards WHERE unit IN {in_units}")
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
                relations["tokens"],
                relations["shard_index"],
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


_ARROW_OF_DUCKDB = {
    "VARCHAR": pa.string(),
    "JSON": pa.string(),
    "BIGINT": pa.int64(),
    "DOUBLE": pa.float64(),
    "BOOLEAN": pa.bool_(),
    "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
    "VARCHAR[]": pa.list_(pa.string()),
}


def _table_schema(table: str) -> pa.Schema:
    """The Arrow schema of a catalogue table's columns (for inserting Python rows)."""
    return pa.schema([(name, _ARROW_OF_DUCKDB[kind]) for name, kind in TABLES[table]])


def _insert_rows(
    con: duckdb.DuckDBPyConnection, table: str, rows: list[dict[str, Any]], schema: pa.Schema
) -> None:
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
    _insert_rows(con, "units", rows, _table_schema("units"))


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
    _insert_rows(con, "sources", rows, _table_schema("sources"))


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
        row = release.model_dump(exclude={"shards", "where"})
        row["where_sql"] = release.where
        release_rows.append(row)
        shard_rows.extend({"release": release.name, **s.model_dump()} for s in release.shards)
    _insert_rows(con, "releases", release_rows, _table_schema("releases"))
    _insert_rows(con, "release_shards", shard_rows, _table_schema("release_shards"))
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
            SELECT {_UNIT_OF_INDEX} AS release, utterance_id, key, shard, source, language,
                   speaker, duration_s, split, duplicate_of
            FROM {relation}
            """
        )


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
    zone are read as UTC; `deepspeed_config` and `metrics` are stored as JSON.
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
    _insert_rows(con, table, rows, _table_schema(table))


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
    _insert_rows(con, "lake_files", rows, _table_schema("lake_files"))


def _load(
    con: duckdb.DuckDBPyConnection,
    project: Project,
    files: list[LakeFile],
    refreshed: dict[str, set[str]],
) -> None:
    """Replace every refreshed entity's rows (and the sources) in one transaction."""
    lake = project.lake
    # Row order means nothing in the catalogue; keeping the files' order costs a third of
    # the loading time over many small unit files.
    con.execute("SET preserve_insertion_order = false")
    con.execute("BEGIN TRANSACTION")
    try:
        _load_sources(con, project)
        _load_units_index(con, lake, files, refreshed["source"])
        _load_units(con, lake, files, refreshed["unit"])
        _load_releases(con, lake, files, refreshed["release"])
        _load_records(con, lake, files, refreshed["run"], "run")
        _load_records(con, lake, files, refreshed["eval"], "eval")
        _record_files(con, files, refreshed)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _entities(files: Iterable[LakeFile]) -> dict[str, dict[str, frozenset[tuple]]]:
    """Per group, per entity: the set of its files' identities (path, kind, stat fields)."""
    found: dict[str, dict[str, set[tuple]]] = {g: defaultdict(set) for g in GROUPS}
    for f in files:
        found[f.group][f.entity].add((f.path, f.kind, f.size_bytes, f.mtime_ns, f.inode))
    return {g: {e: frozenset(s) for e, s in by.items()} for g, by in found.items()}


def _stats(con: duckdb.DuckDBPyConnection, stats: CatalogueStats) -> CatalogueStats:
    row = con.execute(
        """
        SELECT count(*), count(*) FILTER (WHERE status = 'accepted'),
               count(*) FILTER (WHERE status = 'rejected'),
               count(*) FILTER (WHERE status = 'pending'), count(DISTINCT unit),
               (SELECT count(*) FROM shards), (SELECT count(*) FROM releases),
               (SELECT count(*) FROM runs), (SELECT count(*) FROM evals)
        FROM utterances
        """
    ).fetchone()
    assert row is not None
    (
        stats.n_utterances,
        stats.n_accepted,
        stats.n_rejected,
        stats.n_pending,
        stats.n_units,
        stats.n_shards,
        stats.n_releases,
        stats.n_runs,
        stats.n_evals,
    ) = row
    return stats


def _info_rows(project: Project) -> list[dict[str, Any]]:
    return [
        {"name": "schema_version", "value": str(CATALOGUE_SCHEMA_VERSION)},
        {"name": "lake_root", "value": str(project.lake.root.resolve())},
    ]


# ---------------------------------------------------------------------------
# Writers


def rebuild_catalogue(
    project: Project, path: Path | None = None, *, lock_wait_s: float = DEFAULT_LOCK_WAIT_S
) -> CatalogueStats:
    """Build the catalogue anew from the lake alone; return what it holds.

    `path` defaults to the project's catalogue. The new file is written next to
    it under a temporary name and renamed over it when complete. Raises
    `CatalogueLockedError` if another writer holds the catalogue (waiting up to
    `lock_wait_s` seconds for it first).
    """
    path = Path(path or project.catalogue_path)
    with _writer_lock(path, lock_wait_s):
        if path.exists():
            # A writer outside voxlake (a DuckDB shell) holds its lock exclusively: refuse
            # rather than silently orphan its work. Readers do not block a rebuild.
            try:
                _connect(path, read_only=True, wait_s=lock_wait_s).close()
            except CatalogueLockedError as error:
                raise CatalogueLockedError(
                    f"a catalogue writer is already running: another process holds {path} "
                    f"open read-write ({error.__cause__})"
                ) from error
        return _rebuild_locked(project, path, "rebuild requested")


def _remove_database(path: Path) -> None:
    """Remove a DuckDB file, its write-ahead log and its spill folder (`<file>.tmp/`)."""
    for item in (path, Path(f"{path}.wal"), Path(f"{path}.tmp")):
        if item.is_dir():
            shutil.rmtree(item, ignore_errors=True)
        else:
            item.unlink(missing_ok=True)


def _rebuild_locked(project: Project, path: Path, reason: str) -> CatalogueStats:
    started = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Temporaries of killed rebuilds: no writer can be using them while we hold the lock.
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            _remove_database(stale)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    files = scan_lake(project.lake)
    everything = {g: set(by) for g, by in _entities(files).items()}
    stats = CatalogueStats(path=path, mode="rebuild", reason=reason)
    try:
        con = duckdb.connect(str(tmp))
        try:
            _create_schema(con)
            _insert_rows(
                con, "catalogue_info", _info_rows(project), _table_schema("catalogue_info")
            )
            _load(con, project, files, everything)
            _stats(con, stats)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        # A write-ahead log left by a killed writer of the old file would be replayed
        # onto the new one: drop it (its changes are in the lake, hence in the rebuild).
        Path(f"{path}.wal").unlink(missing_ok=True)
        os.replace(tmp, path)
    finally:
        _remove_database(tmp)
    stats.units_refreshed = sorted(everything["unit"])
    stats.releases_refreshed = sorted(everything["release"])
    stats.size_bytes = path.stat().st_size
    stats.seconds = time.perf_counter() - started
    return stats


def _stale_reason(con: duckdb.DuckDBPyConnection, project: Project) -> str | None:
    """Why an existing catalogue file cannot be updated in place (None if it can)."""
    try:
        info = dict(con.execute("SELECT name, value FROM catalogue_info").fetchall())
    except duckdb.CatalogException:
        return "not a voxlake catalogue (no catalogue_info table)"
    if info.get("schema_version") != str(CATALOGUE_SCHEMA_VERSION):
        return (
            f"schema version {info.get('schema_version')} differs from {CATALOGUE_SCHEMA_VERSION}"
        )
    lake_root = str(project.lake.root.resolve())
    if info.get("lake_root") != lake_root:
        return f"built from lake {info.get('lake_root')}, not {lake_root}"
    return None


def update_catalogue(
    project: Project,
    units: list[str] | None = None,
    *,
    path: Path | None = None,
    lock_wait_s: float = DEFAULT_LOCK_WAIT_S,
) -> CatalogueStats:
    """Bring the catalogue up to date with the lake, refreshing only what changed.

    Work units whose lake files (manifest, quality, tokens, shard index) were
    added, replaced or removed since the catalogue recorded them in `lake_files`
    are deleted and re-inserted; with `units` given, exactly those units are
    refreshed, changed or not (other units wait for a later update). Releases,
    runs, evaluations and units indexes are refreshed the same way, the sources
    always; everything in one transaction. A missing or unreadable catalogue, or
    one of another schema version or lake, is rebuilt instead. The result equals
    `rebuild_catalogue`. Raises `CatalogueLockedError` if another process holds
    the catalogue for longer than `lock_wait_s` seconds.
    """
    path = Path(path or project.catalogue_path)
    with _writer_lock(path, lock_wait_s):
        if not path.exists():
            return _rebuild_locked(project, path, "no catalogue yet")
        started = time.perf_counter()
        try:
            con = _connect(path, read_only=False, wait_s=lock_wait_s)
        except CatalogueLockedError:
            raise
        except duckdb.Error as error:
            return _rebuild_locked(project, path, f"existing file unreadable ({error})")
        try:
            reason = _stale_reason(con, project)
            if reason is None:
                stats = _update_open(con, project, path, units)
                con.execute("CHECKPOINT")
        finally:
            con.close()
        if reason is not None:
            return _rebuild_locked(project, path, reason)
        stats.size_bytes = path.stat().st_size
        stats.seconds = time.perf_counter() - started
        return stats


def _update_open(
    con: duckdb.DuckDBPyConnection, project: Project, path: Path, units: list[str] | None
) -> CatalogueStats:
    files = scan_lake(project.lake)
    current = _entities(files)
    recorded_files = [
        LakeFile(*row)
        for row in con.execute(
            "SELECT path, kind, entity, size_bytes, mtime_ns, inode FROM lake_files"
        ).fetchall()
    ]
    recorded = _entities(recorded_files)
    refreshed: dict[str, set[str]] = {}
    for group in GROUPS:
        names = set(current[group]) | set(recorded[group])
        refreshed[group] = {n for n in names if current[group].get(n) != recorded[group].get(n)}
    if units is not None:
        refreshed["unit"] = set(units)
    _load(con, project, files, refreshed)
    stats = CatalogueStats(path=path, mode="update", reason="incremental")
    stats.units_refreshed = sorted(refreshed["unit"])
    stats.releases_refreshed = sorted(refreshed["release"])
    return _stats(con, stats)


# ---------------------------------------------------------------------------
# Readers


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
    return _connect(path, read_only=True, wait_s=wait_s)


def query_catalogue(path: Path, sql: str) -> pa.Table:
    """Run one read-only SQL statement (SELECT or EXPLAIN) on the catalogue; return Arrow.

    Raises `QueryError` for anything else (several statements, writes, DDL) or when
    the query fails, `CatalogueError` when the catalogue cannot be opened.
    """
    return read_only_query(open_catalogue_readonly(path), sql)
