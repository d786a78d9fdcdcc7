"""The `voxlake` command line.

Commands act on the project in the current folder, or the one given with
`--project DIR`. Dagster is imported only by the commands that start runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipelines.project import (
    Project,
    ProjectError,
    format_validation_error,
    init_project,
    load_project,
)
from pipelines.query import (
    QUALITY_REJECTIONS_SQL,
    QUALITY_SUMMARY_SQL,
    REJECTIONS_SQL,
    SUMMARY_SQL,
    QueryError,
    run_query,
)
from schemas import SourceConfig

app = typer.Typer(no_args_is_help=True, add_completion=False, help="voxlake: a speech data engine.")
source_app = typer.Typer(no_args_is_help=True, help="Manage the project's sources.")
fixtures_app = typer.Typer(no_args_is_help=True, help="Generate test corpora.")
app.add_typer(source_app, name="source")
app.add_typer(fixtures_app, name="fixtures")

console = Console()
err_console = Console(stderr=True)

ProjectOption = Annotated[
    Path | None,
    typer.Option("--project", "-p", help="project folder (default: current folder)"),
]


def _fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def _load(project_dir: Path | None) -> Project:
    try:
        return load_project(project_dir)
    except ProjectError as error:
        raise _fail(str(error)) from error


@app.command()
def init(directory: Annotated[Path, typer.Argument(help="project folder")] = Path(".")) -> None:
    """Create a voxlake project (voxlake.yaml, lake/, .dagster/) in DIRECTORY."""
    try:
        project = init_project(directory)
    except ProjectError as error:
        raise _fail(str(error)) from error
    console.print(f"created project {project.directory}")
    console.print(f"  config: {project.config_path}\n  lake:   {project.lake.root}")


def _parse_option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise _fail(f"--option {text!r}: expected key=value")
    # YAML scalars, so `--option splits=[dev-clean, test-clean]` gives a list.
    return key.strip(), yaml.safe_load(value) if value else None


@source_app.command("add")
def source_add(
    name: Annotated[str, typer.Argument(help="short unique name; prefixes utterance ids")],
    kind: Annotated[
        str,
        typer.Option(
            "--kind",
            help="librispeech | wenetspeech | emilia | "
            "audio_folder | table | vita_jsonl | hf_dataset",
        ),
    ],
    path: Annotated[str, typer.Option("--path", help="corpus root or manifest file")],
    option: Annotated[list[str] | None, typer.Option("--option", "-o", help="key=value")] = None,
    project_dir: ProjectOption = None,
) -> None:
    """Add a source to voxlake.yaml."""
    project = _load(project_dir)
    options = dict(_parse_option(o) for o in option or [])
    try:
        source = SourceConfig.model_validate(
            {"name": name, "kind": kind, "path": path, "options": options}
        )
    except ValidationError as error:
        raise _fail(format_validation_error(project.config_path, error)) from error
    resolved = Path(path) if Path(path).is_absolute() else project.directory / path
    if not resolved.exists():
        err_console.print(f"[yellow]warning:[/] {resolved} does not exist (yet)")
    try:
        updated = project.with_source(source)
    except ProjectError as error:
        raise _fail(str(error)) from error
    updated.save()
    console.print(f"added source {name} ({kind}) -> {path}")


@source_app.command("list")
def source_list(project_dir: ProjectOption = None) -> None:
    """List the project's sources."""
    project = _load(project_dir)
    table = Table("name", "kind", "path", "options")
    for source in project.config.sources:
        options = {k: v for k, v in source.options.items() if v is not None}
        table.add_row(source.name, source.kind.value, source.path, json.dumps(options))
    console.print(table)


def _run(
    project: Project, select: str | None, sources: list[str] | None, verbose: bool = False
) -> bool:
    from assets.runner import run_assets  # Dagster loads only when a run starts

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("inventory", total=None)

        def on_unit(unit: str, index: int, total: int) -> None:
            progress.update(task, description=f"units {unit}", completed=index, total=total)

        try:
            report = run_assets(
                project,
                select=select,
                sources=sources,
                on_unit=on_unit,
                console_log_level="INFO" if verbose else "WARNING",
            )
        except KeyError as error:
            raise _fail(str(error.args[0])) from error
    console.print(f"{len(report.run_ids)} Dagster runs on instance {project.dagster_home}")
    for failure in report.failures:
        err_console.print(f"[red]FAILED[/] {failure}", highlight=False)
    return report.success


