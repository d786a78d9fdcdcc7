"""The catalogue's two writers: `rebuild_catalogue` and `update_catalogue`.

The catalogue is derived: everything in it comes from the lake's files (and the
project's source list), so it can be rebuilt at any time.

- `rebuild_catalogue` builds a new file from the lake alone, in a temporary file
  in the same folder that is renamed over the old one when complete: readers
  never see half a catalogue, and readers holding the old file keep reading it.
- `update_catalogue` refreshes only what changed: each work unit, release, run,
  evaluation or units index whose lake files differ from those recorded in the
  `lake_files` table is deleted and re-inserted, all in one transaction, with
  the same loading code as a rebuild, so an updated catalogue equals a rebuilt one.
- Only these two functions open the file read-write, each holding the writer lock
  (`pipelines/catalogue/lock.py`); a second writer gets `CatalogueLockedError`.
  Everyone else reads through `pipelines/catalogue/read.py`.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import duckdb

from pipelines.catalogue.errors import CatalogueLockedError
from pipelines.catalogue.load import load_entities
from pipelines.catalogue.lock import DEFAULT_LOCK_WAIT_S, connect_catalogue, writer_lock
from pipelines.catalogue.scan import (
    GROUPS,
    LakeFile,
    entity_fingerprints,
    scan_lake,
    upstream_content_sha256,
)
from pipelines.catalogue.tables import (
    CATALOGUE_SCHEMA_VERSION,
    create_tables,
    tables_unlike_definitions,
)
from pipelines.project import Project
from pipelines.tokenizer import configured_tokenizer_sha256


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
    n_code_shards: int = 0
    tokenizer_sha256: str | None = None
    upstream_sha256: str = ""
    """`upstream_content_sha256` of what it holds: the `catalogue` asset's data version."""
    n_releases: int = 0
    n_runs: int = 0
    n_evals: int = 0
    units_refreshed: list[str] = field(default_factory=list)
    releases_refreshed: list[str] = field(default_factory=list)


def _stats(con: duckdb.DuckDBPyConnection, stats: CatalogueStats) -> CatalogueStats:
    row = con.execute(
        """
        SELECT count(*), count(*) FILTER (WHERE status = 'accepted'),
               count(*) FILTER (WHERE status = 'rejected'),
               count(*) FILTER (WHERE status = 'pending'), count(DISTINCT unit),
               (SELECT count(*) FROM shards), (SELECT count(*) FROM code_shards),
               (SELECT count(*) FROM releases),
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
        stats.n_code_shards,
        stats.n_releases,
        stats.n_runs,
        stats.n_evals,
    ) = row
    return stats


def _tokenizer_sha256(project: Project) -> str | None:
    """The configured tokenizer's hash: the catalogue holds its codes (None: no checkpoint)."""
    return configured_tokenizer_sha256(project.directory, project.config.tokenizer)


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
    with writer_lock(path, lock_wait_s):
        if path.exists():
            # A writer outside voxlake (a DuckDB shell) holds its lock exclusively: refuse
            # rather than silently orphan its work. Readers do not block a rebuild.
            try:
                connect_catalogue(path, read_only=True, wait_s=lock_wait_s).close()
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
    tokenizer_sha256 = _tokenizer_sha256(project)
    files = scan_lake(project.lake, tokenizer_sha256)
    everything = {g: set(by) for g, by in entity_fingerprints(files).items()}
    stats = CatalogueStats(
        path=path, mode="rebuild", reason=reason, tokenizer_sha256=tokenizer_sha256
    )
    try:
        con = duckdb.connect(str(tmp))
        try:
            create_tables(con)
            load_entities(con, project, files, everything, tokenizer_sha256)
            _stats(con, stats)
            stats.upstream_sha256 = upstream_content_sha256(_recorded_files(con), tokenizer_sha256)
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
    # The tables that mirror a contract follow its fields, without a schema version bump.
    unlike = tables_unlike_definitions(con)
    if unlike:
        return f"columns of {', '.join(unlike)} differ from their definitions"
    return None


def update_catalogue(
    project: Project,
    units: list[str] | None = None,
    *,
    path: Path | None = None,
    lock_wait_s: float = DEFAULT_LOCK_WAIT_S,
) -> CatalogueStats:
    """Bring the catalogue up to date with the lake, refreshing only what changed.

    Work units whose lake files (manifest, quality, audio shard index, code shard
    index of the configured tokenizer) were added, replaced or removed since the
    catalogue recorded them in `lake_files` are deleted and re-inserted; with
    `units` given, exactly those units are refreshed, changed or not (other units
    wait for a later update). When the configured tokenizer is not the one the
    catalogue recorded, every unit with a code index of either is refreshed too.
    Releases, runs, evaluations and units indexes are refreshed the same way, the
    sources always; everything in one transaction. A missing or unreadable catalogue, or
    one of another schema version or lake, or whose tables' columns differ from
    their definitions (a contract gained a field), is rebuilt instead. The result equals
    `rebuild_catalogue`. Raises `CatalogueLockedError` if another process holds
    the catalogue for longer than `lock_wait_s` seconds.
    """
    path = Path(path or project.catalogue_path)
    with writer_lock(path, lock_wait_s):
        if not path.exists():
            return _rebuild_locked(project, path, "no catalogue yet")
        started = time.perf_counter()
        try:
            con = connect_catalogue(path, read_only=False, wait_s=lock_wait_s)
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


def _recorded_files(con: duckdb.DuckDBPyConnection) -> list[LakeFile]:
    """The lake files the catalogue holds, as it recorded them."""
    return [
        LakeFile(*row)
        for row in con.execute(
            "SELECT path, kind, entity, size_bytes, mtime_ns, inode FROM lake_files"
        ).fetchall()
    ]


def _update_open(
    con: duckdb.DuckDBPyConnection, project: Project, path: Path, units: list[str] | None
) -> CatalogueStats:
    tokenizer_sha256 = _tokenizer_sha256(project)
    files = scan_lake(project.lake, tokenizer_sha256)
    current = entity_fingerprints(files)
    recorded_files = _recorded_files(con)
    recorded = entity_fingerprints(recorded_files)
    refreshed: dict[str, set[str]] = {}
    for group in GROUPS:
        names = set(current[group]) | set(recorded[group])
        refreshed[group] = {n for n in names if current[group].get(n) != recorded[group].get(n)}
    if units is not None:
        refreshed["unit"] = set(units)
    info = dict(con.execute("SELECT name, value FROM catalogue_info").fetchall())
    if info.get("tokenizer_sha256") != tokenizer_sha256:
        # Every unit with codes of the old or the new tokenizer, whatever `units` says (the
        # catalogue holds one tokenizer's codes) and whatever its files say (two tokenizers
        # whose hashes share the first 16 hex digits share a code folder).
        refreshed["unit"] |= {f.entity for f in [*files, *recorded_files] if f.kind == "code_index"}
    load_entities(con, project, files, refreshed, tokenizer_sha256)
    stats = CatalogueStats(
        path=path,
        mode="update",
        reason="incremental",
        tokenizer_sha256=tokenizer_sha256,
        # What it holds now, which with `units` given is not all of the lake.
        upstream_sha256=upstream_content_sha256(_recorded_files(con), tokenizer_sha256),
    )
    stats.units_refreshed = sorted(refreshed["unit"])
    stats.releases_refreshed = sorted(refreshed["release"])
    return _stats(con, stats)
