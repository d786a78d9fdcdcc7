"""Imported once by the fork server of `assets.code_server`: every run worker forked from it
starts with Dagster, its run-execution code, `assets.definitions` and the modules of the
instance's storage classes already imported.

The storage modules matter as much as the definitions: a worker's first act is
`DagsterInstance.from_ref`, and importing SQLAlchemy, Alembic and the SQLite (or
PostgreSQL) storages costs ~0.9 s, paid by every run. They are imported here by
the names `dagster.yaml` gives (the same classes the worker will build), without
building any: the fork server opens no database and no connection, so nothing
shared crosses a fork.

A project that fails to load is not an error here: the worker then imports the
definitions itself and reports the error in its run, as a spawned worker would.
"""

from __future__ import annotations

import contextlib
import importlib
import os

import dagster
import dagster._grpc.impl  # noqa: F401  (start_run_in_subprocess and what it executes)


def import_instance_classes(dagster_home: str) -> list[str]:
    """Import the module of every class the instance in `dagster_home` is configured with
    (storages, compute log manager, run coordinator and launcher); the modules imported."""
    from dagster._core.instance.ref import InstanceRef

    ref = InstanceRef.from_dir(dagster_home)
    modules = []
    for field in ref._fields:
        data = getattr(ref, field)
        module = getattr(data, "module_name", None)
        if isinstance(module, str):
            importlib.import_module(module)
            modules.append(module)
    return modules


with contextlib.suppress(Exception):
    import assets.definitions  # noqa: F401

if os.environ.get("DAGSTER_HOME"):
    with contextlib.suppress(Exception):
        import_instance_classes(os.environ["DAGSTER_HOME"])
