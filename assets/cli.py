"""The `voxlake` console entry point: the command line of `pipelines/cli/` plus the commands
that start Dagster runs or the webserver (`run`, `ui`, `demo`), or read the instance
(`status`).

Dagster is imported only when one of these commands starts a run, so every other
command starts as fast as it would without Dagster installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli import render
from pipelines.cli.app import build_app
from pipelines.cli.demo import print_demo_results
from pipelines.cli.options import ProjectOption, fail, load
from pipelines.project import Project


def _run(
    project: Project,
    select: str | None,
    sources: list[str] | None,
    force: bool = False,
) -> bool:
    # Dagster loads only when a run starts.
    from assets.runner import RunLockedError, SelectionError, run_assets
    from assets.services import ServiceError

    with render.stage_progress() as on_progress:
        try:
            report = run_assets(
                project,
                select=select,
                sources=sources,
                force=force,
                on_progress=lambda p: on_progress(
                    p.stage, p.done, p.total, p.runs_done, p.runs_total
                ),
            )
        except (SelectionError, RunLockedError) as error:
            raise fail(str(error)) from error
        except ServiceError as error:
            render.print_error(str(error))
            return False
    if report.nothing_to_do:
        if report.warnings:
            for warning in report.warnings:
                render.print_warning(warning)
            render.print_message("nothing to do for the selected assets")
            return True
        render.print_message(
            "nothing to do: every selected asset is up to date (--force re-materializes)"
        )
        return True
    render.print_message(
        f"{len(report.run_ids)} Dagster runs (tag {report.invocation}) on instance "
        f"{project.dagster_home}; logs in {report.log_dir}"
    )
    for warning in report.warnings:
        render.print_warning(warning)
    if report.failed_units:
        render.print_error(
            f"{len(report.failed_units)} units failed: {', '.join(sorted(report.failed_units))}; "
            "`voxlake run` again re-runs them alone"
        )
    render.print_run_failures(report.failures)
    return report.success


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
    each carries up to execution.units_per_run units (voxlake.yaml).
    """
    project = load(project_dir)
    if not project.config.sources:
        raise fail(f"{project.config_path} has no sources; add one with `voxlake source add`")
    if not _run(project, select, source, force):
        raise typer.Exit(1)


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
        raise fail(str(error)) from error
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
        render.print_error(str(error))
        raise typer.Exit(2) from None
    env = service_env(project, open_instance(project))
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
    """Run the main job end to end on the bundled corpora and say where the results are."""
    from pipelines.demo.project import demo_project

    project = demo_project(directory)
    render.print_message(f"demo project: {project.directory}")
    ok = _run(project, None, None)
    if not print_demo_results(project, directory, run_ok=ok):
        raise typer.Exit(1)


app = build_app(run=run, status=status, ui=ui, demo=demo)

if __name__ == "__main__":
    app()
