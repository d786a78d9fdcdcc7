"""Starting and stopping the Dagster processes of a `voxlake run`, without importing Dagster.

Importing Dagster and opening the instance cost `voxlake run` ~2 s; the code
server it needs takes ~2.5 s to load the definitions. Started from here, before
that import, the code server loads while this process imports and plans, instead
of after. Everything that needs Dagster itself (waiting for the server to answer,
the workspace context, the daemon check) is in `assets.services`.

Everything started here dies with the voxlake process if that is killed (Linux
parent-death signal), and `stop_processes` stops it on the way out.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipelines.project import Project
from pipelines.runtime import TORCH_THREADS_ENV, cores_per_step, usable_cores

LOCATION_NAME = "voxlake"
"""The code location's name: the same in `voxlake run`, `voxlake ui` and every deployment."""

DEFINITIONS_MODULE = "assets.definitions"
LOOPBACK = "127.0.0.1"
STOP_TIMEOUT_S = 20.0
# How long a code server whose runs have all ended is given for its run workers to exit
# before it is stopped the graceful way instead of killed.
WORKERS_EXIT_TIMEOUT_S = 2.0

INSTANCE_READY_FILE = "voxlake-instance-ready"
"""Written in the Dagster home by `assets.instance.open_instance` once the instance's
storage exists (tables created, migrations stamped)."""

DAGSTER_DEFAULT_MAX_CONCURRENT_RUNS = 10
"""What Dagster's queue admits when `dagster.yaml` sets no limit (dagster 1.13)."""


def instance_ready(project: Project) -> bool:
    """True once the project's Dagster instance has been opened (its storage created).

    Before that, no Dagster process may open it beside this one: two processes that
    open a fresh instance at once both create its SQLite tables and stamp their
    Alembic revision, and the instance is left with two heads that every later
    open refuses. (A code server started earlier waits for this marker.)
    """
    return (project.dagster_home / INSTANCE_READY_FILE).is_file()


def configured_max_concurrent_runs(dagster_home: Path) -> int:
    """`max_concurrent_runs` as `dagster.yaml` in `dagster_home` sets it, read without Dagster.

    Dagster reads it from `concurrency.runs`, the older `run_queue`, or the queued
    run coordinator's own config, in that order; `assets.instance.max_concurrent_runs`
    asks the instance itself, and a test checks that the two agree.
    """
    path = dagster_home / "dagster.yaml"
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        return DAGSTER_DEFAULT_MAX_CONCURRENT_RUNS
    candidates = [
        ((config.get("concurrency") or {}).get("runs") or {}).get("max_concurrent_runs"),
        (config.get("run_queue") or {}).get("max_concurrent_runs"),
        ((config.get("run_coordinator") or {}).get("config") or {}).get("max_concurrent_runs"),
    ]
    for value in candidates:
        if isinstance(value, int):
            return value
    return DAGSTER_DEFAULT_MAX_CONCURRENT_RUNS


def run_slots(dagster_home: Path) -> int:
    """Runs at once on this machine: the configured limit, or every usable core without one."""
    limit = configured_max_concurrent_runs(dagster_home)
    return limit if limit > 0 else usable_cores()


def torch_threads_per_run(dagster_home: Path) -> int:
    """Torch threads for each run's steps: this machine's cores shared by the concurrent runs."""
    return cores_per_step(usable_cores(), min(run_slots(dagster_home), usable_cores()))


def service_env(project: Project) -> dict[str, str]:
    """Environment of every process voxlake starts (and of the run workers they start)."""
    threads = str(torch_threads_per_run(project.dagster_home))
    return {
        **os.environ,
        "DAGSTER_HOME": str(project.dagster_home),
        "VOXLAKE_PROJECT": str(project.directory),
        TORCH_THREADS_ENV: os.environ.get(TORCH_THREADS_ENV, threads),
        # Libraries that size their own thread pools at import read these.
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", threads),
        "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS", threads),
        "PYTHONUNBUFFERED": "1",
    }


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


# Run before the real command, in the child: ask Linux for SIGTERM when the voxlake
# process dies, then exec the command (the request survives exec). Done in the child's
# own Python rather than with `preexec_fn`, which is unsafe once the parent has threads
# (gRPC's), and crashes there.
_DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys\n"
    "try:\n"
    "    ctypes.CDLL('libc.so.6').prctl(1, signal.SIGTERM)\n"
    "except Exception:\n"
    "    pass\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)


