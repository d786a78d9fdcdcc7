"""Materialize a project's assets through Dagster, on the project's own instance.

Used by `voxlake run` and `voxlake demo` (`assets/cli.py`). Runs are real Dagster
runs recorded in the project's `DAGSTER_HOME` (so they appear in the UI's run
history): first the unpartitioned assets that plan units (inventories), then one
run per unit for the selected per-unit assets, then unpartitioned downstream assets.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field

import dagster as dg

from assets.definitions import (
    INVENTORY_JOB,
    LAKE_JOB,
    TRAINING_JOB,
    UNIT_JOB,
    build_definitions,
)
from assets.partitions import UNITS_PARTITIONS_NAME
from assets.pools import POOL_LIMITS
from assets.training import TRAINING_GROUP
from pipelines.project import Project
from pipelines.units import source_of_unit


@dataclass
class RunReport:
    """What a `voxlake run` did: Dagster run ids and what failed."""

    run_ids: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    units: list[str] = field(default_factory=list)

    @property
    def success(self) -> bool:
        """True when every step and every blocking check passed."""
        return not self.failures


def open_instance(project: Project) -> dg.DagsterInstance:
    """The project's Dagster instance (SQLite in `<project>/.dagster`), pools configured."""
    home = project.ensure_dagster_home()
    os.environ["DAGSTER_HOME"] = str(home)
    instance = dg.DagsterInstance.from_config(str(home))
    for pool, limit in POOL_LIMITS.items():
        if instance.event_log_storage.get_concurrency_info(pool).slot_count != limit:
            instance.event_log_storage.set_concurrency_slots(pool, limit)
    return instance


def _failure_messages(result: dg.ExecuteInProcessResult, label: str) -> list[str]:
    messages = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            messages.append(
                f"{label}: step {event.step_key} failed: {error.message.strip() if error else ''}"
            )
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            if not evaluation.passed:
                messages.append(
                    f"{label}: check {evaluation.asset_check_key.to_user_string()} failed"
                )
    if not result.success and not messages:
        messages.append(f"{label}: run {result.run_id} failed")
    return messages


def _run_unit(
    project: Project,
    unit: str,
    asset_names: list[str],
    console_log_level: str,
    loaded: tuple[dg.DagsterInstance, dg.Definitions] | None = None,
) -> tuple[str, list[str]]:
    """One unit through the selected per-unit assets, as one Dagster run (any process)."""
    instance, defs = loaded or (open_instance(project), build_definitions(project.directory))
    result = defs.resolve_job_def(UNIT_JOB).execute_in_process(
        instance=instance,
        run_config={"loggers": {"console": {"config": {"log_level": console_log_level}}}},
        partition_key=unit,
        asset_selection=[dg.AssetKey.from_user_string(n) for n in asset_names],
        raise_on_error=False,
    )
    return result.run_id, _failure_messages(result, unit)


def run_assets(
    project: Project,
    select: str | None = None,
    sources: list[str] | None = None,
    on_unit: Callable[[str, int, int], None] | None = None,
    console_log_level: str = "WARNING",
    parallel: int = 1,
) -> RunReport:
    """Materialize `select` (Dagster selection syntax; default: everything) for `sources`.

    Every event is stored in the instance whatever `console_log_level` says; the
    level only decides what is also echoed to the terminal. With `parallel` > 1,
    that many unit runs go at once, each in its own process.
    """
    run_config = {"loggers": {"console": {"config": {"log_level": console_log_level}}}}
    instance = open_instance(project)
    defs = build_definitions(project.directory)
    graph = defs.resolve_asset_graph()
    selection = dg.AssetSelection.from_string(select) if select else dg.AssetSelection.all()
    keys = selection.resolve(graph)
    names = sources or [s.name for s in project.config.sources]
    for name in names:
        project.config.source(name)  # a KeyError naming the known sources
    report = RunReport()

    inventory_keys = [
        k
        for k in keys
        if not graph.get(k).is_partitioned and k.path[0] == "inventory" and k.path[-1] in names
    ]
    if inventory_keys:
        result = defs.resolve_job_def(INVENTORY_JOB).execute_in_process(
            instance=instance,
            run_config=run_config,
            asset_selection=inventory_keys,
            raise_on_error=False,
            tags={"voxlake/sources": ",".join(names)},
        )
        report.run_ids.append(result.run_id)
        report.failures += _failure_messages(result, "inventory")
        if not result.success:
            return report

    unit_keys = [k for k in keys if graph.get(k).is_partitioned]
    if unit_keys:
        units = [
            u
            for u in instance.get_dynamic_partitions(UNITS_PARTITIONS_NAME)
            if source_of_unit(u) in names
        ]
        units.sort()
        report.units = units
        unit_names = [k.to_user_string() for k in unit_keys]
        if parallel <= 1:
            for index, unit in enumerate(units):
                if on_unit is not None:
                    on_unit(unit, index, len(units))
                run_id, failures = _run_unit(
                    project, unit, unit_names, console_log_level, loaded=(instance, defs)
                )
                report.run_ids.append(run_id)
                report.failures += failures
        else:
            # One process per worker: unit runs are independent, and the catalogue step
            # serialises itself (pool `catalogue` = 1, and the catalogue's writer lock).
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=parallel, mp_context=context) as pool:
                futures = {
                    pool.submit(_run_unit, project, u, unit_names, console_log_level): u
                    for u in units
                }
                for done, future in enumerate(as_completed(futures)):
                    run_id, failures = future.result()
                    report.run_ids.append(run_id)
                    report.failures += failures
                    if on_unit is not None:
                        on_unit(futures[future], done + 1, len(units))
        if on_unit is not None:
            on_unit("", len(units), len(units))

    training_keys = [k for k in keys if graph.get(k).group_name == TRAINING_GROUP]
    if select is None and project.config.training.release is None:
        training_keys = []  # nothing to train on: "everything" means the data pipeline
    lake_keys = [
        k
        for k in keys
        if not graph.get(k).is_partitioned
        and k.path[0] != "inventory"
        and graph.get(k).group_name != TRAINING_GROUP
    ]
    for job, job_keys, label in (
        (LAKE_JOB, lake_keys, "lake"),
        (TRAINING_JOB, training_keys, "training"),
    ):
        if not job_keys or report.failures:
            continue
        result = defs.resolve_job_def(job).execute_in_process(
            instance=instance,
            run_config=run_config,
            asset_selection=job_keys,
            raise_on_error=False,
        )
        report.run_ids.append(result.run_id)
        report.failures += _failure_messages(result, label)
    return report
