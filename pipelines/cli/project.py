"""Commands that set up a project: `init`, `source add`, `source list`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import ValidationError

from pipelines.cli import render, render_tables
from pipelines.cli.options import ProjectOption, fail, load
from pipelines.project import ProjectError, format_validation_error, init_project
from schemas import SourceConfig


def init(directory: Annotated[Path, typer.Argument(help="project folder")] = Path(".")) -> None:
    """Create a voxlake project (voxlake.yaml, lake/, .dagster/) in DIRECTORY."""
    try:
        project = init_project(directory)
    except ProjectError as error:
        raise fail(
            str(error), example=f"voxlake source list --project {directory}   (it is a project)"
        ) from error
    render.print_message(f"created project {project.directory}")
    render.print_message(f"  config: {project.config_path}\n  lake:   {project.lake.root}")


def _parse_option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise fail(f"--option {text!r}: expected key=value", example="--option splits=[dev-clean]")
    # YAML scalars, so `--option splits=[dev-clean, test-clean]` gives a list.
    return key.strip(), yaml.safe_load(value) if value else None


def source_add(
    name: Annotated[str, typer.Argument(help="short unique name; prefixes utterance ids")],
    kind: Annotated[
        str,
        typer.Option(
            "--kind",
            help="librispeech | wenetspeech | emilia | "
            "audio_folder | table | vita_jsonl | hf_dataset | lhotse",
        ),
    ],
    path: Annotated[str, typer.Option("--path", help="corpus root or manifest file")],
    option: Annotated[list[str] | None, typer.Option("--option", "-o", help="key=value")] = None,
    project_dir: ProjectOption = None,
) -> None:
    """Add a source to voxlake.yaml."""
    project = load(project_dir)
    options = dict(_parse_option(o) for o in option or [])
    try:
        source = SourceConfig.model_validate(
            {"name": name, "kind": kind, "path": path, "options": options}
        )
    except ValidationError as error:
        raise fail(format_validation_error(project.config_path, error)) from error
    resolved = Path(path) if Path(path).is_absolute() else project.directory / path
    if not resolved.exists():
        render.print_warning(f"{resolved} does not exist (yet)")
    try:
        updated = project.with_source(source)
    except ProjectError as error:
        raise fail(str(error)) from error
    updated.save()
    render.print_message(f"added source {name} ({kind}) -> {path}")


def source_list(project_dir: ProjectOption = None) -> None:
    """List the project's sources."""
    render_tables.print_sources(load(project_dir).config.sources)
