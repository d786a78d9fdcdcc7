"""Where a project stands, per source: units planned / done / failed / stale / pending,
utterances accepted / rejected / pending, hours, and the last run that worked on it.

The facts live in two places, and this module reads only the first:

- the lake: a source's units index (`inventory/<source>/units.json`, what its
  last inventory planned, with each unit's input count and declared duration) and
  the quality files of those units (accepted and rejected utterances, measured
  durations);
- the orchestrator: which unit each per-unit asset materialised, failed, or would
  run again (stale: its code version or its inputs changed since), whether a
  source changed since its inventory, and the runs. `assets/status.py` reads these
  from the Dagster instance and hands them here as plain data (`RunState`), so a
  project that has never run is simply "everything pending", and this module
  imports no Dagster.

A unit is in exactly one state, the first that applies: `failed` (the latest
attempt of one of its assets failed), `pending` (an asset never materialised it),
`stale` (materialised, but `voxlake run` would run it again), `done`.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from pipelines.lake.paths import Lake
from pipelines.project import Project
from pipelines.units import read_units_index

SECONDS_PER_HOUR = 3600.0
UNIT_COUNTS = ("planned", "done", "failed", "stale", "pending")
UTTERANCE_COUNTS = ("planned", "accepted", "rejected", "pending")


class UnitState(enum.StrEnum):
    """Where one unit stands with its per-unit assets."""

    done = "done"
    failed = "failed"
    stale = "stale"
    pending = "pending"


class InventoryState(enum.StrEnum):
    """Where a source's inventory stands."""

    never = "never"
    """Never inventoried: no unit is planned yet."""
    current = "current"
    stale = "stale"
    """The source's files or settings changed since its inventory: `voxlake run` re-plans."""
    failed = "failed"
    """The latest inventory attempt failed."""


@dataclass(frozen=True)
class RunSummary:
    """The last run that worked on a source, as the status shows it.

    One `voxlake run` submits several orchestrator runs (tagged with its
    invocation id): `status` is then the worst of those that worked on the
    source, `run_id` the newest of them.
    """

    run_id: str
    job: str
    status: str
    """The orchestrator's word for it: SUCCESS, FAILURE, CANCELED, STARTED, QUEUED ..."""
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    invocation: str | None = None
    """The `voxlake run` it belongs to; None for a run started elsewhere (the UI)."""
    runs: int = 1
    """Orchestrator runs of that invocation that worked on the source."""
    failed_runs: int = 0

    @property
    def succeeded(self) -> bool:
        """True when the run finished without a failure."""
        return self.status == "SUCCESS"


@dataclass
class RunState:
    """What the orchestrator knows, as plain data (built by `assets/status.py`).

    A unit or source it has no word about is pending / never inventoried.
    """

    units: dict[str, UnitState] = field(default_factory=dict)
    inventories: dict[str, InventoryState] = field(default_factory=dict)
    last_runs: dict[str, RunSummary] = field(default_factory=dict)
    """By source: the latest run that worked on its inventory or one of its units."""


@dataclass
class SourceStatus:
    """Where one source stands."""

    source: str
    inventory: InventoryState
    units_planned: int = 0
    units_done: int = 0
    units_failed: int = 0
    units_stale: int = 0
    units_pending: int = 0
    utterances_planned: int = 0
    utterances_accepted: int = 0
    utterances_rejected: int = 0
    utterances_pending: int = 0
    """Inputs of units without a quality file yet."""
    planned_hours: float = 0.0
    """Declared (or header) durations of every planned input."""
    accepted_hours: float = 0.0
    """Measured durations of the accepted utterances: what training can use."""
    failed_units: list[str] = field(default_factory=list)
    stale_units: list[str] = field(default_factory=list)
    last_run: RunSummary | None = None


@dataclass
class ProjectStatus:
    """Every configured source's status, in `voxlake.yaml` order."""

    project: str
    generated_at: dt.datetime
    sources: list[SourceStatus]

    def to_json(self) -> dict[str, Any]:
        """The machine-readable document `voxlake status --json` prints."""
        return {
            "project": self.project,
            "generated_at": self.generated_at.isoformat(),
            "sources": [_source_json(s) for s in self.sources],
            "totals": _totals_json(self.sources),
        }


