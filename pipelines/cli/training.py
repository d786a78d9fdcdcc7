"""Commands on trained checkpoints: `lineage` (what made one) and `eval` (how good it is)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli import render
from pipelines.cli.options import ProjectOption, fail, load


def lineage_command(
    checkpoint: Annotated[
        str,
        typer.Argument(help="checkpoint path (or lake-relative), run id, or sha256 prefix"),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="print the full lineage as JSON")] = False,
    project_dir: ProjectOption = None,
) -> None:
    """Which runs, releases, audio and code shards, units and sources made a checkpoint; its
    evaluations."""
    from pipelines.catalogue.errors import CatalogueError
    from pipelines.lineage import LineageError, lineage

    project = load(project_dir)
    try:
        result = lineage(project, checkpoint)
    except (CatalogueError, LineageError) as error:
        raise fail(str(error)) from error
    if as_json:
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
        return
    render.print_lineage(result)


def eval_command(
    checkpoint: Annotated[Path, typer.Argument(help="Hugging Face checkpoint folder")],
    release: Annotated[str, typer.Option("--release", help="release whose held-out split to use")],
    split: Annotated[str, typer.Option("--split", help="dev or test")] = "",
    project_dir: ProjectOption = None,
) -> None:
    """Evaluate a checkpoint on a release's held-out split; register it in the catalogue."""
    from pipelines.steps.evaluation import run_evaluation

    project = load(project_dir)
    settings = project.config.training.eval
    if split:
        if split not in ("dev", "test"):
            raise fail(f"--split must be dev or test, not {split!r}")
        settings = settings.model_copy(update={"split": split})
    if not checkpoint.is_dir():
        raise fail(f"{checkpoint}: no such checkpoint folder")
    try:
        record, _ = run_evaluation(
            project,
            checkpoint,
            release,
            settings,
            progress=render.print_note,
        )
    except (ValueError, FileNotFoundError) as error:
        raise fail(str(error)) from error
    render.print_eval_table(record.metrics, f"{record.eval_id} ({checkpoint})")
    render.print_message(f"registered evaluation {record.eval_id} in {project.catalogue_path}")
