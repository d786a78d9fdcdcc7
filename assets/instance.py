"""The project's Dagster instance: opened with voxlake's pools, and what it says about itself.

The instance lives in the project's Dagster home (`<project>/.dagster`, or
`$VOXLAKE_DAGSTER_HOME`): with the bundled `dagster.yaml`, SQLite storage there and
a queued run coordinator. A deployment profile (`deploy/`) swaps in PostgreSQL
storage and a cluster executor without any change to the assets.
"""

from __future__ import annotations

import time

import dagster as dg

from assets.launch import INSTANCE_READY_FILE
from assets.pools import pool_limits
from pipelines.project import Project
from pipelines.runtime import usable_cores

DAEMON_FRESH_S = 60.0
"""A daemon whose last heartbeat is younger than this counts as running."""


def open_instance(project: Project) -> dg.DagsterInstance:
    """The project's Dagster instance, with the pool limits of this machine set."""
    home = project.ensure_dagster_home()
    instance = dg.DagsterInstance.from_config(str(home))
    for pool, limit in pool_limits().items():
        if instance.event_log_storage.get_concurrency_info(pool).slot_count != limit:
            instance.event_log_storage.set_concurrency_slots(pool, limit)
    # From now on other Dagster processes may open it too (`assets.launch.instance_ready`).
    ready = home / INSTANCE_READY_FILE
    if not ready.exists():
        ready.write_text("the storage of this Dagster instance exists\n")
    return instance


def max_concurrent_runs(instance: dg.DagsterInstance) -> int:
    """Runs the instance's queue launches at once (`concurrency.runs.max_concurrent_runs`)."""
    config = instance.get_concurrency_config().run_queue_config
    limit = config.max_concurrent_runs if config is not None else -1
    return limit if limit > 0 else usable_cores()


def daemon_running(instance: dg.DagsterInstance, now: float | None = None) -> bool:
    """True when a Dagster daemon for this instance has sent a heartbeat recently."""
    now = time.time() if now is None else now
    beats = instance.get_daemon_heartbeats()
    beat = beats.get("QUEUED_RUN_COORDINATOR")
    return beat is not None and now - beat.timestamp < DAEMON_FRESH_S
