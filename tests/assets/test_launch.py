"""The Dagster processes of `voxlake run` start before Dagster is imported, from settings
read without it, and the daemon waits for the code server instead of racing it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from assets.instance import max_concurrent_runs
from assets.launch import configured_max_concurrent_runs, free_port, run_slots
from assets.worker_preload import import_instance_classes

QUEUED = "run_coordinator:\n  module: dagster.core.run_coordinator\n  class: QueuedRunCoordinator\n"


@pytest.mark.parametrize(
    "dagster_yaml",
    [
        "",
        QUEUED,
        QUEUED + "  config:\n    max_concurrent_runs: 3\n",
        "run_queue:\n  max_concurrent_runs: 5\n",
        "concurrency:\n  runs:\n    max_concurrent_runs: 1\n",
        "concurrency:\n  runs:\n    max_concurrent_runs: -1\n",
        (Path(__file__).resolve().parents[2] / "dagster.yaml").read_text(),
    ],
    ids=["empty", "queued", "coordinator", "run_queue", "concurrency", "unlimited", "project"],
)
def test_the_run_limit_read_without_dagster_is_the_one_dagster_applies(
    tmp_path: Path, dagster_yaml: str
) -> None:
    (tmp_path / "dagster.yaml").write_text(dagster_yaml)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        config = instance.get_concurrency_config().run_queue_config
        assert config is not None
        assert configured_max_concurrent_runs(tmp_path) == config.max_concurrent_runs
        assert run_slots(tmp_path) == max_concurrent_runs(instance)


def test_the_fork_server_preloads_the_storage_classes_the_instance_is_built_from(
    tmp_path: Path,
) -> None:
    (tmp_path / "dagster.yaml").write_text(
        (Path(__file__).resolve().parents[2] / "dagster.yaml").read_text()
    )
    modules = import_instance_classes(str(tmp_path))
    assert "dagster._core.storage.sqlite_storage" in modules
    assert "dagster._core.run_coordinator" in modules
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        built = {
            type(instance.run_storage).__module__,
            type(instance.event_log_storage).__module__,
            type(instance.run_coordinator).__module__,
        }
    # Every class the worker builds comes from a module the preload imported (or below it).
    assert all(any(m.startswith(p) for p in modules) for m in built), (built, modules)


def _run_waiting_process(command: list[str], dagster_home: Path) -> subprocess.CompletedProcess:
    """Run a voxlake process that waits for something which never comes, to its exit."""
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        env={"DAGSTER_HOME": str(dagster_home), "PATH": "/usr/bin:/bin"},
        cwd=Path(__file__).resolve().parents[2],
    )


def test_the_daemon_waits_for_its_code_server_and_says_when_it_never_answers(
    tmp_path: Path,
) -> None:
    port = free_port()  # nothing will listen on it
    started = time.monotonic()
    command = [
        sys.executable, "-m", "assets.daemon_process",
        "--code-server-port", str(port), "--wait-timeout-s", "2",
        "--", "--workspace", str(tmp_path / "workspace.yaml"),
    ]  # fmt: skip
    result = _run_waiting_process(command, tmp_path)
    assert result.returncode == 1, result.stderr
    assert f"the code server on port {port} did not answer within 2 s" in result.stderr
    assert time.monotonic() - started >= 2.0


def test_a_code_server_started_on_a_fresh_project_waits_until_the_instance_exists(
    tmp_path: Path, corpora: Path
) -> None:
    # Two processes opening a fresh SQLite instance at once both stamp its Alembic
    # revision, and every later open fails ("more than one head"): the code server
    # `voxlake run` starts first loads the definitions, then waits for the marker this
    # process writes once it has created the instance.
    from assets.instance import open_instance
    from assets.launch import instance_ready, start_code_server
    from assets.runner import run_assets
    from assets.services import code_server_answers, wait_for_code_server

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from runner_projects import runner_project

    project = runner_project(tmp_path / "proj", corpora, {"custom_hf"}, units_per_run=4)
    assert not instance_ready(project)
    server = start_code_server(project)
    try:
        # Long enough for it to load everything; it neither answers nor creates storage.
        assert not code_server_answers(server.port, 8.0, lambda: server.process.poll() is None)
        assert server.process.poll() is None, server.log.read_text()
        storage = project.dagster_home / "storage"
        assert not (storage / "runs.db").exists() and not (storage / "index.db").exists()
        open_instance(project)
        assert instance_ready(project)
        wait_for_code_server(server.process, server.port, server.log)
    finally:
        server.stop()
    # And `voxlake run`'s own path on a fresh project: server first, instance second.
    fresh = runner_project(tmp_path / "fresh", corpora, {"custom_hf"}, units_per_run=4)
    report = run_assets(fresh, select="key:inventory/*")
    assert report.success, report.failures
    with dg.DagsterInstance.from_config(str(fresh.dagster_home)) as instance:
        assert instance.get_run_by_id(report.run_ids[0]) is not None


def test_a_code_server_whose_instance_never_appears_says_so_and_exits(tmp_path: Path) -> None:
    marker = tmp_path / "never"
    command = [
        sys.executable, "-m", "assets.code_server",
        "--wait-for-file", str(marker), "--wait-timeout-s", "1",
        "--module-name", "assets.definitions", "--port", str(free_port()),
    ]  # fmt: skip
    result = _run_waiting_process(command, tmp_path)
    assert result.returncode == 1, result.stderr
    assert f"{marker} did not appear within 1 s" in result.stderr


_FAMILY = """
import os, sys, time
child = os.fork()
if child == 0:  # the leader's direct child (as the fork server is) forks a worker
    if os.fork() == 0:
        time.sleep(float(sys.argv[1]))
        os._exit(0)
    os.wait()
    os._exit(0)
time.sleep(60)
"""


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux /proc")
@pytest.mark.parametrize("worker_s", [0.5, 30.0])
def test_a_code_server_is_killed_outright_only_once_its_run_workers_have_exited(
    tmp_path: Path, worker_s: float
) -> None:
    from assets.launch import CodeServer, run_workers

    # A group leader (the code server) whose child (the fork server) forked a grandchild
    # (a run worker): only the grandchild counts as a worker.
    leader = subprocess.Popen([sys.executable, "-c", _FAMILY, str(worker_s)], process_group=0)
    server = CodeServer(process=leader, port=0, log_dir=tmp_path, env={})
    try:
        deadline = time.monotonic() + 10
        while not run_workers(leader.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        (worker,) = run_workers(leader.pid) or [None]
        assert worker is not None and worker != leader.pid
        killed = server.kill_once_idle(timeout_s=2.0)
        if worker_s < 2.0:  # the worker ended within the wait: killed at once
            assert killed and leader.poll() is not None
        else:  # still working: left for the graceful stop
            assert not killed and leader.poll() is None
            assert run_workers(leader.pid) == [worker]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()
