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
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import yaml
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import GrpcServerTarget
from dagster._grpc.client import DagsterGrpcClient

from assets.instance import daemon_running
from assets.launch import (
    DEFINITIONS_MODULE,
    LOCATION_NAME,
    LOOPBACK,
    CodeServer,
    kill_group,
    service_env,
    start_code_server,
    start_daemon,
    stop_processes,
)
from pipelines.project import Project

__all__ = [
    "DEFINITIONS_MODULE",
    "LOCATION_NAME",
    "CodeServer",
    "PortBusyError",
    "ServiceError",
    "Services",
    "check_port_free",
    "code_server_answers",
    "dagster_services",
    "service_env",
    "start_code_server",
    "wait_for_code_server",
    "write_ui_workspace",
]

SERVER_START_TIMEOUT_S = 120.0
PING_INTERVAL_S = 0.05


class ServiceError(RuntimeError):
    """A Dagster process voxlake started did not come up; the message holds its log's tail."""


@dataclass
class Services:
    """The started processes, the workspace they serve, and where their logs go."""

    workspace_file: Path
    code_server: CodeServer
    context: WorkspaceProcessContext
    instance: dg.DagsterInstance
    cwd: Path
    processes: list[subprocess.Popen]
    """The code server and every daemon this `voxlake run` started."""

    @property
    def started_daemon(self) -> bool:
        """True when this `voxlake run` started a daemon (beside its code server)."""
        return len(self.processes) > 1

    @property
    def log_dir(self) -> Path:
        """The folder of this `voxlake run`'s Dagster logs (code server, daemon, workers)."""
        return self.code_server.log_dir

    def ensure_daemon(self) -> bool:
        """Start a daemon if none serves the instance (none yet, or the one seen has gone).

        Returns True when this call started one. `voxlake run` calls it while runs
        wait in the queue, so runs never wait on a daemon that stopped meanwhile.
        """
        if daemon_running(self.instance):
            return False
        self.processes.append(start_daemon(self.workspace_file, self.code_server, self.cwd))
        return True


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


def _tail(log: Path, lines: int = 25) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def code_server_answers(
    port: int, timeout_s: float, starting: Callable[[], bool] = lambda: True
) -> bool:
    """True once the code server on the loopback `port` answers a ping; False when
    `timeout_s` pass first or `starting()` says it never will (its process exited)."""
    client = DagsterGrpcClient(port=port, host=LOOPBACK)
    deadline = time.monotonic() + timeout_s
    while starting():
        with contextlib.suppress(Exception):  # not listening yet, or still loading
            client.ping("voxlake")
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(PING_INTERVAL_S)
    return False


def wait_for_code_server(process: subprocess.Popen, port: int, log: Path) -> None:
    """Block until the code server answers a ping; ServiceError if it exits or times out."""
    if code_server_answers(port, SERVER_START_TIMEOUT_S, lambda: process.poll() is None):
        return
    if process.poll() is not None:
        raise ServiceError(
            f"the Dagster code server exited with status {process.returncode} while loading "
            f"{DEFINITIONS_MODULE}; its log ({log}) ends with:\n{_tail(log)}"
        )
    raise ServiceError(
        f"the Dagster code server did not answer within {SERVER_START_TIMEOUT_S:.0f} s; "
        f"its log ({log}) ends with:\n{_tail(log)}"
    )


@contextlib.contextmanager
def dagster_services(
    project: Project, instance: dg.DagsterInstance, code_server: CodeServer | None = None
) -> Iterator[Services]:
    """Start a daemon unless one runs, wait for the code server (started now unless
    given); yield; stop what was started."""
    home = project.dagster_home
    server = code_server or start_code_server(project)
    server.used = True
    port = server.port
    workspace_file = write_workspace(home / "voxlake-workspace" / f"{port}.yaml", port)
    processes: list[subprocess.Popen] = [server.process]
    context: WorkspaceProcessContext | None = None
    try:
        if not daemon_running(instance):
            # Started now, it imports while the code server loads, and serves once
            # that answers (`assets.daemon_process`).
            processes.append(start_daemon(workspace_file, server, project.directory))
        wait_for_code_server(server.process, port, server.log)
        context = WorkspaceProcessContext(
            instance,
            GrpcServerTarget(host=LOOPBACK, port=port, socket=None, location_name=LOCATION_NAME),
        )
        yield Services(
            workspace_file=workspace_file,
            code_server=server,
            context=context,
            instance=instance,
            cwd=project.directory,
            processes=processes,
        )
    finally:
        if context is not None:
            with contextlib.suppress(Exception):
                context.__exit__(None, None, None)
        # The runs have ended (followed to the end, or cancelled): once their workers
        # have exited, the code server has nothing to finish and is killed outright.
        server.kill_once_idle()
        stop_processes(processes)
        kill_group(server.process)  # its fork server and resource tracker, if still there
        if len(processes) > 1:  # a daemon of ours ran (`Services.started_daemon`)
            # A stopped daemon's last heartbeat stays fresh for a minute: the next
            # `voxlake run` would take it for a running daemon and wait on the queue.
            with contextlib.suppress(Exception):
                instance.wipe_daemon_heartbeats()
        workspace_file.unlink(missing_ok=True)
