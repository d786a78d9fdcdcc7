"""Lineage: which runs, releases, shards (audio and codes), units and sources made a
checkpoint.

`lineage(project, checkpoint)` follows the catalogue (read-only) from a checkpoint
to the training run that produced it (`runs`), from that run's base checkpoint to
the run that produced it, and so on back to the first stage; then from each run's
release (`releases`) to its audio shards and code shards with the sha256 they had
when released (`release_shards`), their work units (`units`) and sources
(`sources`, i.e. the project's `voxlake.yaml`); and to the evaluations of the
checkpoint (`evals`).

A checkpoint is named by its path (absolute, or relative to the current folder or
to the lake root; the run's checkpoint folder `checkpoints/<run_id>` and files
inside the checkpoint name it too), by the run id that produced it, or by a
prefix of its sha256 (at least `MIN_SHA256_PREFIX` hex digits).

Whether shard files on disk still have the release's sha256 is `voxlake audit`'s
business, not this module's; the tree `voxlake lineage` prints is drawn by
`pipelines/cli/render.py`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any, Literal

import duckdb
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipelines.catalogue.errors import CatalogueError
from pipelines.catalogue.read import open_catalogue_readonly
from pipelines.catalogue.tables import CATALOGUE_SCHEMA_VERSION
from pipelines.project import Project
from schemas.release import ReleaseShard
from schemas.training import EvalRecord, RunRecord

MIN_SHA256_PREFIX = 6
"""Fewest hex digits taken as a checkpoint sha256 prefix."""

_HEX = re.compile(r"[0-9a-fA-F]+")


def short_sha256(sha256: str | None, digits: int = 12) -> str:
    """The first `digits` hex digits of a sha256, or `-` when there is none."""
    return sha256[:digits] if sha256 else "-"


class LineageError(Exception):
    """The lineage cannot be followed; the message says what was searched or what is missing."""


class UnitLink(BaseModel):
    """A work unit a release's shards come from."""

    model_config = ConfigDict(extra="forbid")

    unit: str
    source: str
    n_shards: int = Field(description="audio shards of the release in this unit")
    n_code_shards: int = Field(description="code shards of the release in this unit")
    n_utterances: int = Field(description="utterances of the release (duplicates excluded)")
    duration_s: float = Field(description="their total duration (s)")
    n_inputs: int | None = Field(description="input utterances planned (None: not inventoried)")
    declared_duration_s: float | None = None
    items_sha256: str | None = Field(None, description="sha256 of the unit's inventory file")


class SourceLink(BaseModel):
    """A source a release's shards come from, as the project configures it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: str | None = Field(description="connector kind; None when no longer configured")
    path: str | None = Field(description="corpus root from voxlake.yaml")
    options: dict[str, Any] | None = None
    configured: bool = Field(description="whether the project still lists the source")
    n_units: int


class ReleaseLink(BaseModel):
    """A release a run trained on, with its lineage down to the sources."""

    model_config = ConfigDict(extra="forbid")

    name: str
    created_at: dt.datetime
    where: str
    split_by: str
    dev_fraction: float
    test_fraction: float
    dedup: bool
    n_utterances: int
    duration_s: float
    n_duplicates_dropped: int
    policy_versions: list[str]
    tokenizer_sha256: list[str] = Field(description="audio tokenizer checkpoint hashes")
    tokenizer_is_demo: bool
    code_version: str
    shards: list[ReleaseShard] = Field(description="the audio shards")
    code_shards: list[ReleaseShard] = Field(description="the code shards (aligned with the audio)")
    units: list[UnitLink]
    sources: list[SourceLink]


class Lineage(BaseModel):
    """A checkpoint's chain: runs (newest first), their releases, and its evaluations."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(description="what was asked for")
    matched_by: Literal["run_id", "path", "sha256"]
    catalogue: str
    lake_root: str
    checkpoint: str | None = Field(description="lake-relative path (None: run not finished)")
    checkpoint_sha256: str | None
    runs: list[RunRecord] = Field(
        description="the run that produced the checkpoint, then the run that produced its "
        "base checkpoint, and so on back to the first stage"
    )
    base_checkpoint: str | None = Field(
        description="what the first run started from (not produced by a run in the catalogue)"
    )
    releases: list[ReleaseLink] = Field(description="the runs' releases, in the runs' order")
    evals: list[EvalRecord] = Field(description="evaluations of this checkpoint")

    @property
    def run(self) -> RunRecord:
        """The run that produced the checkpoint."""
        return self.runs[0]

    def release(self, name: str) -> ReleaseLink:
        """One of the runs' releases, by name (KeyError if no run trained on it)."""
        for release in self.releases:
            if release.name == name:
                return release
        raise KeyError(name)