def start_process(
    command: list[str], env: dict[str, str], cwd: Path, log: Path, own_group: bool = False
) -> subprocess.Popen:
    """Start `command` with its output appended to `log`; it dies with this process.

    With `own_group`, it leads a process group of its own, which its helpers (the
    code server's fork server, run workers and resource tracker) join, so
    `kill_group` stops them all, and a Ctrl-C in the terminal reaches voxlake only
    (which cancels its runs and stops the services in order).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    if sys.platform == "linux":
        command = [sys.executable, "-c", _DIE_WITH_PARENT, *command]
    with log.open("ab") as handle:
        return subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            process_group=0 if own_group else None,
        )


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL what is left of the process group `process` leads (started with `own_group`)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def run_workers(server_pid: int) -> list[int] | None:
    """The run workers (and their step processes) under the code server `server_pid`,
    which leads its own process group; None where /proc cannot tell.

    They are the group's members that are neither the server nor its direct children
    (the fork server, the resource tracker): workers are forked from the fork server.
    """
    proc = Path("/proc")
    if not (proc / "self" / "stat").is_file():
        return None
    found: list[int] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        pid, ppid, pgrp = int(entry.name), int(fields[1]), int(fields[2])
        if pgrp == server_pid and pid != server_pid and ppid != server_pid:
            found.append(pid)
    return found


def stop_processes(processes: list[subprocess.Popen]) -> None:
    """SIGTERM every process at once, then wait for each (SIGKILL after `STOP_TIMEOUT_S`).

    Signalled together, they shut down side by side: stopping costs the slowest
    process's shutdown, not the sum.
    """
    running = [p for p in processes if p.poll() is None]
    for process in running:
        process.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for process in running:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class CodeServer:
    """A code server process started by `start_code_server`, not yet known to answer."""

    process: subprocess.Popen
    port: int
    log_dir: Path
    env: dict[str, str]
    used: bool = False

    @property
    def log(self) -> Path:
        """The code server's log file."""
        return self.log_dir / "code-server.log"

    def kill_once_idle(self, timeout_s: float = WORKERS_EXIT_TIMEOUT_S) -> bool:
        """Kill it (its whole group) once no run worker is left under it, waiting up to
        `timeout_s` for them to exit; False, and nothing done, when some still run then
        or /proc cannot tell.

        For when every run it served has ended: its graceful gRPC shutdown (~1 s of
        `voxlake run`'s wall) would have nothing left to finish. A worker that still
        runs, a run cancelled or a foreign run launched from the UI, keeps the graceful
        stop.
        """
        deadline = time.monotonic() + timeout_s
        while (workers := run_workers(self.process.pid)) != []:
            if workers is None or time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        kill_group(self.process)
        self.process.wait()
        return True

    def stop(self) -> None:
        """Stop it; when no run was served, also remove its log (nothing happened).

        A server that served nothing holds nothing to finish: it is killed at once
        instead of given its graceful gRPC shutdown (~1 s, which a `voxlake run`
        with nothing to do would wait for). Either way its helpers go with it: a
        fork server still importing would otherwise outlive it by seconds.
        """
        if self.used:
            stop_processes([self.process])
            kill_group(self.process)
            return
        kill_group(self.process)
        self.process.wait()
        shutil.rmtree(self.log_dir, ignore_errors=True)


def start_code_server(project: Project) -> CodeServer:
    """Start the code server now; `assets.services.dagster_services` waits for it.

    `voxlake run` starts it before it imports Dagster and plans, so the server's
    ~2.5 s of loading the definitions overlap those instead of following them. On a
    project whose instance does not exist yet it loads, then waits until this
    process has created the instance (`instance_ready`) before it opens it.
    """
    home = project.ensure_dagster_home()  # its dagster.yaml names the storage classes
    log_dir = home / "logs" / time.strftime("%Y%m%dT%H%M%S")
    wait = [] if instance_ready(project) else ["--wait-for-file", str(home / INSTANCE_READY_FILE)]
    env = service_env(project)
    port = free_port()
    process = start_process(
        [
            # `dagster api grpc` whose run workers fork from a warm process.
            sys.executable, "-m", "assets.code_server",
            *wait,
            "--module-name", DEFINITIONS_MODULE,
            "--host", LOOPBACK, "--port", str(port),
            "--location-name", LOCATION_NAME,
            "--log-level", "warning",
        ],
        env, project.directory, log_dir / "code-server.log", own_group=True,
    )  # fmt: skip
    return CodeServer(process, port, log_dir, env)


def start_daemon(workspace_file: Path, code_server: CodeServer, cwd: Path) -> subprocess.Popen:
    """Start a Dagster daemon for the workspace now; it serves once the code server answers.

    `assets.daemon_process` imports the daemon (~1.5 s) while the code server still
    loads, then waits for it: a daemon that found its location unreachable would
    only retry on its workspace refresh, a minute later.
    """
    command = [
        sys.executable, "-m", "assets.daemon_process",
        "--code-server-port", str(code_server.port),
        "--",
        "--workspace", str(workspace_file),
        "--log-level", "warning",
    ]  # fmt: skip
    return start_process(command, code_server.env, cwd, code_server.log_dir / "daemon.log")
