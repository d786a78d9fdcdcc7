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

A fork server is a clean single-threaded process started with `exec`, so the
gRPC server's threads are never forked. Its children get the code server's
environment and working folder, as spawned workers would.

Usage (what `assets.services.start_code_server` runs): the arguments of
`dagster api grpc`, e.g. `python -m assets.code_server --module-name
assets.definitions --port 4266`.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import sys
import threading

PRELOAD_MODULE = "assets.worker_preload"


def use_forkserver_for_run_workers() -> None:
    """Make every `DagsterApiServer` created from now on start its run workers from a fork
    server preloaded with `PRELOAD_MODULE`, and start that fork server in the background."""
    from dagster._grpc import server

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([PRELOAD_MODULE])
    original_init = server.DagsterApiServer.__init__

    def init(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        original_init(self, *args, **kwargs)
        self._mp_ctx = context  # the one attribute StartRun takes its Process/Queue/Event from

    server.DagsterApiServer.__init__ = init  # type: ignore[method-assign]
    # The fork server imports the preload (~3 s) while the code server loads the
    # definitions and `voxlake run` plans, instead of when the first run starts.
    threading.Thread(
        target=multiprocessing.forkserver.ensure_running, name="forkserver-warmup", daemon=True
    ).start()


def main(argv: list[str]) -> None:
    """Run `dagster api grpc <argv>` with forked run workers."""
    use_forkserver_for_run_workers()
    from dagster._cli import main as dagster_main

    sys.argv = ["dagster", "api", "grpc", *argv]
    dagster_main()


if __name__ == "__main__":
    main(sys.argv[1:])
