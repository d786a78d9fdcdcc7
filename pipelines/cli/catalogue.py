"""Commands that read the lake and its catalogue: `query`, `summary`, `catalogue rebuild`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pipelines.cli import render, render_tables
from pipelines.cli.options import FAILURE, ProjectOption, fail, load, one_line
from pipelines.lake.views import (
    QUALITY_REJECTIONS_SQL,
    QUALITY_SUMMARY_SQL,
    REJECTIONS_SQL,
    SUMMARY_SQL,
    QueryError,
    run_query,
)
from pipelines.project import Project


def query(
    sql: Annotated[str, typer.Argument(help="one read-only SQL statement")],
    fmt: Annotated[str, typer.Option("--format", help="table | csv | json")] = "table",
    project_dir: ProjectOption = None,
) -> None:
    """Run read-only SQL on the catalogue (utterances, rejections, shards, code_shards,
    releases, ...; see docs/catalogue.md), or on lake views (manifests, ingest_rejections,
    quality) before the catalogue exists."""
    if fmt not in {"table", "csv", "json"}:
        raise fail(
            f"--format must be table, csv or json, not {fmt!r}",
            example=f'voxlake query --format csv "{example_sql(None)}"',
        )
    project = load(project_dir)
    try:
        result = run_sql(project, sql)
    except QueryError as error:
        raise fail(
            one_line(str(error)),
            example=f'voxlake query "{example_sql(project)}"   '
            f"(tables: {', '.join(table_names(project))})",
        ) from error
    render_tables.print_arrow(result, fmt)


def example_sql(project: Project | None) -> str:
    """A query that runs on this project: on the catalogue, or on the lake views before
    there is one (the `try:` of a query that failed)."""
    if project is not None and not project.catalogue_path.exists():
        return "SELECT source, status, count(*) FROM manifest_rows GROUP BY ALL"
    return "SELECT source, status, count(*) FROM utterances GROUP BY ALL"


def table_names(project: Project) -> list[str]:
    """The tables and views `voxlake query` reads now (the catalogue's, or the lake views
    before there is one)."""
    try:
        rows = run_sql(
            project,
            "SELECT DISTINCT table_name FROM information_schema.tables "
            "WHERE table_schema = 'main' ORDER BY 1",
        ).to_pylist()
    except QueryError:
        return []
    # Names starting with `_` are the lake views' internals (empty stand-ins).
    return [r["table_name"] for r in rows if not r["table_name"].startswith("_")]


def run_sql(project: Project, sql: str) -> Any:
    """Run read-only SQL on the catalogue, or on the lake's views before one exists."""
    if project.catalogue_path.exists():
        from pipelines.catalogue.errors import CatalogueError
        from pipelines.catalogue.read import query_catalogue

        try:
            return query_catalogue(project.catalogue_path, sql)
        except CatalogueError as error:
            raise QueryError(str(error)) from error
    return run_query(project.lake, sql)


def print_summary(project: Project) -> None:
    """Per source: inputs, accepted, hours, languages; then rejections by reason."""
    per_source = run_query(project.lake, SUMMARY_SQL)
    ingest_rejections = run_query(project.lake, REJECTIONS_SQL)
    quality = run_query(project.lake, QUALITY_SUMMARY_SQL)
    # Rejections after ingest exist only where the quality step has run.
    later = run_query(project.lake, QUALITY_REJECTIONS_SQL) if quality.num_rows else None
    render_tables.print_summary(per_source, ingest_rejections, quality, later)


def summary(project_dir: ProjectOption = None) -> None:
    """Print what the lake holds per source."""
    print_summary(load(project_dir))


def catalogue_rebuild(project_dir: ProjectOption = None) -> None:
    """Recreate catalogue.duckdb from the lake alone."""
    from pipelines.catalogue.build import rebuild_catalogue
    from pipelines.catalogue.errors import CatalogueError

    project = load(project_dir)
    try:
        stats = rebuild_catalogue(project)
    except CatalogueError as error:
        raise fail(str(error), code=FAILURE) from error
    render.print_message(
        f"rebuilt {stats.path} in {stats.seconds:.2f} s: {stats.n_utterances} utterances "
        f"({stats.n_accepted} accepted, {stats.n_rejected} rejected), {stats.n_shards} audio "
        f"shards, {stats.n_code_shards} code shards, {stats.n_releases} releases"
    )