# ---------------------------------------------------------------------------
# Reading the catalogue


def _rows(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | dict[str, Any] | None = None
) -> list[dict]:
    return con.sql(sql, params=params).to_arrow_table().to_pylist()


def _check_schema(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    try:
        info = dict(con.execute("SELECT name, value FROM catalogue_info").fetchall())
    except duckdb.CatalogException as error:
        raise LineageError(f"{path} is not a voxlake catalogue (no catalogue_info)") from error
    version = info.get("schema_version")
    if version != str(CATALOGUE_SCHEMA_VERSION):
        raise LineageError(
            f"catalogue {path} has schema version {version}, this voxlake reads version "
            f"{CATALOGUE_SCHEMA_VERSION}: rebuild it (`voxlake catalogue rebuild`)"
        )


def _record(model: type[RunRecord] | type[EvalRecord], row: dict, path: Path) -> Any:
    row = dict(row)
    for name in ("deepspeed_config", "metrics"):
        if name in row and row[name] is not None:
            row[name] = json.loads(row[name])
    try:
        return model.model_validate(row)
    except ValidationError as error:
        raise LineageError(f"catalogue {path}: invalid {model.__name__} row ({error})") from error


def _runs(con: duckdb.DuckDBPyConnection, path: Path) -> dict[str, RunRecord]:
    rows = _rows(con, "SELECT * FROM runs ORDER BY run_id")
    return {row["run_id"]: _record(RunRecord, row, path) for row in rows}


def _evals(con: duckdb.DuckDBPyConnection, path: Path) -> list[EvalRecord]:
    rows = _rows(con, "SELECT * FROM evals ORDER BY created_at, eval_id")
    return [_record(EvalRecord, row, path) for row in rows]


# ---------------------------------------------------------------------------
# Finding the checkpoint


def _in_lake(project: Project, path: str) -> Path:
    """A record's path (lake-relative, or absolute) as an absolute, resolved path."""
    given = Path(path).expanduser()
    return (given if given.is_absolute() else project.lake.root / given).resolve()


def _names_checkpoint(candidate: Path, checkpoint: Path) -> bool:
    """The checkpoint folder itself, a file inside it, or the run's folder above `hf/`."""
    return (
        candidate == checkpoint
        or checkpoint in candidate.parents
        or (checkpoint.name == "hf" and candidate == checkpoint.parent)
    )


def _path_candidates(project: Project, text: str) -> list[Path]:
    given = Path(text).expanduser()
    if given.is_absolute():
        return [given.resolve()]
    found: list[Path] = []
    for base in (Path.cwd(), project.lake.root):
        candidate = (base / given).resolve()
        if candidate not in found:
            found.append(candidate)
    return found


def _ambiguous(what: str, matches: list[RunRecord]) -> LineageError:
    listed = ", ".join(
        f"{r.run_id} ({r.checkpoint or 'no checkpoint'}, "
        f"sha256 {short_sha256(r.checkpoint_sha256)})"
        for r in matches
    )
    return LineageError(f"{what} is ambiguous: it matches runs {listed}; be more specific")


def _find(
    project: Project, runs: dict[str, RunRecord], text: str, catalogue: Path
) -> tuple[RunRecord, Literal["run_id", "path", "sha256"]]:
    if text in runs:
        return runs[text], "run_id"
    candidates = _path_candidates(project, text)
    by_path = [
        r
        for r in runs.values()
        if r.checkpoint is not None
        and any(_names_checkpoint(c, _in_lake(project, r.checkpoint)) for c in candidates)
    ]
    if len(by_path) == 1:
        return by_path[0], "path"
    if by_path:
        raise _ambiguous(f"checkpoint path {text!r}", by_path)
    is_prefix = _HEX.fullmatch(text) is not None and MIN_SHA256_PREFIX <= len(text) <= 64
    if is_prefix:
        prefix = text.lower()
        by_sha = [
            r
            for r in runs.values()
            if r.checkpoint_sha256 and r.checkpoint_sha256.lower().startswith(prefix)
        ]
        if len(by_sha) == 1:
            return by_sha[0], "sha256"
        if by_sha:
            raise _ambiguous(f"checkpoint sha256 prefix {text!r}", by_sha)
    sha_note = (
        f"checkpoint sha256s starting with {text.lower()!r}"
        if is_prefix
        else f"no checkpoint sha256s (a prefix needs {MIN_SHA256_PREFIX} to 64 hex digits)"
    )
    raise LineageError(
        f"no training run in catalogue {catalogue} matches {text!r}: searched the run ids, "
        f"the checkpoint paths of {len(runs)} runs for {', '.join(map(str, candidates))}, "
        f"and {sha_note}. Runs are `runs/<run_id>.json` in the lake; a run written since the "
        "catalogue was built shows after `voxlake catalogue rebuild`"
    )


def _chain(project: Project, runs: dict[str, RunRecord], run: RunRecord) -> list[RunRecord]:
    """`run`, the run that produced its base checkpoint, and so on back to the first."""
    chain = [run]
    while True:
        current = chain[-1]
        base: RunRecord | None = None
        if current.base_run_id is not None:
            base = runs.get(current.base_run_id)
            if base is None:
                raise LineageError(
                    f"run {current.run_id} starts from run {current.base_run_id} "
                    f"(checkpoint {current.base_checkpoint}), which is not in the catalogue: "
                    "its record `runs/<run_id>.json` is missing, or the catalogue is out of "
                    "date (`voxlake catalogue rebuild`)"
                )
        elif current.base_checkpoint is not None:
            wanted = _in_lake(project, current.base_checkpoint)
            producers = [
                r
                for r in runs.values()
                if r.checkpoint is not None and _in_lake(project, r.checkpoint) == wanted
            ]
            if len(producers) > 1:
                raise _ambiguous(f"base checkpoint {current.base_checkpoint!r}", producers)
            base = producers[0] if producers else None
        if base is None:
            return chain
        if any(r.run_id == base.run_id for r in chain):
            cycle = " -> ".join(r.run_id for r in [*chain, base])
            raise LineageError(f"runs form a cycle through their base checkpoints: {cycle}")
        chain.append(base)


# ---------------------------------------------------------------------------
# Releases, shards, units, sources


def _release(
    con: duckdb.DuckDBPyConnection, project: Project, name: str, run: RunRecord, path: Path
) -> ReleaseLink:
    rows = _rows(con, "SELECT * FROM releases WHERE name = ?", [name])
    if not rows:
        known = [r["name"] for r in _rows(con, "SELECT name FROM releases ORDER BY name")]
        raise LineageError(
            f"run {run.run_id} ({run.stage}) trained on release {name!r}, which is not in "
            f"catalogue {path} (releases there: {', '.join(known) or 'none'}); was "
            f"`releases/{name}/` removed, or is the catalogue out of date "
            "(`voxlake catalogue rebuild`)?"
        )
    (row,) = rows

    def shards_of(kind: str) -> list[ReleaseShard]:
        return [
            ReleaseShard(**s)
            for s in _rows(
                con,
                "SELECT shard, sha256, bytes, source, unit FROM release_shards "
                "WHERE release = ? AND kind = ? ORDER BY shard",
                [name, kind],
            )
        ]

    unit_rows = _rows(
        con,
        """
        WITH s AS (
            SELECT source, unit, count(*) FILTER (WHERE kind = 'audio') AS n_shards,
                   count(*) FILTER (WHERE kind = 'codes') AS n_code_shards
            FROM release_shards WHERE release = $name GROUP BY ALL
        ), u AS (
            SELECT rs.source, rs.unit, count(*) AS n_utterances,
                   coalesce(sum(ru.duration_s), 0) AS duration_s
            FROM release_utterances ru
            JOIN release_shards rs
                ON rs.release = ru.release AND rs.kind = 'audio' AND rs.shard = ru.shard
            WHERE ru.release = $name AND ru.split IS NOT NULL GROUP BY ALL
        )
        SELECT s.unit, s.source, s.n_shards, s.n_code_shards,
               coalesce(u.n_utterances, 0) AS n_utterances,
               coalesce(u.duration_s, 0) AS duration_s, p.n_inputs, p.declared_duration_s,
               p.items_sha256
        FROM s LEFT JOIN u USING (source, unit)
        LEFT JOIN (SELECT * FROM units QUALIFY row_number() OVER (PARTITION BY unit) = 1) p
            ON p.unit = s.unit
        ORDER BY s.source, s.unit
        """,
        {"name": name},
    )
    units = [UnitLink(**u) for u in unit_rows]
    configured = {s["name"]: s for s in _rows(con, "SELECT name, kind, path, options FROM sources")}
    for source in project.config.sources:
        configured.setdefault(
            source.name,
            {
                "name": source.name,
                "kind": source.kind.value,
                "path": source.path,
                "options": json.dumps(source.options),
            },
        )
    sources = []
    for name_ in sorted({u.source for u in units}):
        known = configured.get(name_)
        sources.append(
            SourceLink(
                name=name_,
                kind=known["kind"] if known else None,
                path=known["path"] if known else None,
                options=json.loads(known["options"]) if known and known["options"] else None,
                configured=known is not None,
                n_units=sum(1 for u in units if u.source == name_),
            )
        )
    return ReleaseLink(
        name=row["name"],
        created_at=row["created_at"],
        where=row["where_sql"],
        split_by=row["split_by"],
        dev_fraction=row["dev_fraction"],
        test_fraction=row["test_fraction"],
        dedup=row["dedup"],
        n_utterances=row["n_utterances"],
        duration_s=row["duration_s"],
        n_duplicates_dropped=row["n_duplicates_dropped"],
        policy_versions=row["policy_versions"] or [],
        tokenizer_sha256=row["tokenizer_sha256"] or [],
        tokenizer_is_demo=row["tokenizer_is_demo"],
        code_version=row["code_version"],
        shards=shards_of("audio"),
        code_shards=shards_of("codes"),
        units=units,
        sources=sources,
    )


def _evals_of(project: Project, evals: list[EvalRecord], run: RunRecord) -> list[EvalRecord]:
    checkpoint = _in_lake(project, run.checkpoint) if run.checkpoint else None
    return [
        e
        for e in evals
        if e.run_id == run.run_id
        or (run.checkpoint_sha256 is not None and e.checkpoint_sha256 == run.checkpoint_sha256)
        or (checkpoint is not None and _in_lake(project, e.checkpoint) == checkpoint)
    ]


def lineage(project: Project, checkpoint: str, *, catalogue: Path | None = None) -> Lineage:
    """The chain that made `checkpoint`: runs back to the first stage, releases, evaluations.

    `checkpoint` is a checkpoint path (absolute, or relative to the current folder
    or to the lake root), a run id, or a checkpoint sha256 prefix. Reads the
    catalogue (`catalogue`, by default the project's) read-only. Raises
    `LineageError` for an unknown or ambiguous checkpoint, a missing base run or
    release, or a catalogue of another schema version; `CatalogueError` when the
    catalogue cannot be opened.
    """
    path = Path(catalogue or project.catalogue_path)
    con = open_catalogue_readonly(path)
    try:
        con.execute("SET TimeZone = 'UTC'")
        _check_schema(con, path)
        runs = _runs(con, path)
        run, matched_by = _find(project, runs, checkpoint, path)
        chain = _chain(project, runs, run)
        releases: list[ReleaseLink] = []
        for link in chain:
            if all(r.name != link.release for r in releases):
                releases.append(_release(con, project, link.release, link, path))
        evals = _evals_of(project, _evals(con, path), run)
    except duckdb.Error as error:
        raise CatalogueError(f"cannot read catalogue {path}: {error}") from error
    finally:
        con.close()
    return Lineage(
        query=checkpoint,
        matched_by=matched_by,
        catalogue=str(path),
        lake_root=str(project.lake.root.resolve()),
        checkpoint=run.checkpoint,
        checkpoint_sha256=run.checkpoint_sha256,
        runs=chain,
        base_checkpoint=chain[-1].base_checkpoint,
        releases=releases,
        evals=evals,
    )
