"""Submit runs to the instance's queue as a backfill or a sensor would, and follow them.

`submit_run` creates a run from the code location (so it carries the location's
origin and the job's snapshot) for a set of assets and, for per-unit assets, a
range of units, then submits it to the run coordinator in `dagster.yaml`: with
the bundled one it is ENQUEUED, and the daemon launches it when a slot frees up.
`follow_runs` polls the instance's event log until every run has finished,
reporting progress and collecting what failed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import dagster as dg
from dagster._core.events import DagsterEventType
from dagster._core.execution.submit_asset_runs import submit_asset_run
from dagster._core.storage.dagster_run import DagsterRunStatus
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)
from dagster._core.workspace.context import WorkspaceProcessContext

POLL_S = 0.5
VOXLAKE_TAG = "voxlake/invocation"
"""Tag on every run of one `voxlake run`: its id (filter the UI's run list by it)."""

FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}

_FOLLOWED_EVENTS = {
    DagsterEventType.ASSET_MATERIALIZATION,
    DagsterEventType.ASSET_CHECK_EVALUATION,
    DagsterEventType.STEP_FAILURE,
    DagsterEventType.RUN_FAILURE,
    DagsterEventType.STEP_UP_FOR_RETRY,
}

_log = logging.getLogger("voxlake.submit")


def submit_run(
    context: WorkspaceProcessContext,
    job_name: str,
    asset_keys: Iterable[dg.AssetKey],
    units: tuple[str, str] | None = None,
    tags: dict[str, str] | None = None,
    plan_cache: dict | None = None,
) -> str:
    """Create and submit one run of `job_name` materialising `asset_keys`; return its id.

    `units` is the first and last unit of a range of the `units` partitions (the
    same unit twice for one unit); None for unpartitioned assets. `plan_cache`,
    shared between calls, keeps the job snapshot and execution plan of each asset
    selection, as a backfill does: runs of the same assets over other units reuse
    them instead of asking the code server again.
    """
    run_tags = dict(tags or {})
    if units is not None:
        first, last = units
        if first == last:
            run_tags[PARTITION_NAME_TAG] = first
        else:
            run_tags[ASSET_PARTITION_RANGE_START_TAG] = first
            run_tags[ASSET_PARTITION_RANGE_END_TAG] = last
    request = dg.RunRequest(job_name=job_name, asset_selection=list(asset_keys), tags=run_tags)
    workspace = context.create_request_context()
    run = asyncio.run(
        submit_asset_run(
            run_id=None,
            run_request=request,
            run_request_index=0,
            instance=context.instance,
            workspace_process_context=context,
            workspace=workspace,
            run_request_execution_data_cache=plan_cache if plan_cache is not None else {},
            debug_crash_flags={},
            logger=_log,
        )
    )
    return run.run_id


@dataclass
class RunOutcome:
    """What one followed run did."""

    run_id: str
    status: DagsterRunStatus = DagsterRunStatus.QUEUED
    materialized: set[tuple[str, str | None]] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    failed_units: set[str] = field(default_factory=set)
    cursor: str | None = None

    @property
    def finished(self) -> bool:
        """True once the run has ended, whichever way."""
        return self.status in FINISHED


def _check_event(outcome: RunOutcome, evaluation) -> None:
    if evaluation.passed:
        return
    name = evaluation.asset_check_key.to_user_string()
    metadata = {k: v.value for k, v in (evaluation.metadata or {}).items()}
    units = metadata.get("failed_units") or []
    description = evaluation.description or ""
    if evaluation.severity == dg.AssetCheckSeverity.WARN:
        outcome.warnings.append(f"check {name}: {description}".rstrip(": "))
        return
    outcome.failed_units.update(units)
    outcome.failures.append(f"check {name} failed: {description}".rstrip(": "))


def error_text(error) -> str:
    """The user's own error inside Dagster's wrapper ("Error occurred while executing op")."""
    if error is None:
        return ""
    while error.cause is not None:
        error = error.cause
    return error.message.strip()


def _step_failure(outcome: RunOutcome, event) -> None:
    data = event.step_failure_data
    error = error_text(data.error)
    user = data.user_failure_data
    if user is not None:
        metadata = {k: v.value for k, v in (user.metadata or {}).items()}
        outcome.failed_units.update(metadata.get("failed_units") or [])
        error = (user.description or error).strip()
    outcome.failures.append(f"step {event.step_key} failed: {error}")


def poll_run(instance: dg.DagsterInstance, outcome: RunOutcome) -> list[dg.EventLogEntry]:
    """Read the run's new events into `outcome`; return the new log entries."""
    connection = instance.get_records_for_run(
        outcome.run_id, cursor=outcome.cursor, of_type=_FOLLOWED_EVENTS
    )
    outcome.cursor = connection.cursor
    entries = []
    for record in connection.records:
        entry = record.event_log_entry
        event = entry.dagster_event
        entries.append(entry)
        if event is None:
            continue
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.step_materialization_data.materialization
            outcome.materialized.add(
                (materialization.asset_key.to_user_string(), materialization.partition)
            )
        elif event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            _check_event(outcome, event.event_specific_data)
        elif event.event_type == DagsterEventType.STEP_FAILURE:
            _step_failure(outcome, event)
        elif event.event_type == DagsterEventType.RUN_FAILURE:
            message = (entry.dagster_event.message or "run failed").strip()
            if not outcome.failures:
                outcome.failures.append(message)
    run = instance.get_run_by_id(outcome.run_id)
    if run is not None:
        outcome.status = run.status
    return entries


def follow_runs(
    instance: dg.DagsterInstance,
    run_ids: list[str],
    on_poll: Callable[[dict[str, RunOutcome]], None] | None = None,
    poll_s: float = POLL_S,
) -> dict[str, RunOutcome]:
    """Poll the runs until every one has finished; call `on_poll` after each round."""
    outcomes = {run_id: RunOutcome(run_id) for run_id in run_ids}
    while True:
        for outcome in outcomes.values():
            if not outcome.finished:
                poll_run(instance, outcome)
                if outcome.finished:
                    poll_run(instance, outcome)  # events written just before the status
        if on_poll is not None:
            on_poll(outcomes)
        if all(o.finished for o in outcomes.values()):
            return outcomes
        time.sleep(poll_s)


def cancel_runs(instance: dg.DagsterInstance, run_ids: Iterable[str]) -> None:
    """Cancel queued runs and terminate running ones (on Ctrl-C)."""
    for run_id in run_ids:
        run = instance.get_run_by_id(run_id)
        if run is None or run.status in FINISHED:
            continue
        if run.status in (DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED):
            instance.report_run_canceled(run, message="cancelled by voxlake run (interrupted)")
        else:
            instance.run_launcher.terminate(run_id)