def _run_json(run: RunSummary | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {
        "run_id": run.run_id,
        "job": run.job,
        "status": run.status,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "ended_at": run.ended_at.isoformat() if run.ended_at else None,
        "invocation": run.invocation,
        "runs": run.runs,
        "failed_runs": run.failed_runs,
    }


def _source_json(status: SourceStatus) -> dict[str, Any]:
    return {
        "source": status.source,
        "inventory": status.inventory.value,
        "units": {
            "planned": status.units_planned,
            "done": status.units_done,
            "failed": status.units_failed,
            "stale": status.units_stale,
            "pending": status.units_pending,
        },
        "utterances": {
            "planned": status.utterances_planned,
            "accepted": status.utterances_accepted,
            "rejected": status.utterances_rejected,
            "pending": status.utterances_pending,
        },
        "hours": {
            "planned": round(status.planned_hours, 6),
            "accepted": round(status.accepted_hours, 6),
        },
        "failed_units": status.failed_units,
        "stale_units": status.stale_units,
        "last_run": _run_json(status.last_run),
    }


def _totals_json(sources: list[SourceStatus]) -> dict[str, Any]:
    def total(name: str) -> Any:
        return sum(getattr(s, name) for s in sources)

    return {
        "units": {k: total(f"units_{k}") for k in UNIT_COUNTS},
        "utterances": {k: total(f"utterances_{k}") for k in UTTERANCE_COUNTS},
        "hours": {
            "planned": round(total("planned_hours"), 6),
            "accepted": round(total("accepted_hours"), 6),
        },
    }


def _quality_counts(lake: Lake, source: str, units: list[str]) -> tuple[dict[str, int], float]:
    """Accepted and rejected utterances, and accepted seconds, over the units' quality files."""
    paths = [lake.quality(source, u) for u in units]
    paths = [str(p) for p in paths if p.is_file()]
    counts = {"accepted": 0, "rejected": 0}
    if not paths:
        return counts, 0.0
    try:
        frame = (
            pl.scan_parquet(paths)
            .group_by("status")
            .agg(pl.len().alias("n"), pl.col("duration_s").sum().alias("seconds"))
            .collect()
        )
    except pl.exceptions.PolarsError as error:
        raise StatusError(
            f"cannot read the quality files of source {source!r} under {lake.quality_dir()}: "
            f"{error}"
        ) from error
    accepted_s = 0.0
    for row in frame.iter_rows(named=True):
        counts[row["status"]] = int(row["n"])
        if row["status"] == "accepted":
            accepted_s = float(row["seconds"] or 0.0)
    return counts, accepted_s


class StatusError(RuntimeError):
    """A lake file the status reads is unreadable; the message names it."""


def source_status(project: Project, source: str, state: RunState) -> SourceStatus:
    """One source's status: its planned units from the lake, their states from `state`."""
    plans = read_units_index(project.lake, source)
    inventory = state.inventories.get(source, InventoryState.never)
    if inventory == InventoryState.never and plans:
        # Planned outside the orchestrator (e.g. by a test or an older voxlake).
        inventory = InventoryState.current
    status = SourceStatus(source=source, inventory=inventory, last_run=state.last_runs.get(source))
    with_quality: list[str] = []
    for plan in plans:
        unit_state = state.units.get(plan.unit, UnitState.pending)
        status.units_planned += 1
        status.utterances_planned += plan.n_inputs
        status.planned_hours += plan.declared_duration_s / SECONDS_PER_HOUR
        if unit_state == UnitState.done:
            status.units_done += 1
        elif unit_state == UnitState.failed:
            status.units_failed += 1
            status.failed_units.append(plan.unit)
        elif unit_state == UnitState.stale:
            status.units_stale += 1
            status.stale_units.append(plan.unit)
        else:
            status.units_pending += 1
        if project.lake.quality(source, plan.unit).is_file():
            with_quality.append(plan.unit)
        else:
            status.utterances_pending += plan.n_inputs
    counts, accepted_s = _quality_counts(project.lake, source, with_quality)
    status.utterances_accepted = counts["accepted"]
    status.utterances_rejected = counts["rejected"]
    status.accepted_hours = accepted_s / SECONDS_PER_HOUR
    return status


def project_status(
    project: Project, state: RunState | None = None, now: dt.datetime | None = None
) -> ProjectStatus:
    """Every configured source's status; `state` None means the orchestrator knows nothing."""
    state = state or RunState()
    return ProjectStatus(
        project=str(project.directory),
        generated_at=now or dt.datetime.now(dt.UTC),
        sources=[source_status(project, s.name, state) for s in project.config.sources],
    )
