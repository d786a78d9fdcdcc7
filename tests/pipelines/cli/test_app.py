"""How the command line is put together: its commands, their order, who prints with rich."""

from __future__ import annotations

import ast
from pathlib import Path

import typer

import pipelines.cli
from assets.cli import app as entry_point_app
from pipelines.cli.app import app as pipelines_app

# As `voxlake --help` lists them.
COMMANDS = [
    "init",
    "run",
    "status",
    "query",
    "summary",
    "report",
    "audit",
    "lineage",
    "tokenize",
    "ui",
    "demo",
]
# `eval` is a group (`run`, the default, `compare`, `report`).
GROUPS = ["catalogue", "release", "export", "source", "fixtures", "tokenizer", "eval"]
DAGSTER_COMMANDS = {"run", "status", "ui", "demo"}


def _names(app: typer.Typer) -> list[str]:
    return list(typer.main.get_group(app).commands)


def test_the_entry_point_has_every_command_in_help_order() -> None:
    assert _names(entry_point_app) == COMMANDS + GROUPS


def test_the_pipelines_command_line_has_no_dagster_command() -> None:
    assert _names(pipelines_app) == [c for c in COMMANDS if c not in DAGSTER_COMMANDS] + GROUPS


def test_only_render_modules_import_rich() -> None:
    folder = Path(pipelines.cli.__file__).parent
    importers = set()
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            if any(name.split(".")[0] == "rich" for name in names):
                importers.add(path.name)
    # render.py and its parts (render_fit, render_tables, render_lineage).
    assert importers and all(name.startswith("render") for name in importers), importers
    assert "render.py" in importers
