"""The `voxlake` console entry point: the command line of `pipelines/cli/` plus the commands
that start Dagster runs or the webserver (`run`, `ui`, `demo`), or read the instance
(`status`).

Dagster is imported only when one of these commands starts a run, so every other
command starts as fast as it would without Dagster installed.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from pipelines.cli import logs, render
from pipelines.cli.app import build_app
from pipelines.cli.demo import print_demo_results
from pipelines.cli.notices import demo_tokenizer_warning
from pipelines.cli.options import (
    FAILURE,
    ProjectOption,
    check_sources,
    fail,
    load,
    one_line,
    shown_path,
)
from pipelines.project import Project

CLI_LOG = "voxlake.log"
"""The command line's own log records, in the run's log folder."""


SELECT_EXAMPLE = "voxlake run --select 'key:inventory/* or key:manifest'"
"""The `try:` of a bad `--select`: a selection that always resolves."""


@dataclass
class _RunSummary:
    """What `_run` hands back: whether it succeeded, its run-wide warnings, its logs."""

    ok: bool
    warnings: list[str] = field(default_factory=list)
    log_dir: Path | None = None


def _run(
    project: Project,
    select: str | None,
    sources: list[str] | None,
    force: bool = False,
) -> _RunSummary:
    """Run, with the progress display; print the phases and where the logs are. The
    run-wide warnings are returned, for the caller to print at the top of its summary."""
    # The code server starts first, without Dagster (`assets.launch`): it loads the
    # definitions while this process imports Dagster, opens the instance and plans.
    # On a fresh project it waits until this process has created the instance.
    from assets.launch import start_code_server

    code_server = start_code_server(project)
    # Dagster loads only when a run starts.
    from assets.runner import RunLockedError, SelectionError, run_assets
    from assets.services import ServiceError

    # The CLI's own log records go to the run's log folder, beside Dagster's.
    logs.keep_in_file()
    echo: list[logs.LogEcho] = []
    materialized: set[str] = set()

    def progress(p: Any, on_progress: Any) -> None:
        if p.log_dir and not echo and logs.verbose():
            echo.append(logs.LogEcho(Path(p.log_dir)))
        materialized.update(p.materialized)
        on_progress(
            p.stage, p.done, p.total, p.runs_done, p.runs_total, p.hours_done, p.hours_total
        )

    try:
        with render.stage_progress() as on_progress:
            report = run_assets(
                project,
                select=select,
                sources=sources,
                force=force,
                on_progress=lambda p: progress(p, on_progress),
                code_server=code_server,
            )
    except SelectionError as error:
        raise fail(one_line(str(error)), example=SELECT_EXAMPLE) from error
    except RunLockedError as error:
        raise fail(str(error), code=FAILURE) from error
    except ServiceError as error:
        render.print_error(str(error))
        return _RunSummary(ok=False)
    finally:
        for tail in echo:
            tail.stop()
    log_dir = (
        Path(report.log_dir)
        if report.log_dir
        else project.dagster_home / "logs" / (time.strftime("%Y%m%dT%H%M%S"))
    )
    logs.write_to(log_dir / CLI_LOG)
    warnings = list(report.warnings)
    if "tokens" in materialized and (tokenizer := demo_tokenizer_warning(project)):
        warnings.insert(0, tokenizer)
    if report.nothing_to_do:
        render.print_message(
            "nothing to do for the selected assets"
            if report.warnings
            else "nothing to do: every selected asset is up to date (--force re-materializes)"
        )
        return _RunSummary(ok=True, warnings=warnings, log_dir=log_dir)
    render.print_message(
        f"{len(report.run_ids)} Dagster runs (tag {report.invocation}) on instance "
        f"{shown_path(project.dagster_home)}"
    )
    render.print_message(f"logs: {shown_path(log_dir)} (--verbose echoes them)")
    if report.failed_units:
        render.print_error(
            f"{len(report.failed_units)} units failed: {', '.join(sorted(report.failed_units))}; "
            "`voxlake run` again re-runs them alone"
        )
    render.print_run_failures(report.failures)
    return _RunSummary(ok=report.success, warnings=warnings, log_dir=log_dir)


def run(
    select: Annotated[
        str | None,
        typer.Option(
            "--select", help="Dagster asset selection, e.g. 'key:manifest' or 'group:ingest'"
        ),
    ] = None,
    source: Annotated[list[str] | None, typer.Option("--source", help="only this source")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="re-materialize everything selected, even if current")
    ] = False,
    project_dir: ProjectOption = None,
) -> None:
    """Materialize what is missing or stale, through the project's Dagster instance.

    Runs are queued on the instance (see dagster.yaml: max_concurrent_runs) and
    each carries up to execution.units_per_run units (voxlake.yaml). Shows one progress
    display per phase, then one line per phase; Dagster's and DeepSpeed's logs go to
    the log folder it prints (`--verbose` echoes them).
    """
    project = load(project_dir)
    if not project.config.sources:
        raise fail(
            f"{project.config_path} has no sources",
            example="voxlake source add NAME --kind KIND --path PATH",
        )
    check_sources(project, source, "voxlake run")
    summary = _run(project, select, source, force)
    render.print_notices(summary.warnings)
    if not summary.ok:
        raise typer.Exit(FAILURE)


def status(
    as_json: Annotated[
        bool, typer.Option("--json", help="print a machine-readable JSON document")
    ] = False,
    project_dir: ProjectOption = None,
) -> None:
    """Per source: units planned / done / failed / stale, utterances accepted / rejected /
    pending, hours, and the last run and its result."""
    project = load(project_dir)
    # Reads the instance's records; starts no run, no daemon, no code server.
    from assets.status import read_status
    from pipelines.status import StatusError

    try:
        result = read_status(project)
    except StatusError as error:
        raise fail(str(error), code=FAILURE) from error
    if as_json:
        sys.stdout.write(json.dumps(result.to_json(), indent=2, ensure_ascii=False) + "\n")
    else:
        render.print_status(result)


def ui(
    host: Annotated[str, typer.Option(help="bind address (localhost by default)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 3000,
    project_dir: ProjectOption = None,
) -> None:
    """Start the Dagster webserver (and daemon) for the project."""
    project = load(project_dir)
    from assets.instance import open_instance
    from assets.services import PortBusyError, check_port_free, service_env, write_ui_workspace

    try:
        # `dagster dev` logs "Serving" and stays up with its daemon when the webserver
        # cannot bind, so a busy port is found here, before anything starts.
        check_port_free(host, port)
    except PortBusyError as error:
        raise fail(str(error)) from None
    open_instance(project)  # sets this machine's pool limits before the daemon reads them
    env = service_env(project)
    workspace = write_ui_workspace(project)
    render.print_message(f"Dagster UI on http://{host}:{port} (project {project.directory})")
    command = [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "--workspace",
        str(workspace),
        "-h",
        host,
        "-p",
        str(port),
    ]
    raise typer.Exit(subprocess.call(command, env=env, cwd=project.directory))


def demo(
    directory: Annotated[Path, typer.Option("--dir", help="demo project folder")] = Path("demo"),
) -> None:
    """Run the main job end to end on the bundled corpora and say where the results are.

    `--verbose` echoes the Dagster and DeepSpeed logs as they grow.
    """
    from pipelines.demo.project import demo_project

    logs.keep_in_file()  # writing the demo tokenizer is said once, in the summary
    project = demo_project(directory)
    render.print_message(f"demo project: {shown_path(project.directory)}")
    summary = _run(project, None, None)
    if not print_demo_results(
        project, directory, run_ok=summary.ok, warnings=summary.warnings, log_dir=summary.log_dir
    ):
        raise typer.Exit(FAILURE)


app = build_app(run=run, status=status, ui=ui, demo=demo)


def main() -> None:
    """The `voxlake` console script: `app`, then an exit that skips tearing down the
    interpreter (~0.7 s after a run, spent freeing Dagster's modules and objects).

    Everything an exit owes is done first: the `atexit` handlers (logging's flush
    among them) and the flush of stdout and stderr. Only the freeing of memory the
    process is about to give back is skipped.
    """
    import atexit
    import os

    try:
        app()
        code: int = 0
    except SystemExit as done:
        if isinstance(done.code, str):  # `sys.exit("message")`: printed, status 1
            print(done.code, file=sys.stderr)
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
