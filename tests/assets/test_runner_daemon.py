"""`voxlake run` and the UI share one instance: a UI backfill over the units gives the same
lake as `voxlake run`, and `voxlake run` hands its runs to the daemon `voxlake ui` started.

Apart from test_runner.py so that the two halves run side by side under pytest-xdist.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import dagster as dg
import pytest

from assets.instance import open_instance
from assets.partitions import UNITS_PARTITIONS_NAME
from assets.runner import run_assets

sys.path.insert(0, str(Path(__file__).resolve().parent))  # importlib mode: no test folder on it
from runner_projects import assert_catalogue_equals_rebuild, lake_files, runner_project

pytestmark = pytest.mark.slow


def test_a_ui_backfill_over_units_gives_what_voxlake_run_gives(
    tmp_path: Path, corpora: Path
) -> None:
    """The backfill the UI's "Materialize all" submits, run by the daemon, cut by the unit
    assets' backfill policy: the same lake, byte for byte, as `voxlake run`."""
    import time

    from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill

    from assets.services import dagster_services

    sources = {"custom_hf", "custom_folder"}
    by_run = runner_project(tmp_path / "a" / "proj", corpora, sources, units_per_run=2)
    assert run_assets(by_run).success

    by_backfill = runner_project(tmp_path / "b" / "proj", corpora, sources, units_per_run=2)
    assert run_assets(by_backfill, select="group:ingest and not key:manifest").success
    instance = open_instance(by_backfill)
    unit_assets = [dg.AssetKey(k) for k in ("manifest", "quality", "tokens")]
    with dagster_services(by_backfill, instance) as services:
        workspace = services.context.create_request_context()
        backfill = PartitionBackfill.from_asset_partitions(
            backfill_id="uibackfill",
            asset_graph=workspace.asset_graph,
            partition_names=None,
            asset_selection=[*unit_assets, dg.AssetKey("catalogue")],
            backfill_timestamp=time.time(),
            tags={},
            dynamic_partitions_store=instance,
            all_partitions=True,
            title=None,
            description=None,
            run_config=None,
        )
        instance.add_backfill(backfill)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            status = instance.get_backfill("uibackfill").status
            if status not in (BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING):
                break
            time.sleep(1)
    assert status == BulkActionStatus.COMPLETED_SUCCESS, status
    runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": "uibackfill"}))
    units = instance.get_dynamic_partitions(UNITS_PARTITIONS_NAME)
    unit_runs = [
        r for r in runs if r.asset_selection and dg.AssetKey("tokens") in r.asset_selection
    ]
    assert len(unit_runs) == math.ceil(len(units) / 2)  # the backfill policy's two per run
    assert lake_files(by_backfill) == lake_files(by_run)
    assert_catalogue_equals_rebuild(by_backfill, tmp_path)


def test_voxlake_run_submits_to_the_daemon_of_voxlake_ui(tmp_path: Path, corpora: Path) -> None:
    """With `voxlake ui` up, `voxlake run` starts no daemon of its own: the UI's daemon takes
    its runs off the same queue, under the same code location name."""
    import socket
    import subprocess
    import sys
    import time

    from assets.instance import daemon_running

    project = runner_project(tmp_path / "proj", corpora, {"custom_hf"}, units_per_run=4)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ui = subprocess.Popen(
        [sys.executable, "-m", "assets.cli", "ui", "--port", str(port),
         "--project", str(project.directory)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        instance = open_instance(project)
        deadline = time.monotonic() + 180
        while not daemon_running(instance):
            assert ui.poll() is None, "voxlake ui exited"
            assert time.monotonic() < deadline, "the UI's daemon sent no heartbeat"
            time.sleep(1)
        report = run_assets(project)
        assert report.success, report.failures
        assert report.run_ids and not report.started_daemon
    finally:
        import os
        import signal

        os.killpg(ui.pid, signal.SIGTERM)
        try:
            ui.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)
