"""The code server `voxlake run` starts: Dagster's own gRPC code server (`dagster api grpc`),
whose run workers are forked from a warm process instead of spawned cold.

Dagster's code server starts every run worker with multiprocessing's `spawn`: a
fresh interpreter that imports Dagster and the definitions again, about 3 s per
run on this project, paid by every inventory, unit, lake and training run. Here
the server uses multiprocessing's `forkserver` instead, preloaded with
`assets.worker_preload` (Dagster, its run-execution code and `assets.definitions`),
and the fork server is started while the code server loads, so a worker starts in
a fraction of a second. The worker runs exactly what the spawned one would
(`dagster._grpc.impl.start_run_in_subprocess` with the same pickled arguments);
Dagster's own multiprocess executor starts its step processes the same way.

The fork server is forked from the code server itself once that has imported the
preload (and before it starts a thread: no gRPC server, channel or thread exists
yet), so it costs no second import of Dagster and the definitions (~2.5 s of CPU
that four processes starting at once on two cores would otherwise share). Where
that cannot be done (a thread is already running), multiprocessing starts it the
usual way, a fresh interpreter importing the preload, in the background. Either way
the gRPC server's threads are never forked, and run workers get the code server's
environment and working folder, as spawned workers would.

It can start before the project's Dagster instance exists: with `--wait-for-file
PATH` it imports Dagster and the definitions first (most of its start-up), then
waits for PATH, the marker `assets.instance.open_instance` writes once it has
created the instance's storage, before Dagster's server opens the instance. Two
processes creating a fresh SQLite instance at once would stamp two Alembic heads.

Usage (what `assets.launch.start_code_server` runs): `[--wait-for-file PATH
[--wait-timeout-s S]]`, then
the arguments of `dagster api grpc`, e.g. `python -m assets.code_server --module-name
assets.definitions --port 4266`.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import multiprocessing.forkserver
import os
import socket
import sys
import threading
import time
from pathlib import Path

PRELOAD_MODULE = "assets.worker_preload"
FORK_SERVER_IMPORTS = ("pandas",)
"""Imported by the fork server alone, once it is forked (the code server does not wait for
them): pyarrow imports pandas the first time a process builds a table from Python rows
(`pa.Table.from_pylist`, whose pandas shim looks for pandas types), ~0.4 s of CPU that
every run worker would pay again."""
WAIT_FLAG = "--wait-for-file"
WAIT_TIMEOUT_FLAG = "--wait-timeout-s"
WAIT_TIMEOUT_S = 120.0
POLL_S = 0.02


def use_forkserver_for_run_workers() -> None:
    """Make every `DagsterApiServer` created from now on start its run workers from a fork
    server preloaded with `PRELOAD_MODULE`, and start that fork server now: forked from
    this process after importing the preload here, or else spawned in the background."""
    from dagster._grpc import server

    context = multiprocessing.get_context("forkserver")
    # The fork server imports these in order, each failing import skipped; forked from
    # this process it finds the first already imported.
    context.set_forkserver_preload([PRELOAD_MODULE, *FORK_SERVER_IMPORTS])
    original_init = server.DagsterApiServer.__init__

    def init(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        original_init(self, *args, **kwargs)
        self._mp_ctx = context  # the one attribute StartRun takes its Process/Queue/Event from

    server.DagsterApiServer.__init__ = init  # type: ignore[method-assign]
    if fork_forkserver():
        return
    # The fork server imports the preload (~3 s) while the code server loads the
    # definitions and `voxlake run` plans, instead of when the first run starts.
    threading.Thread(
        target=multiprocessing.forkserver.ensure_running, name="forkserver-warmup", daemon=True
    ).start()


def fork_forkserver() -> bool:
    """Start multiprocessing's fork server as a fork of this process, with the preload
    imported here first; False (nothing started) when this process already runs a thread.

    What `multiprocessing.forkserver.ForkServer.ensure_running` does, except that the
    server is this process forked instead of a new interpreter: the same listening
    socket and "alive" pipe, the same `forkserver.main` loop, so `Process.start` finds
    it running and talks to it as to its own.
    """
    from multiprocessing import connection, forkserver, resource_tracker, spawn

    importlib.import_module(PRELOAD_MODULE)
    if threading.active_count() != 1:  # a thread's locks would be forked mid-use
        return False
    server = forkserver._forkserver
    with server._lock:
        if server._forkserver_pid is not None:
            return True
        resource_tracker.ensure_running()  # as ensure_running does: children share it
        data = spawn.get_preparation_data("ignore")
        data = {key: value for key, value in data.items() if key in {"main_path", "sys_path"}}
        preload = list(server._preload_modules)
        listener = socket.socket(socket.AF_UNIX)
        address = connection.arbitrary_address("AF_UNIX")
        listener.bind(address)
        os.chmod(address, 0o600)
        listener.listen()
        # Every client holds the write end of "alive"; the server exits once all have gone.
        alive_r, alive_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the fork server: never returns into the code server's code
            status = 0
            try:
                os.close(alive_w)
                forkserver.main(listener.fileno(), alive_r, preload, **data)
            except SystemExit as done:
                status = done.code if isinstance(done.code, int) else 0
            except BaseException:
                status = 1
            finally:
                os._exit(status)
        os.close(alive_r)
        listener.close()
        server._forkserver_address = address
        server._forkserver_alive_fd = alive_w
        server._forkserver_pid = pid
    return True


def _module_name(argv: list[str]) -> str | None:
    """The `--module-name`/`-m` of `dagster api grpc` arguments, if any."""
    for flag in ("--module-name", "-m"):
        if flag in argv[:-1]:
            return argv[argv.index(flag) + 1]
    return None


def wait_for_file(path: Path, timeout_s: float = WAIT_TIMEOUT_S) -> bool:
    """True once `path` exists; False when `timeout_s` pass first."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_S)
    return True


def main(argv: list[str]) -> int:
    """Run `dagster api grpc <argv>` with forked run workers, after `--wait-for-file PATH`
    exists when given; 1 when it does not appear within `--wait-timeout-s` (default
    `WAIT_TIMEOUT_S`)."""
    marker: Path | None = None
    timeout_s = WAIT_TIMEOUT_S
    if argv[:1] == [WAIT_FLAG]:
        marker, argv = Path(argv[1]), argv[2:]
        if argv[:1] == [WAIT_TIMEOUT_FLAG]:
            timeout_s, argv = float(argv[1]), argv[2:]
    use_forkserver_for_run_workers()
    from dagster._cli import main as dagster_main

    module = _module_name(argv)
    if marker is not None and module is not None:
        # Imported now, while the instance is being created; Dagster's loader then finds
        # it in sys.modules. A module that fails to import is left for Dagster to load
        # and report as it would (a failed import leaves nothing in sys.modules).
        with contextlib.suppress(Exception):
            importlib.import_module(module)
    if marker is not None and not wait_for_file(marker, timeout_s):
        print(
            f"{marker} did not appear within {timeout_s:g} s (the Dagster instance was "
            "never created); the code server did not start",
            file=sys.stderr,
        )
        return 1
    sys.argv = ["dagster", "api", "grpc", *argv]
    dagster_main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
