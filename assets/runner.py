"""`voxlake run`: materialise what is missing or stale, through the project's Dagster instance.

Nothing here executes a step. The runner plans (`assets.plan`), then submits
runs to the instance's run coordinator exactly as a backfill would (the
`units` partitions cut into ranges of at most `execution.units_per_run`, every
range one run through all the per-unit assets it needs), and follows them: the
daemon launches them as `max_concurrent_runs` allows, the code location's
launcher starts each run worker, and the configured executor runs its steps.
Stage by stage: inventories, then units, then the lake-wide assets (the
catalogue first), then training; after each stage the plan is made again, so a
unit that failed is left out (and reported) while the others go on.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import dagster as dg

from assets.definitions import (
    INVENTORY_JOB,
    LAKE_JOB,
    TRAINING_JOB,
    UNIT_JOB,
    build_definitions,
)
from assets.instance import max_concurrent_runs, open_instance
from assets.launch import CodeServer, start_code_server
from assets.plan import Plan, plan_work
from assets.services import dagster_services
from assets.submit import VOXLAKE_TAG, RunOutcome, cancel_runs, follow_runs, submit_run
from assets.training import TRAINING_GROUP
from pipelines.locks import LockHeldError, process_lock
from pipelines.project import Project
from pipelines.units import read_units_index, source_of_unit

log = logging.getLogger(__name__)

RunSpec = tuple[str, list[dg.AssetKey], tuple[str, str] | None]
"""A run to submit: job name, assets, and the range of units (None when unpartitioned)."""
Outcomes = dict[str, RunOutcome]

DAEMON_CHECK_S = 15.0
"""While runs wait in the queue, how often to check that a daemon still serves it."""

MAX_UNIT_ROUNDS = 4
"""Unit stages per `voxlake run`: a round re-runs what a partly failed run left undone."""


@dataclass
class Progress:
    """What the progress display shows: the stage, and its units or runs done of all."""

    stage: str
    done: int
    total: int
    runs_done: int
    runs_total: int
    hours_done: float | None = None
    hours_total: float | None = None
    """Hours of audio of the units done and planned (the durations the inventory planned
    them with: declared, else read from the audio headers); None where the plan does not
    know them (inventories, lake-wide and training assets)."""
    log_dir: str | None = None
    """The folder of this `voxlake run`'s Dagster logs (code server, run workers, daemon)."""
    materialized: frozenset[str] = frozenset()
    """The assets materialized so far in this stage (by name, any unit)."""


@dataclass
class RunReport:
    """What a `voxlake run` did: Dagster run ids, what failed, what only warned."""

    run_ids: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    units: list[str] = field(default_factory=list)
    failed_units: set[str] = field(default_factory=set)
    failed_sources: set[str] = field(default_factory=set)
    nothing_to_do: bool = False
    started_daemon: bool = False
    log_dir: str | None = None
    invocation: str = ""
    reasons: dict[str, str] = field(default_factory=dict)
    """Why each planned asset (by key) and unit (by name) ran: `Plan.reasons` of every
    plan made, the latest one winning; also logged to the run's CLI log."""

    @property
    def success(self) -> bool:
        """True when every step and every blocking check passed (warnings do not count)."""
        return not self.failures


class RunLockedError(RuntimeError):
    """Another `voxlake run` is working on this project; the message names its process."""


@contextlib.contextmanager
def run_lock(project: Project) -> Iterator[None]:
    """Hold the project's run lock (flock on `<dagster home>/voxlake-run.lock`).

    Two `voxlake run` on one project would plan the same work and both do it; the
    second refuses at once, naming the first. The lock dies with its process.
    """
    try:
        with process_lock(project.dagster_home / "voxlake-run.lock"):
            yield
    except LockHeldError as error:
        raise RunLockedError(
            f"another `voxlake run` (process {error.holder}) is working on {project.directory}; "
            "wait for it to finish (its runs are in `voxlake ui`)"
        ) from None


class SelectionError(ValueError):
    """`--select` or `--source` names nothing that exists; the message says what does."""


def resolve_selection(graph, select: str | None) -> set[dg.AssetKey]:
    """The asset keys `select` (Dagster's selection syntax) names; everything when None."""
    if not select:
        return set(graph.get_all_asset_keys())
    try:
        keys = set(dg.AssetSelection.from_string(select).resolve(graph))
    except Exception as error:  # Dagster raises several kinds for a bad selection
        raise SelectionError(f"bad selection {select!r}: {error}") from error
    if not keys:
        raise SelectionError(f"selection {select!r} matches no asset")
    return keys


