"""What every command shares: the `--project` option, loading that project, failing with a
message and an exit code."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.render import print_error
from pipelines.project import Project, ProjectError, load_project

ProjectOption = Annotated[
    Path | None,
    typer.Option("--project", "-p", help="project folder (default: current folder)"),
]


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `error: <message>` and return the exit to raise (`raise fail(...)`)."""
    print_error(message)
    return typer.Exit(code)


def load(project_dir: Path | None) -> Project:
    """The project in `project_dir` (default: the current folder), or exit with its error."""
    try:
        return load_project(project_dir)
    except ProjectError as error:
        raise fail(str(error)) from error
