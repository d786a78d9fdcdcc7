"""The `voxlake` command line, assembled from the topic modules of `pipelines/cli/`.

Commands act on the project in the current folder, or the one given with
`--project DIR`. The commands that start Dagster runs or the webserver (`run`, `ui`,
`demo`) or read the Dagster instance (`status`) live in `assets/cli.py`, which passes
them to `build_app` and is the console entry point; `app` here is the command line
without them (no Dagster import anywhere).

`--verbose` (`-v`) may come anywhere on the command line (`voxlake run -v`, `voxlake -v
query ...`): it echoes the logs of the Dagster processes and DeepSpeed as they grow and
prints the traceback of an error. Every command runs inside `VoxlakeGroup.invoke`,
which routes log records (`logs.capture`), prints a usage error as two lines (exit 2)
and an unexpected exception as one (exit 1; `--verbose`: with its traceback).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer
from typer import _click  # typer vendors click; its exceptions are not re-exported
from typer.core import TyperGroup

from pipelines.cli import (
    catalogue,
    corpus,
    logs,
    project,
    quality,
    releases,
    render,
    tokenizer,
    training,
)

Command = Callable[..., None]

VERBOSE_FLAGS = ("--verbose", "-v")


def hoist_verbose(args: list[str]) -> list[str]:
    """`args` with `--verbose`/`-v` moved to the front, where the app's option is parsed,
    so the flag works after any command; nothing after `--` moves.

    >>> hoist_verbose(["run", "--select", "key:x", "-v"])
    ['--verbose', 'run', '--select', 'key:x']
    >>> hoist_verbose(["query", "--", "-v"])
    ['query', '--', '-v']
    """
    end = args.index("--") if "--" in args else len(args)
    if not any(a in VERBOSE_FLAGS for a in args[:end]):
        return args
    return ["--verbose", *(a for a in args[:end] if a not in VERBOSE_FLAGS), *args[end:]]


class VoxlakeGroup(TyperGroup):
    """The `voxlake` group: `--verbose` anywhere, log capture, and errors as the console
    rules say (docs/console.md)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_verbose(args))

    def invoke(self, ctx: Any) -> Any:
        with logs.capture(verbose=bool(ctx.params.get("verbose"))):
            try:
                return super().invoke(ctx)
            except (_click.exceptions.NoArgsIsHelpError, typer.Exit, typer.Abort):
                raise
            except _click.exceptions.UsageError as error:
                # A mistyped command or option: two lines, not a box of help.
                logs.print_handled_traceback()
                render.print_error(error.format_message())
                # The command as typed, whatever the program was called (`python -m ...`).
                words = error.ctx.command_path.split()[1:] if error.ctx is not None else []
                render.print_try(" ".join(["voxlake", *words, "--help"]))
                raise typer.Exit(2) from None
            except _click.exceptions.ClickException:
                raise
            except Exception as error:  # a bug: one line, the traceback with --verbose
                logs.report_internal_error(error)
                raise typer.Exit(1) from None


def _main(
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="echo the Dagster and DeepSpeed logs as they grow; print the traceback of "
            "an error (may come after the command, too)",
        ),
    ] = False,
) -> None:
    """voxlake: a speech data engine."""
    del verbose  # read by VoxlakeGroup.invoke, before any command runs


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
        cls=VoxlakeGroup,
        no_args_is_help=True,
        add_completion=False,
        help="voxlake: a speech data engine.",
    )
    app.callback()(_main)
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
