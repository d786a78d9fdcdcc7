"""The `voxlake` console entry point: the command line of `pipelines/cli/` plus the commands
that start Dagster runs or the webserver (`run`, `ui`, `demo`).

Dagster is imported only when one of these commands starts a run, so every other
command starts as fast as it would without Dagster installed.
"""

from __future__ import annotations

import os
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
    verbose: bool = False,
    parallel: int = 1,
) -> bool:
    from assets.runner import run_assets  # Dagster loads only when a run starts

    with render.unit_progress() as on_unit:
        try:
            report = run_assets(
                project,
                select=select,
                sources=sources,
                on_unit=on_unit,
                console_log_level="INFO" if verbose else "WARNING",
                parallel=parallel,
            )
        except KeyError as error:
            raise fail(str(error.args[0])) from error
    render.print_message(f"{len(report.run_ids)} Dagster runs on instance {project.dagster_home}")
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
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="echo Dagster logs")] = False,
    parallel: Annotated[int, typer.Option("--parallel", "-j", help="unit runs at once")] = 1,
    project_dir: ProjectOption = None,
) -> None:
    """Materialize assets through Dagster on the project's instance."""
    project = load(project_dir)
    if not project.config.sources:
        raise fail(f"{project.config_path} has no sources; add one with `voxlake source add`")
    if parallel < 1:
        raise fail("--parallel must be at least 1")
    if not _run(project, select, source, verbose, parallel):
        raise typer.Exit(1)


def ui(
    host: Annotated[str, typer.Option(help="bind address (localhost by default)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 3000,
    project_dir: ProjectOption = None,
) -> None:
    """Start the Dagster webserver (and daemon) for the project."""
    project = load(project_dir)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(project.ensure_dagster_home()),
        "VOXLAKE_PROJECT": str(project.directory),
    }
    render.print_message(f"Dagster UI on http://{host}:{port} (project {project.directory})")
    command = [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "-m",
        "assets.definitions",
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


app = build_app(run=run, ui=ui, demo=demo)

if __name__ == "__main__":
    app()
