"""The code server `voxlake run` starts forks its run workers from a warm fork server."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from assets.instance import open_instance
from assets.launch import start_code_server
from assets.runner import run_assets
from assets.services import wait_for_code_server

sys.path.insert(0, str(Path(__file__).resolve().parent))  # importlib mode: no test folder on it
from runner_projects import runner_project

pytestmark = pytest.mark.slow


def _children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    found: list[int] = []
    for task in tasks.iterdir():
        text = (task / "children").read_text().split()
        found += [int(child) for child in text]
    return found


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _is_fork_server(pid: int) -> bool:
    # Forked from the code server (its command line) or, where that could not be done,
    # spawned by multiprocessing (`-c from multiprocessing.forkserver import main; ...`).
    cmdline = _cmdline(pid)
    return "assets.code_server" in cmdline or "multiprocessing.forkserver" in cmdline


def _fork_servers(server_pid: int, timeout_s: float = 60.0) -> list[int]:
    """The fork server processes under the code server, once there is one (or none in time)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = [c for c in _children(server_pid) if _is_fork_server(c)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_the_code_server_keeps_a_fork_server_preloaded_with_the_definitions(
    tmp_path: Path, corpora: Path
) -> None:
    project = runner_project(tmp_path / "proj", corpora, {"custom_hf"}, units_per_run=4)
    open_instance(project)
    server = start_code_server(project)
    try:
        wait_for_code_server(server.process, server.port, server.log)
        # The code server runs behind a parent-death wrapper that execs it: same pid.
        fork_servers = _fork_servers(server.process.pid)
        assert fork_servers, "the code server started no fork server"
        # Preloaded: Dagster (and with it gRPC's extension) is already in its memory.
        maps = Path(f"/proc/{fork_servers[0]}/maps").read_text()
        assert "cygrpc" in maps, "the fork server has not imported Dagster"
        # ... and, imported by the fork server itself, pandas (pyarrow's first table from
        # Python rows would import it in every run worker).
        deadline = time.monotonic() + 30
        while "pandas/_libs" not in maps and time.monotonic() < deadline:
            time.sleep(0.2)
            maps = Path(f"/proc/{fork_servers[0]}/maps").read_text()
        assert "pandas/_libs" in maps, "the fork server has not imported pandas"
        code_server_maps = Path(f"/proc/{server.process.pid}/maps").read_text()
        assert "pandas/_libs" not in code_server_maps, "the code server waited for pandas"
    finally:
        server.used = True  # keep its log for a failure's report
        server.stop()


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_a_code_server_that_served_nothing_stops_at_once_with_its_fork_server(
    tmp_path: Path, corpora: Path
) -> None:
    project = runner_project(tmp_path / "proj", corpora, {"custom_hf"}, units_per_run=4)
    open_instance(project)
    server = start_code_server(project)
    wait_for_code_server(server.process, server.port, server.log)
    fork_servers = _fork_servers(server.process.pid)
    assert fork_servers
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 0.5  # killed, not a graceful gRPC shutdown
    assert server.process.returncode is not None
    assert not server.log_dir.exists()  # nothing happened, nothing to keep
    deadline = time.monotonic() + 10
    while Path(f"/proc/{fork_servers[0]}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{fork_servers[0]}").exists(), "the fork server outlived its server"


def test_runs_through_forked_workers_succeed_and_log_to_the_run(
    tmp_path: Path, corpora: Path
) -> None:
    project = runner_project(tmp_path / "proj", corpora, {"custom_hf"}, units_per_run=4)
    report = run_assets(project, select="key:inventory/*")
    assert report.success, report.failures
    instance = open_instance(project)
    (run_id,) = report.run_ids
    run = instance.get_run_by_id(run_id)
    assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
    # The step's own log lines (written in the forked worker) reached the run's events.
    messages = [e.user_message for e in instance.all_logs(run_id)]
    assert any("custom_hf: 6 input utterances" in m for m in messages), messages[-10:]
