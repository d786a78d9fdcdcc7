"""The `report` command: the self-contained HTML quality report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli import render
from pipelines.cli.options import ProjectOption, check_sources, load


def report(
    source: Annotated[str | None, typer.Option("--source", help="only this source")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="output HTML file")] = None,
    project_dir: ProjectOption = None,
) -> None:
    """Write the self-contained HTML quality report (plots, rejections, audio to listen to)."""
    from pipelines.steps.quality_report import write_report

    project = load(project_dir)
    check_sources(project, [source] if source else None, "voxlake report")
    with render.status("rendering the quality report"):
        path = write_report(project, out=out, source=source)
    render.print_message(f"quality report: {path}")
