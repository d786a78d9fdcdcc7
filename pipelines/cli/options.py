"""What every command shares: the `--project` option, loading that project, and failing.

A user error (a bad selection, an unknown source or release, bad SQL, no project)
is one line naming the problem and, where one helps, a second `try: <a correct
example>` line; exit status 2 (`USER_ERROR`), no traceback unless `--verbose`.
Status 1 (`FAILURE`) is kept for work that ran and failed: a failed run, unit,
check or audit.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli import logs
from pipelines.cli.render import print_error, print_try
from pipelines.project import PROJECT_FILE, Project, ProjectError, load_project

ProjectOption = Annotated[
    Path | None,
    typer.Option("--project", "-p", help="project folder (default: current folder)"),
]

USER_ERROR = 2
"""Exit status of a user error: the command did not start its work."""
FAILURE = 1
"""Exit status of work that ran and failed (a run, a unit, a check, an audit)."""


def fail(message: str, code: int = USER_ERROR, example: str | None = None) -> typer.Exit:
    """Print `error: <message>` (and `try: <example>`) and return the exit to raise
    (`raise fail(...)`); with `--verbose`, first the traceback of the error being handled."""
    logs.print_handled_traceback()
    print_error(message)
    if example:
        print_try(example)
    return typer.Exit(code)


def one_line(text: str) -> str:
    """The first line of an error message from a library (DuckDB, Dagster add context
    lines, carets and hints below it), whitespace collapsed."""
    lines = [line for line in str(text).splitlines() if line.strip()]
    return " ".join(lines[0].split()) if lines else str(text)


def load(project_dir: Path | None) -> Project:
    """The project in `project_dir` (default: the current folder), or exit with its error."""
    # The folder load_project reads: the option, else $VOXLAKE_PROJECT, else here.
    folder = Path(project_dir or os.environ.get("VOXLAKE_PROJECT") or Path.cwd()).resolve()
    if not (folder / PROJECT_FILE).exists():
        raise fail(
            f"no voxlake project in {folder} (no {PROJECT_FILE})",
            example=f"voxlake init {folder}   (or pass --project DIR)",
        )
    try:
        return load_project(project_dir)
    except ProjectError as error:
        raise fail(str(error)) from error


def known(names: list[str]) -> str:
    """`a, b, c` or `none`, for messages that list what exists."""
    return ", ".join(names) or "none"


def check_sources(project: Project, names: list[str] | None, command: str) -> None:
    """Exit with a user error when a `--source` names no source of the project; the
    example is `command --source <a known one>`."""
    configured = [s.name for s in project.config.sources]
    for name in names or []:
        if name not in configured:
            example = (
                f"{command} --source {configured[0]}"
                if configured
                else "voxlake source add NAME --kind KIND --path PATH"
            )
            raise fail(f"no source named {name!r} (known: {known(configured)})", example=example)


def shown_path(path: Path) -> str:
    """`path` as the user can type it here: relative to the current folder when inside it
    (shorter lines on an 80-column terminal), else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)
