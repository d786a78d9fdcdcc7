"""Imported once by the fork server of `assets.code_server`: every run worker forked from it
starts with Dagster, its run-execution code and `assets.definitions` already imported.

A project that fails to load is not an error here: the worker then imports the
definitions itself and reports the error in its run, as a spawned worker would.
"""

from __future__ import annotations

import contextlib

import dagster
import dagster._grpc.impl  # noqa: F401  (start_run_in_subprocess and what it executes)

with contextlib.suppress(Exception):
    import assets.definitions  # noqa: F401
