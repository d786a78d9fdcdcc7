"""What the project's Dagster instance knows for `voxlake status`: each unit's state, each
source's inventory state, and the last run that worked on each source.

Read from the instance's event log and run storage without starting anything, and
handed to `pipelines.status` as plain data (`RunState`):

- a unit is `failed` when the latest attempt of one of its per-unit assets failed
  (Dagster's partition status), `pending` when one of them never materialised it,
  `stale` when `voxlake run` would run it again (the same plan `voxlake run`
  makes, `assets.plan.plan_work`: a code version changed, e.g. a policy edit or
  another tokenizer, or what it read has changed since), else `done`;
- a source's inventory is `never` (no materialisation), `failed` (its latest
  attempt failed after its latest materialisation), `stale` (the source's files or
  settings changed since, `assets.plan.inventory_stale`) or `current`;
- its last run is the newest run whose tags or assets name its inventory or one of
  its units (lake-wide runs such as the catalogue's belong to no source); when that
  run belongs to a `voxlake run` (its invocation tag), the result is the worst of
  that invocation's runs on the source, so one failed unit shows as FAILURE.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)

from assets.definitions import build_definitions
from assets.ingest import inventory_key
from assets.instance import open_instance
from assets.partitions import UNITS_PARTITIONS_NAME
from assets.plan import UNIT_ASSETS, failed_units, inventory_stale, plan_work, unit_states
from assets.submit import VOXLAKE_TAG
from pipelines.project import Project
from pipelines.status import (
    InventoryState,
    ProjectStatus,
    RunState,
    RunSummary,
    UnitState,
    project_status,
)
from pipelines.units import source_of_unit

RUNS_PAGE = 200
MAX_RUNS_SCANNED = 5_000
"""Runs looked at, newest first, to find each source's last one; older ones are not shown."""


def _unit_states(
    instance: dg.DagsterInstance, project: Project, sources: list[str], units: list[str]
) -> dict[str, UnitState]:
    if not units:
        return {}
    graph = build_definitions(project.directory).resolve_asset_graph()
    selected = {dg.AssetKey(a) for a in UNIT_ASSETS}
    # The unit assets alone: with inventories selected, the plan would stop at a stale one.
    plan = plan_work(instance, graph, project, selected, sources, training_keys=set())
    materialised = {a: unit_states(instance, a, units) for a in UNIT_ASSETS}
    failed: set[str] = set()
    for asset in UNIT_ASSETS:
        failed |= failed_units(instance, asset, units)
    states: dict[str, UnitState] = {}
    for unit in units:
        if unit in failed:
            states[unit] = UnitState.failed
        elif any(unit not in materialised[a] for a in UNIT_ASSETS):
            states[unit] = UnitState.pending
        elif unit in plan.units:
            states[unit] = UnitState.stale
        else:
            states[unit] = UnitState.done
    return states


def _inventory_state(instance: dg.DagsterInstance, project: Project, source: str) -> InventoryState:
    records = instance.get_asset_records([inventory_key(source)])
    entry = records[0].asset_entry if records else None
    done_id = entry.last_materialization_storage_id if entry else None
    failed_id = entry.last_failed_to_materialize_storage_id if entry else None
    if failed_id is not None and (done_id is None or failed_id > done_id):
        return InventoryState.failed
    if done_id is None:
        return InventoryState.never
    return (
        InventoryState.stale
        if inventory_stale(instance, project, source)
        else InventoryState.current
    )


def _when(timestamp: float | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC) if timestamp else None


def _sources_of_run(run: dg.DagsterRun, order: dict[str, int], units: list[str]) -> set[str]:
    """The sources a run worked on: its unit, its range of units, its inventory assets."""
    tags = run.tags
    touched: set[str] = set()
    if PARTITION_NAME_TAG in tags:
        touched.add(source_of_unit(tags[PARTITION_NAME_TAG]))
    first, last = tags.get(ASSET_PARTITION_RANGE_START_TAG), tags.get(ASSET_PARTITION_RANGE_END_TAG)
    if first is not None and last is not None:
        if first in order and last in order:
            touched.update(source_of_unit(u) for u in units[order[first] : order[last] + 1])
        else:  # units since removed: their keys still name their sources
            touched.update({source_of_unit(first), source_of_unit(last)})
    for key in run.asset_selection or ():
        if len(key.path) == 2 and key.path[0] == "inventory":
            touched.add(key.path[1])
    return touched


# The worst status among an invocation's runs wins: a failure anywhere is the result.
_STATUS_RANK = {"FAILURE": 0, "CANCELED": 1, "CANCELING": 2, "STARTED": 3, "STARTING": 3,
                "QUEUED": 4, "NOT_STARTED": 5, "MANAGED": 5, "SUCCESS": 6}  # fmt: skip


def _summary(records: list[dg.RunRecord]) -> RunSummary:
    """One source's last run: its newest record, with the worst status of `records` (the
    runs of one invocation that worked on the source, newest first)."""
    newest = records[0]
    statuses = [r.dagster_run.status.value for r in records]
    ended = [r.end_time for r in records if r.end_time]
    unfinished = any(r.end_time is None for r in records)
    return RunSummary(
        run_id=newest.dagster_run.run_id,
        job=newest.dagster_run.job_name,
        status=min(statuses, key=lambda s: _STATUS_RANK.get(s, 5)),
        started_at=_when(min((r.start_time for r in records if r.start_time), default=None)),
        ended_at=None if unfinished else _when(max(ended, default=None)),
        invocation=newest.dagster_run.tags.get(VOXLAKE_TAG),
        runs=len(records),
        failed_runs=statuses.count("FAILURE"),
    )


def _last_runs(
    instance: dg.DagsterInstance, sources: list[str], units: list[str]
) -> dict[str, RunSummary]:
    """By source: the newest run that worked on it, with the other runs of its invocation."""
    order = {u: i for i, u in enumerate(units)}
    wanted = set(sources)
    newest: dict[str, dg.RunRecord] = {}
    cursor: str | None = None
    scanned = 0
    while wanted - set(newest) and scanned < MAX_RUNS_SCANNED:
        records = instance.get_run_records(limit=RUNS_PAGE, cursor=cursor)
        if not records:
            break
        for record in records:
            for source in _sources_of_run(record.dagster_run, order, units) & wanted:
                newest.setdefault(source, record)
        scanned += len(records)
        cursor = records[-1].dagster_run.run_id
    found: dict[str, RunSummary] = {}
    for source, record in newest.items():
        invocation = record.dagster_run.tags.get(VOXLAKE_TAG)
        group = [record]
        if invocation is not None:
            siblings = instance.get_run_records(dg.RunsFilter(tags={VOXLAKE_TAG: invocation}))
            group = [r for r in siblings if source in _sources_of_run(r.dagster_run, order, units)]
        found[source] = _summary(group)
    return found


def read_run_state(project: Project) -> RunState:
    """What the project's Dagster instance says about its sources, units and runs."""
    if not (project.dagster_home / "dagster.yaml").exists():
        return RunState()  # no instance yet: nothing ever ran
    instance = open_instance(project)
    sources = [s.name for s in project.config.sources]
    units = [
        u
        for u in instance.get_dynamic_partitions(UNITS_PARTITIONS_NAME)
        if source_of_unit(u) in sources
    ]
    return RunState(
        units=_unit_states(instance, project, sources, units),
        inventories={s: _inventory_state(instance, project, s) for s in sources},
        last_runs=_last_runs(instance, sources, units),
    )


def read_status(project: Project) -> ProjectStatus:
    """The project's status: the lake's facts with the instance's states and runs."""
    return project_status(project, read_run_state(project))
