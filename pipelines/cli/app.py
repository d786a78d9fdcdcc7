"""The `voxlake` command line, assembled from the topic modules of `pipelines/cli/`.

Commands act on the project in the current folder, or the one given with
`--project DIR`. The commands that start Dagster runs or the webserver (`run`, `ui`,
`demo`) or read the Dagster instance (`status`) live in `assets/cli.py`, which passes
them to `build_app` and is the console entry point; `app` here is the command line
without them (no Dagster import anywhere).
"""

from __future__ import annotations

from collections.abc import Callable

import typer

from pipelines.cli import catalogue, corpus, project, quality, releases, tokenizer, training

Command = Callable[..., None]


def build_app(
    *,
    run: Command | None = None,
    status: Command | None = None,
    ui: Command | None = None,
    demo: Command | None = None,
) -> typer.Typer:
    """The `voxlake` typer app; `run`, `status`, `ui` and `demo` come from `assets/cli.py`.

    Commands are registered in the order `voxlake --help` lists them, the Dagster ones
    included where they belong.
    """
    app = typer.Typer(
        no_args_is_help=True, add_completion=False, help="voxlake: a speech data engine."
    )
    source_app = typer.Typer(no_args_is_help=True, help="Manage the project's sources.")
    fixtures_app = typer.Typer(no_args_is_help=True, help="Generate test corpora.")
    tokenizer_app = typer.Typer(no_args_is_help=True, help="GLM-4-Voice tokenizer checkpoints.")
    catalogue_app = typer.Typer(no_args_is_help=True, help="The DuckDB catalogue.")
    release_app = typer.Typer(no_args_is_help=True, help="Immutable dataset releases.")
    export_app = typer.Typer(no_args_is_help=True, help="Export a release for training elsewhere.")
    app.add_typer(catalogue_app, name="catalogue")
    app.add_typer(release_app, name="release")
    app.add_typer(export_app, name="export")
    app.add_typer(source_app, name="source")
    app.add_typer(fixtures_app, name="fixtures")
    app.add_typer(tokenizer_app, name="tokenizer")
    app.add_typer(training.build_eval_app(), name="eval")

    commands: list[tuple[str, Command | None]] = [
        ("init", project.init),
        ("run", run),
        ("status", status),
        ("query", catalogue.query),
        ("summary", catalogue.summary),
        ("report", quality.report),
        ("audit", releases.audit),
        ("lineage", training.lineage_command),
        ("tokenize", tokenizer.tokenize),
        ("ui", ui),
        ("demo", demo),
    ]
    for name, command in commands:
        if command is not None:
            app.command(name)(command)
    source_app.command("add")(project.source_add)
    source_app.command("list")(project.source_list)
    catalogue_app.command("rebuild")(catalogue.catalogue_rebuild)
    release_app.command("create")(releases.release_create)
    release_app.command("show")(releases.release_show)
    release_app.command("list")(releases.release_list)
    export_app.command("vita-jsonl")(releases.export_vita)
    export_app.command("hf")(releases.export_hf_command)
    export_app.command("lhotse")(releases.export_lhotse_command)
    tokenizer_app.command("make-demo")(tokenizer.tokenizer_make_demo)
    fixtures_app.command("make")(corpus.fixtures_make)
    return app


app = build_app()
"""The command line without `run`, `ui` and `demo` (those start Dagster: `assets.cli.app`)."""
