"""The `fixtures make` command: the look-alike test corpora (pipelines/demo/corpus/)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli import render


def fixtures_make(directory: Annotated[Path, typer.Argument(help="output folder")]) -> None:
    """Generate the look-alike test corpora (needs espeak-ng)."""
    from pipelines.demo.corpus import make_fixtures

    make_fixtures(directory)
    render.print_message(f"test corpora written to {directory.resolve()}")