@app.command()
def run(
    select: Annotated[
        str | None,
        typer.Option(
            "--select", help="Dagster asset selection, e.g. 'key:manifest' or 'group:ingest'"
        ),
    ] = None,
    source: Annotated[list[str] | None, typer.Option("--source", help="only this source")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="echo Dagster logs")] = False,
    project_dir: ProjectOption = None,
) -> None:
    """Materialize assets through Dagster on the project's instance."""
    project = _load(project_dir)
    if not project.config.sources:
        raise _fail(f"{project.config_path} has no sources; add one with `voxlake source add`")
    if not _run(project, select, source, verbose):
        raise typer.Exit(1)


def _print_arrow(table: Any, fmt: str) -> None:
    import polars as pl

    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    if fmt == "csv":
        sys.stdout.write(frame.write_csv())
    elif fmt == "json":
        sys.stdout.write(json.dumps(frame.to_dicts(), ensure_ascii=False, default=str) + "\n")
    else:
        out = Table(*frame.columns)
        for row in frame.iter_rows():
            out.add_row(*("" if v is None else str(v) for v in row))
        console.print(out)


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="one read-only SQL statement")],
    fmt: Annotated[str, typer.Option("--format", help="table | csv | json")] = "table",
    project_dir: ProjectOption = None,
) -> None:
    """Run read-only SQL over the lake (views: manifests, rejections, manifest_rows,
    quality, accepted)."""
    if fmt not in {"table", "csv", "json"}:
        raise _fail(f"--format must be table, csv or json, not {fmt!r}")
    project = _load(project_dir)
    try:
        result = run_query(project.lake, sql)
    except QueryError as error:
        raise _fail(str(error)) from error
    _print_arrow(result, fmt)


def print_summary(project: Project) -> None:
    """Per source: inputs, accepted, hours, languages; then rejections by reason."""
    _print_arrow(run_query(project.lake, SUMMARY_SQL), "table")
    rejections = run_query(project.lake, REJECTIONS_SQL)
    if rejections.num_rows:
        console.print("rejected at ingest, by reason:")
        _print_arrow(rejections, "table")
    quality = run_query(project.lake, QUALITY_SUMMARY_SQL)
    if quality.num_rows:
        console.print("quality (decode, measure, policy):")
        _print_arrow(quality, "table")
        later = run_query(project.lake, QUALITY_REJECTIONS_SQL)
        if later.num_rows:
            console.print("rejected after ingest, by rule:")
            _print_arrow(later, "table")


@app.command()
def summary(project_dir: ProjectOption = None) -> None:
    """Print what the lake holds per source."""
    print_summary(_load(project_dir))


@app.command()
def report(
    source: Annotated[str | None, typer.Option("--source", help="only this source")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="output HTML file")] = None,
    project_dir: ProjectOption = None,
) -> None:
    """Write the self-contained HTML quality report (plots, rejections, audio to listen to)."""
    from pipelines.report import write_report

    project = _load(project_dir)
    if source is not None:
        try:
            project.config.source(source)
        except KeyError as error:
            raise _fail(str(error.args[0])) from error
    with console.status("rendering the quality report"):
        path = write_report(project, out=out, source=source)
    console.print(f"quality report: {path}")


@fixtures_app.command("make")
def fixtures_make(directory: Annotated[Path, typer.Argument(help="output folder")]) -> None:
    """Generate the look-alike test corpora (needs espeak-ng)."""
    from pipelines.fixtures import make_fixtures

    make_fixtures(directory)
    console.print(f"test corpora written to {directory.resolve()}")


@app.command()
def ui(
    host: Annotated[str, typer.Option(help="bind address (localhost by default)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 3000,
    project_dir: ProjectOption = None,
) -> None:
    """Start the Dagster webserver (and daemon) for the project."""
    project = _load(project_dir)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(project.ensure_dagster_home()),
        "VOXLAKE_PROJECT": str(project.directory),
    }
    console.print(f"Dagster UI on http://{host}:{port} (project {project.directory})")
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


@app.command()
def demo(
    directory: Annotated[Path, typer.Option("--dir", help="demo project folder")] = Path("demo"),
) -> None:
    """Run the main job end to end on the bundled corpora and say where the results are."""
    from pipelines.demo import demo_project

    project = demo_project(directory)
    console.print(f"demo project: {project.directory}")
    ok = _run(project, None, None)
    print_summary(project)
    console.print(
        "\nresults:\n"
        f"  manifests:      {project.lake.root / 'manifests'}\n"
        f"  unit plans:     {project.lake.root / 'inventory'}\n"
        f"  quality:        {project.lake.root / 'quality'}\n"
        f"  report:         {project.lake.reports_dir() / 'quality.html'}\n"
        f"  Dagster home:   {project.dagster_home} (runs, events; SQLite)\n"
        f'  explore:        voxlake query --project {directory} "SELECT * FROM rejections"\n'
        f"  UI:             voxlake ui --project {directory}   (http://127.0.0.1:3000)"
    )
    if not ok:
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