def unit_batches(
    needed: dict[str, tuple[str, ...]], order: list[str], units_per_run: int, run_slots: int
) -> list[tuple[tuple[str, ...], str, str, int]]:
    """Ranges of consecutive units (in partition order) that need the same assets.

    Each is `(assets, first unit, last unit, n units)`, at most `units_per_run`
    long, and short enough that the runs fill `run_slots` when there are few units.

    >>> order = ["a.x.0", "a.x.1", "a.x.2", "a.x.3", "a.x.4"]
    >>> needed = {u: ("manifest", "quality") for u in order if u != "a.x.2"}
    >>> [(first, last, n) for _, first, last, n in unit_batches(needed, order, 16, 1)]
    [('a.x.0', 'a.x.1', 2), ('a.x.3', 'a.x.4', 2)]
    >>> [(first, last) for _, first, last, _ in unit_batches(needed, order, 1, 1)]
    [('a.x.0', 'a.x.0'), ('a.x.1', 'a.x.1'), ('a.x.3', 'a.x.3'), ('a.x.4', 'a.x.4')]
    """
    size = max(1, min(units_per_run, math.ceil(len(needed) / max(1, run_slots))))
    batches: list[tuple[tuple[str, ...], str, str, int]] = []
    current: list[str] = []
    current_assets: tuple[str, ...] | None = None

    def close() -> None:
        if current and current_assets is not None:
            batches.append((current_assets, current[0], current[-1], len(current)))

    for unit in order:
        assets = needed.get(unit)
        if assets != current_assets or assets is None or len(current) >= size:
            close()
            current, current_assets = [], assets
        if assets is not None:
            current.append(unit)
    close()
    return batches


def run_assets(
    project: Project,
    select: str | None = None,
    sources: list[str] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    force: bool = False,
    code_server: CodeServer | None = None,
) -> RunReport:
    """Materialise what is missing or stale in `select` (default: everything) for `sources`.

    `code_server`, when given, is one the caller started early (`assets.launch`);
    it is stopped on return either way.

    Raises SelectionError for a selection or source that names nothing, RunLockedError
    when another `voxlake run` works on the project, ServiceError when a Dagster
    process does not start.
    """
    try:
        with run_lock(project):
            # Started before the instance opens and the plan is made: it loads the
            # definitions meanwhile (and, on a fresh project, waits for this process to
            # create the instance). Stopped again when there is nothing to do.
            code_server = code_server or start_code_server(project)
            instance = open_instance(project)
            return _plan_and_run(
                project, instance, code_server, select, sources, on_progress, force
            )
    finally:
        if code_server is not None:
            code_server.stop()  # a no-op when the services stopped it already


def _plan_and_run(
    project: Project,
    instance: dg.DagsterInstance,
    code_server: CodeServer,
    select: str | None,
    sources: list[str] | None,
    on_progress: Callable[[Progress], None] | None,
    force: bool,
) -> RunReport:
    defs = build_definitions(project.directory)
    graph = defs.resolve_asset_graph()
    selected = resolve_selection(graph, select)
    names = sources or [s.name for s in project.config.sources]
    for name in names:
        try:
            project.config.source(name)
        except KeyError as error:
            raise SelectionError(str(error.args[0])) from error
    training_keys = {k for k in selected if graph.get(k).group_name == TRAINING_GROUP}
    if select is None and project.config.training.release is None:
        selected -= training_keys  # nothing to train on: "everything" means the data pipeline
    report = RunReport(invocation=uuid.uuid4().hex[:12])

    def plan() -> Plan:
        made = plan_work(
            instance,
            graph,
            project,
            selected,
            # A source whose inventory failed is left out; the others go on.
            [n for n in names if n not in report.failed_sources],
            training_keys=training_keys,
            force=force and not report.run_ids,
            exclude_units=report.failed_units,
        )
        for name, why in made.reasons.items():
            if report.reasons.get(name) != why:
                log.info("planned %s: %s", name, why)
        report.reasons.update(made.reasons)
        return made

    current = plan()
    if current.empty:
        report.nothing_to_do = True
        report.warnings.extend(_never_inventoried(instance, graph, selected, names))
        return report
    run_slots = max_concurrent_runs(instance)
    tags = {VOXLAKE_TAG: report.invocation}
    with dagster_services(project, instance, code_server) as services:
        report.log_dir = str(services.log_dir)

        submitted: list[str] = []
        plan_cache: dict = {}  # job snapshots and plans per asset selection, for every stage

        def stage(
            name: str,
            requests: list[RunSpec],
            total: int,
            count: Callable[[Outcomes], int],
            hours: Callable[[Outcomes], float] | None = None,
            hours_total: float | None = None,
        ) -> Outcomes:
            run_ids = [
                submit_run(services.context, job, keys, units, tags, plan_cache)
                for job, keys, units in requests
            ]
            submitted.extend(run_ids)
            report.run_ids.extend(run_ids)

            last_check = [time.monotonic()]

            def show(outcomes: dict[str, RunOutcome]) -> None:
                queued = any(o.status == dg.DagsterRunStatus.QUEUED for o in outcomes.values())
                if queued and time.monotonic() - last_check[0] > DAEMON_CHECK_S:
                    # The daemon we relied on (the UI's) may have stopped meanwhile.
                    last_check[0] = time.monotonic()
                    services.ensure_daemon()
                if on_progress is not None:
                    on_progress(
                        Progress(
                            stage=name,
                            done=count(outcomes),
                            total=total,
                            runs_done=sum(o.finished for o in outcomes.values()),
                            runs_total=len(outcomes),
                            hours_done=hours(outcomes) if hours and hours_total else None,
                            hours_total=hours_total,
                            log_dir=report.log_dir,
                            materialized=frozenset(
                                a for o in outcomes.values() for a, _ in o.materialized
                            ),
                        )
                    )

            outcomes = follow_runs(instance, run_ids, on_poll=show)
            for outcome in outcomes.values():
                report.failures.extend(f"{name}: {f}" for f in outcome.failures)
                report.warnings.extend(f"{name}: {w}" for w in outcome.warnings)
                report.failed_units.update(outcome.failed_units)
            return outcomes

        try:
            if current.inventories:
                outcomes = stage(
                    "inventory",
                    [(INVENTORY_JOB, current.inventories, None)],
                    len(current.inventories),
                    _count_assets,
                )
                done = {a for o in outcomes.values() for a, _ in o.materialized}
                report.failed_sources.update(
                    k.path[-1] for k in current.inventories if k.to_user_string() not in done
                )
                current = plan()
            for _ in range(MAX_UNIT_ROUNDS):
                if not current.units:
                    break
                last_asset = {a[-1] for a in current.units.values()}
                report.units = sorted(set(report.units) | set(current.units))
                batches = unit_batches(
                    current.units,
                    current.unit_order,
                    project.config.execution.units_per_run,
                    run_slots,
                )
                unit_hours = _unit_hours(project, current.units)
                outcomes = stage(
                    "units",
                    [
                        (UNIT_JOB, [dg.AssetKey(a) for a in assets], (first, last))
                        for assets, first, last, _ in batches
                    ],
                    len(current.units),
                    lambda o, last_asset=last_asset: len(_units_done(o, last_asset)),
                    lambda o, last_asset=last_asset, hours=unit_hours: sum(
                        hours.get(u, 0.0) for u in _units_done(o, last_asset)
                    ),
                    sum(unit_hours.values()) or None,
                )
                for outcome, batch in zip(outcomes.values(), batches, strict=True):
                    _blame_units(outcome, batch, current.unit_order, report)
                current = plan()
            if current.lake:
                lake = current.lake
                if report.failures:
                    # Fold in what did succeed, but release nothing from a partial lake.
                    lake = [k for k in lake if k.path[-1] in ("catalogue", "quality_report")]
                if lake:
                    stage("lake", [(LAKE_JOB, lake, None)], len(lake), _count_assets)
                current = plan()
            if current.training and not report.failures:
                stage(
                    "training",
                    [(TRAINING_JOB, current.training, None)],
                    len(current.training),
                    _count_assets,
                )
        except KeyboardInterrupt:
            cancel_runs(instance, submitted)
            raise
        finally:
            report.started_daemon = services.started_daemon
    return report


