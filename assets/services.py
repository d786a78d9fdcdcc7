"""The Dagster processes a `voxlake run` needs: a code server, and a daemon when none runs.

The code server (`dagster api grpc -m assets.definitions`, started through
`assets.code_server`, which forks run workers from a warm process) is the code location
`voxlake`: runs are created from it, so they carry its origin, and the default
run launcher asks it to start each run worker. The daemon (`dagster-daemon run`)
takes runs off the instance's queue as `max_concurrent_runs` allows, monitors
them, and evaluates the catalogue's automation condition. Both read the same
`workspace.yaml` in the Dagster home. When a daemon already serves the instance
(`voxlake ui`, or a deployment's own), voxlake starts none and only submits.

Everything started here is stopped when the context exits, and dies with the
voxlake process if that is killed (Linux parent-death signal).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import yaml
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import GrpcServerTarget
from dagster._grpc.client import DagsterGrpcClient

from assets.instance import daemon_running, torch_threads_per_run
from pipelines.project import Project
from pipelines.runtime import TORCH_THREADS_ENV

LOCATION_NAME = "voxlake"
"""The code location's name: the same in `voxlake run`, `voxlake ui` and every deployment."""

DEFINITIONS_MODULE = "assets.definitions"
LOOPBACK = "127.0.0.1"
SERVER_START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0


class ServiceError(RuntimeError):
    """A Dagster process voxlake started did not come up; the message holds its log's tail."""


@dataclass
class Services:
    """The started processes, the workspace they serve, and where their logs go."""

    workspace_file: Path
    log_dir: Path
    context: WorkspaceProcessContext
    instance: dg.DagsterInstance
    env: dict[str, str]
    cwd: Path
    processes: list[subprocess.Popen]
    started_daemon: bool = False

    def ensure_daemon(self) -> bool:
        """Start a daemon if none serves the instance (none yet, or the one seen has gone).

        Returns True when this call started one. `voxlake run` calls it while runs
        wait in the queue, so runs never wait on a daemon that stopped meanwhile.
        """
        if daemon_running(self.instance):
            return False
        command = [
            sys.executable, "-m", "dagster._daemon", "run",
            "--workspace", str(self.workspace_file),
            "--log-level", "warning",
        ]  # fmt: skip
        self.processes.append(_start(command, self.env, self.cwd, self.log_dir / "daemon.log"))
        self.started_daemon = True
        return True


def service_env(project: Project, instance: dg.DagsterInstance) -> dict[str, str]:
    """Environment of every process voxlake starts (and of the run workers they start)."""
    threads = str(torch_threads_per_run(instance))
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


class PortBusyError(OSError):
    """The address the webserver should serve on is taken; the message says which and why."""


def check_port_free(host: str, port: int) -> None:
    """Raise PortBusyError unless a server could listen on `host:port` now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As the webserver will: a port left in TIME_WAIT is free, one listened on is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise PortBusyError(
                f"cannot serve the UI on {host}:{port}: {error.strerror or error}; "
                f"stop what uses it or pick another port, e.g. `voxlake ui --port {port + 1}`"
            ) from None


def write_workspace(path: Path, port: int) -> Path:
    """A `workspace.yaml` naming the code server on `port` as location `voxlake`."""
    workspace = {
        "load_from": [
            {"grpc_server": {"host": LOOPBACK, "port": port, "location_name": LOCATION_NAME}}
        ]
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(workspace, sort_keys=False))
    return path


def write_ui_workspace(project: Project) -> Path:
    """The `workspace.yaml` of `voxlake ui`: `dagster dev` manages its own code server,
    under the location name `voxlake run` submits to, so both share one queue."""
    path = project.dagster_home / "workspace.yaml"
    workspace = {
        "load_from": [
            {
                "python_module": {
                    "module_name": DEFINITIONS_MODULE,
                    "location_name": LOCATION_NAME,
                    "working_directory": str(project.directory),
                }
            }
        ]
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(workspace, sort_keys=False))
    return path


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


def _start(command: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
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
        )


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


def _tail(log: Path, lines: int = 25) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_for_code_server(process: subprocess.Popen, port: int, log: Path) -> None:
    """Block until the code server answers a ping; ServiceError if it exits or times out."""
    client = DagsterGrpcClient(port=port, host=LOOPBACK)
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise ServiceError(
                f"the Dagster code server exited with status {process.returncode} while loading "
                f"{DEFINITIONS_MODULE}; its log ({log}) ends with:\n{_tail(log)}"
            )
        with contextlib.suppress(Exception):
            client.ping("voxlake")
            return
        if time.monotonic() > deadline:
            raise ServiceError(
                f"the Dagster code server did not answer within {SERVER_START_TIMEOUT_S:.0f} s; "
                f"its log ({log}) ends with:\n{_tail(log)}"
            )
        time.sleep(0.1)


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

    def stop(self) -> None:
        """Stop it; when no run was served, also remove its log (nothing happened)."""
        stop_processes([self.process])
        if not self.used:
            shutil.rmtree(self.log_dir, ignore_errors=True)


def start_code_server(project: Project, instance: dg.DagsterInstance) -> CodeServer:
    """Start the code server now; `dagster_services` waits for it.

    `voxlake run` starts it before planning, so its ~2 s of loading the definitions
    overlap the planning instead of following it.
    """
    log_dir = project.dagster_home / "logs" / time.strftime("%Y%m%dT%H%M%S")
    env = service_env(project, instance)
    port = free_port()
    process = _start(
        [
            # `dagster api grpc` whose run workers fork from a warm process.
            sys.executable, "-m", "assets.code_server",
            "--module-name", DEFINITIONS_MODULE,
            "--host", LOOPBACK, "--port", str(port),
            "--location-name", LOCATION_NAME,
            "--log-level", "warning",
        ],
        env, project.directory, log_dir / "code-server.log",
    )  # fmt: skip
    return CodeServer(process, port, log_dir, env)


@contextlib.contextmanager
def dagster_services(
    project: Project, instance: dg.DagsterInstance, code_server: CodeServer | None = None
) -> Iterator[Services]:
    """Wait for the code server (started now unless given), start a daemon unless one runs;
    yield; stop what was started."""
    home = project.dagster_home
    server = code_server or start_code_server(project, instance)
    server.used = True
    log_dir, env, port = server.log_dir, server.env, server.port
    workspace_file = write_workspace(home / "voxlake-workspace" / f"{port}.yaml", port)
    processes: list[subprocess.Popen] = [server.process]
    context: WorkspaceProcessContext | None = None
    services: Services | None = None
    try:
        wait_for_code_server(server.process, port, server.log)
        context = WorkspaceProcessContext(
            instance,
            GrpcServerTarget(host=LOOPBACK, port=port, socket=None, location_name=LOCATION_NAME),
        )
        services = Services(
            workspace_file=workspace_file,
            log_dir=log_dir,
            context=context,
            instance=instance,
            env=env,
            cwd=project.directory,
            processes=processes,
        )
        # Started once the code server answers: a daemon that loads an unreachable
        # location only retries on its workspace refresh, a minute later.
        services.ensure_daemon()
        yield services
    finally:
        if context is not None:
            with contextlib.suppress(Exception):
                context.__exit__(None, None, None)
        stop_processes(processes)
        if services is not None and services.started_daemon:
            # A stopped daemon's last heartbeat stays fresh for a minute: the next
            # `voxlake run` would take it for a running daemon and wait on the queue.
            with contextlib.suppress(Exception):
                instance.wipe_daemon_heartbeats()
        workspace_file.unlink(missing_ok=True)