def _never_inventoried(
    instance, graph, selected: set[dg.AssetKey], sources: list[str]
) -> list[str]:
    """Why a selection of per-unit assets finds nothing: sources whose inventory never ran
    (and is not selected), so they have no units yet."""
    if not any(graph.get(k).is_partitioned for k in selected):
        return []
    missing = [
        name
        for name in sources
        if dg.AssetKey(["inventory", name]) not in selected
        and instance.get_latest_materialization_event(dg.AssetKey(["inventory", name])) is None
    ]
    if not missing:
        return []
    return [
        f"source {name!r} has no units yet: its inventory never ran; select it too "
        f"(e.g. --select 'key:inventory/{name} or ...') or run `voxlake run` without --select"
        for name in missing
    ]


def _units_done(outcomes: Outcomes, last_asset: set[str]) -> set[str]:
    """Units whose last planned asset has materialized (what the progress counts)."""
    return {
        unit
        for outcome in outcomes.values()
        for asset, unit in outcome.materialized
        if asset in last_asset and unit is not None
    }


def _unit_hours(project: Project, units: Iterable[str]) -> dict[str, float]:
    """Hours of audio per unit, as the inventory planned it (0 where it declared none)."""
    wanted = set(units)
    hours: dict[str, float] = {}
    for source in sorted({source_of_unit(u) for u in wanted}):
        for plan in read_units_index(project.lake, source):
            if plan.unit in wanted:
                hours[plan.unit] = plan.declared_duration_s / 3600
    return hours


def _count_assets(outcomes: dict[str, RunOutcome]) -> int:
    return sum(len(o.materialized) for o in outcomes.values())


def _blame_units(
    outcome: RunOutcome,
    batch: tuple[tuple[str, ...], str, str, int],
    order: list[str],
    report: RunReport,
) -> None:
    """Units of a failed run that did not get through: failed, unless the run named them.

    A step names its failed units; a run whose process died, or whose blocking
    check failed for its one unit, names none, and then every unit of its range
    that did not reach the range's last asset counts as failed.
    """
    if outcome.status == dg.DagsterRunStatus.SUCCESS or outcome.failed_units:
        return
    assets, first, last, _ = batch
    units = order[order.index(first) : order.index(last) + 1]
    done = {p for asset, p in outcome.materialized if asset == assets[-1]}
    report.failed_units.update(u for u in units if u not in done)
