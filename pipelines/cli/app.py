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

from pipelines.lake.views import (
    QUALITY_REJECTIONS_SQL,
    QUALITY_SUMMARY_SQL,
    REJECTIONS_SQL,
    SUMMARY_SQL,
    QueryError,
    run_query,
)
from pipelines.project import (
    Project,
    ProjectError,
    format_validation_error,
    init_project,
    load_project,
)
from schemas import ReleaseSpec, SourceConfig

app = typer.Typer(no_args_is_help=True, add_completion=False, help="voxlake: a speech data engine.")
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
    project: Project,
    select: str | None,
    sources: list[str] | None,
    verbose: bool = False,
    parallel: int = 1,
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
                parallel=parallel,
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
    parallel: Annotated[int, typer.Option("--parallel", "-j", help="unit runs at once")] = 1,
    project_dir: ProjectOption = None,
) -> None:
    """Materialize assets through Dagster on the project's instance."""
    project = _load(project_dir)
    if not project.config.sources:
        raise _fail(f"{project.config_path} has no sources; add one with `voxlake source add`")
    if parallel < 1:
        raise _fail("--parallel must be at least 1")
    if not _run(project, select, source, verbose, parallel):
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
    """Run read-only SQL on the catalogue (utterances, rejections, shards, releases, ...;
    see docs/catalogue.md), or on lake views (manifests, ingest_rejections, quality) before the
    catalogue exists."""
    if fmt not in {"table", "csv", "json"}:
        raise _fail(f"--format must be table, csv or json, not {fmt!r}")
    project = _load(project_dir)
    try:
        result = _query(project, sql)
    except QueryError as error:
        raise _fail(str(error)) from error
    _print_arrow(result, fmt)


def _query(project: Project, sql: str) -> Any:
    """Run read-only SQL on the catalogue, or on the lake's views before one exists."""
    if project.catalogue_path.exists():
        from pipelines.catalogue.build import CatalogueError, query_catalogue

        try:
            return query_catalogue(project.catalogue_path, sql)
        except CatalogueError as error:
            raise QueryError(str(error)) from error
    return run_query(project.lake, sql)


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
    from pipelines.steps.quality_report import write_report

    project = _load(project_dir)
    if source is not None:
        try:
            project.config.source(source)
        except KeyError as error:
            raise _fail(str(error.args[0])) from error
    with console.status("rendering the quality report"):
        path = write_report(project, out=out, source=source)
    console.print(f"quality report: {path}")


@catalogue_app.command("rebuild")
def catalogue_rebuild(project_dir: ProjectOption = None) -> None:
    """Recreate catalogue.duckdb from the lake alone."""
    from pipelines.catalogue.build import CatalogueError, rebuild_catalogue

    project = _load(project_dir)
    try:
        stats = rebuild_catalogue(project)
    except CatalogueError as error:
        raise _fail(str(error)) from error
    console.print(
        f"rebuilt {stats.path} in {stats.seconds:.2f} s: {stats.n_utterances} utterances "
        f"({stats.n_accepted} accepted, {stats.n_rejected} rejected), {stats.n_shards} shards, "
        f"{stats.n_releases} releases"
    )


@release_app.command("create")
def release_create(
    name: Annotated[str, typer.Argument(help="release name (immutable once created)")],
    where: Annotated[str, typer.Option("--where", help="SQL predicate over utterances")] = "TRUE",
    split_by: Annotated[str, typer.Option("--split-by", help="speaker | utterance")] = "speaker",
    dev: Annotated[float, typer.Option("--dev", help="share of speakers in dev")] = 0.0,
    test: Annotated[float, typer.Option("--test", help="share of speakers in test")] = 0.0,
    dedup: Annotated[bool, typer.Option("--dedup", help="drop exact PCM duplicates")] = False,
    project_dir: ProjectOption = None,
) -> None:
    """Create an immutable release from the catalogue and register it."""
    from pipelines.catalogue.build import update_catalogue
    from pipelines.releases.create import ReleaseError, create_release, release_summary

    project = _load(project_dir)
    try:
        spec = ReleaseSpec(
            name=name, where=where, split_by=split_by, dev=dev, test=test, dedup=dedup
        )
    except ValidationError as error:
        raise _fail(format_validation_error(Path("release"), error)) from error
    try:
        made = create_release(project, spec)
    except ReleaseError as error:
        raise _fail(str(error)) from error
    update_catalogue(project)
    release = made.release
    console.print(
        f"release {name}: {release.n_utterances} utterances, "
        f"{release.duration_s / 3600:.4f} h, {len(release.shards)} shards, "
        f"{release.n_duplicates_dropped} duplicates dropped -> {made.folder}"
    )
    if release.tokenizer_is_demo:
        err_console.print("[yellow]warning:[/] codes come from the random-weight demo tokenizer")
    from pipelines.releases.create import load_release

    _print_arrow(release_summary(load_release(project, name)[1]).to_arrow(), "table")


@release_app.command("show")
def release_show(
    name: Annotated[str, typer.Argument(help="release name")],
    project_dir: ProjectOption = None,
) -> None:
    """Print a release's lineage and hours per split, source and language."""
    from pipelines.releases.create import ReleaseError, load_release, release_summary

    project = _load(project_dir)
    try:
        release, utterances = load_release(project, name)
    except ReleaseError as error:
        raise _fail(str(error)) from error
    console.print(
        f"release {release.name} (created {release.created_at:%Y-%m-%d %H:%M} UTC)\n"
        f"  where:       {release.where}\n"
        f"  split by:    {release.split_by} (dev {release.dev_fraction}, "
        f"test {release.test_fraction}), dedup {release.dedup}\n"
        f"  utterances:  {release.n_utterances} ({release.duration_s / 3600:.4f} h), "
        f"{release.n_duplicates_dropped} duplicates dropped\n"
        f"  shards:      {len(release.shards)}\n"
        f"  policy:      {', '.join(release.policy_versions)}\n"
        f"  tokenizer:   {', '.join(t[:16] for t in release.tokenizer_sha256)}"
        f"{' (DEMO: random weights)' if release.tokenizer_is_demo else ''}\n"
        f"  code:        {release.code_version}"
    )
    _print_arrow(release_summary(utterances).to_arrow(), "table")


@release_app.command("list")
def release_list(project_dir: ProjectOption = None) -> None:
    """List the releases in the lake."""
    from pipelines.releases.create import load_release

    project = _load(project_dir)
    folder = project.lake.root / "releases"
    table = Table("name", "created", "utterances", "hours", "shards")
    for path in sorted(folder.glob("*/release.json")) if folder.exists() else []:
        release, _ = load_release(project, path.parent.name)
        table.add_row(
            release.name,
            f"{release.created_at:%Y-%m-%d %H:%M}",
            str(release.n_utterances),
            f"{release.duration_s / 3600:.4f}",
            str(len(release.shards)),
        )
    console.print(table)


@app.command()
def audit(
    release: Annotated[str | None, typer.Option("--release", help="audit one release")] = None,
    source: Annotated[str | None, typer.Option("--source", help="audit one source")] = None,
    sample: Annotated[int, typer.Option("--sample", help="utterances to re-measure")] = 20,
    out: Annotated[Path | None, typer.Option("--out", help="HTML report file")] = None,
    project_dir: ProjectOption = None,
) -> None:
    """Verify shards against the catalogue; re-measure and re-tokenize a sample."""
    from pipelines.catalogue.build import CatalogueError
    from pipelines.releases.audit import audit as run_audit
    from pipelines.releases.create import ReleaseError

    project = _load(project_dir)
    try:
        with console.status("auditing shards"):
            result = run_audit(project, release=release, source=source, sample=sample, report=out)
    except (CatalogueError, ReleaseError) as error:
        raise _fail(str(error)) from error
    console.print(
        f"audit of {result.scope}: {result.shards} shards, {result.samples} samples, "
        f"{result.remeasured} re-measured, {result.retokenized} re-tokenized"
    )
    for problem in result.problems[:50]:
        err_console.print(f"[red]MISMATCH[/] {problem}", highlight=False)
    console.print(f"audit report: {result.report_path}")
    if not result.passed:
        raise _fail(f"{len(result.problems)} mismatches")
    console.print("[green]audit passed[/]")


@app.command("lineage")
def lineage_command(
    checkpoint: Annotated[
        str,
        typer.Argument(help="checkpoint path (or lake-relative), run id, or sha256 prefix"),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="print the full lineage as JSON")] = False,
    project_dir: ProjectOption = None,
) -> None:
    """Which runs, releases, shards, units and sources made a checkpoint; its evaluations."""
    from pipelines.catalogue.build import CatalogueError
    from pipelines.lineage import LineageError, lineage, lineage_tree

    project = _load(project_dir)
    try:
        result = lineage(project, checkpoint)
    except (CatalogueError, LineageError) as error:
        raise _fail(str(error)) from error
    if as_json:
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
        return
    console.print(lineage_tree(result), highlight=False)


def print_eval_table(metrics: dict[str, Any], title: str) -> None:
    """An evaluation's losses, per-module accuracy and schedule comparison as rich tables."""
    from rich.table import Table

    from pipelines.steps.evaluation import SCHEDULE_HEADERS, schedule_rows

    def fmt(value: Any, spec: str = ".3f") -> str:
        return "–" if value is None else format(value, spec)

    losses = Table(title=title, title_justify="left")
    for header in ("measure", "value"):
        losses.add_column(header)
    losses.add_row("main loss (nats/token)", fmt(metrics.get("main_loss")))
    losses.add_row(
        "text loss / perplexity",
        f"{fmt(metrics.get('text_loss'))} / {fmt(metrics.get('text_ppl'), '.1f')}",
    )
    losses.add_row(
        "audio loss / perplexity",
        f"{fmt(metrics.get('audio_loss'))} / {fmt(metrics.get('audio_ppl'), '.1f')}",
    )
    losses.add_row("main head top-1", fmt(metrics.get("main_top1")))
    top1 = metrics.get("mctp_top1") or []
    losses.add_row("MCTP top-1 by module", " ".join(fmt(v, ".2f") for v in top1) or "–")
    console.print(losses)
    schedules = Table(title="decoding schedules (same prompts, one run)", title_justify="left")
    for header in SCHEDULE_HEADERS:
        schedules.add_column(header)
    for row in schedule_rows(metrics):
        schedules.add_row(*row)
    console.print(schedules)


@app.command("eval")
def eval_command(
    checkpoint: Annotated[Path, typer.Argument(help="Hugging Face checkpoint folder")],
    release: Annotated[str, typer.Option("--release", help="release whose held-out split to use")],
    split: Annotated[str, typer.Option("--split", help="dev or test")] = "",
    project_dir: ProjectOption = None,
) -> None:
    """Evaluate a checkpoint on a release's held-out split; register it in the catalogue."""
    from pipelines.steps.evaluation import run_evaluation

    project = _load(project_dir)
    settings = project.config.training.eval
    if split:
        if split not in ("dev", "test"):
            raise _fail(f"--split must be dev or test, not {split!r}")
        settings = settings.model_copy(update={"split": split})
    if not checkpoint.is_dir():
        raise _fail(f"{checkpoint}: no such checkpoint folder")
    try:
        record, _ = run_evaluation(
            project,
            checkpoint,
            release,
            settings,
            progress=lambda message: console.print(f"[dim]{message}[/dim]"),
        )
    except (ValueError, FileNotFoundError) as error:
        raise _fail(str(error)) from error
    print_eval_table(record.metrics, f"{record.eval_id} ({checkpoint})")
    console.print(f"registered evaluation {record.eval_id} in {project.catalogue_path}")


@export_app.command("vita-jsonl")
def export_vita(
    out: Annotated[Path, typer.Argument(help="output folder")],
    release: Annotated[str, typer.Option("--release", help="release name")],
    project_dir: ProjectOption = None,
) -> None:
    """VITA-Audio training JSONL (ASR + TTS), FLAC files and upstream code caches."""
    from pipelines.releases.create import ReleaseError
    from pipelines.releases.export import ExportError, export_vita_jsonl

    try:
        stats = export_vita_jsonl(_load(project_dir), release, out)
    except (ExportError, ReleaseError) as error:
        raise _fail(str(error)) from error
    console.print(f"exported release {release} to {out}: {json.dumps(stats.counts())}")


@export_app.command("hf")
def export_hf_command(
    out: Annotated[Path, typer.Argument(help="output folder (save_to_disk)")],
    release: Annotated[str, typer.Option("--release", help="release name")],
    project_dir: ProjectOption = None,
) -> None:
    """A Hugging Face dataset (save_to_disk) with an Audio column and the codes."""
    from pipelines.releases.create import ReleaseError
    from pipelines.releases.export import ExportError, export_hf

    try:
        stats = export_hf(_load(project_dir), release, out)
    except (ExportError, ReleaseError) as error:
        raise _fail(str(error)) from error
    console.print(f"exported release {release} to {out}: {json.dumps(stats.counts())}")


@tokenizer_app.command("make-demo")
def tokenizer_make_demo(
    directory: Annotated[Path, typer.Argument(help="checkpoint folder to write")],
) -> None:
    """Write a tiny random-weight checkpoint in the GLM-4-Voice layout (codes mean nothing)."""
    from inference.glm4voice import write_demo_checkpoint

    write_demo_checkpoint(directory)
    console.print(
        f"demo tokenizer checkpoint written to {directory.resolve()} "
        "(random weights: its codes carry no meaning)"
    )


@app.command()
def tokenize(
    files: Annotated[list[Path], typer.Argument(help="audio files")],
    checkpoint: Annotated[
        Path | None,
        typer.Option("--checkpoint", help="checkpoint folder (default: the project's)"),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="text | json")] = "text",
    project_dir: ProjectOption = None,
) -> None:
    """Print the GLM-4-Voice codes of audio files, as <|audio_N|> text or JSON."""
    from inference.glm4voice import load_tokenizer
    from pipelines.audio.decode import AudioDecodeError
    from pipelines.audio.prepare import prepare

    if fmt not in {"text", "json"}:
        raise _fail(f"--format must be text or json, not {fmt!r}")
    if checkpoint is None:
        from pipelines.tokenizer import ensure_checkpoint

        project = _load(project_dir)
        checkpoint = ensure_checkpoint(project.directory, project.config.tokenizer)
    try:
        tokenizer = load_tokenizer(checkpoint)
    except (OSError, ValueError) as error:
        raise _fail(f"cannot load tokenizer from {checkpoint}: {error}") from error
    audio = []
    for path in files:
        try:
            audio.append(prepare(path, str(path)).samples)
        except AudioDecodeError as error:
            raise _fail(f"{path}: {error.message}") from error
    codes = tokenizer.tokenize(audio)
    if tokenizer.is_demo:
        err_console.print("[yellow]warning:[/] demo tokenizer: random weights, codes mean nothing")
    if fmt == "json":
        payload = [
            {
                "file": str(p),
                "n_codes": len(c),
                "codes": c.tolist(),
                "tokenizer_sha256": tokenizer.checkpoint_sha256,
            }
            for p, c in zip(files, codes, strict=True)
        ]
        sys.stdout.write(json.dumps(payload) + "\n")
        return
    for path, file_codes in zip(files, codes, strict=True):
        text = "".join(f"<|audio_{int(c)}|>" for c in file_codes)
        sys.stdout.write(f"{path}\t<|begin_of_audio|>{text}<|end_of_audio|>\n")


@fixtures_app.command("make")
def fixtures_make(directory: Annotated[Path, typer.Argument(help="output folder")]) -> None:
    """Generate the look-alike test corpora (needs espeak-ng)."""
    from pipelines.demo.corpus import make_fixtures

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


def _print_training(project: Project) -> Path | None:
    """After a demo run: the runs table, the final evaluation and the final lineage."""
    from pipelines.lineage import LineageError, lineage, lineage_tree
    from pipelines.steps.train import latest_succeeded_run

    release = project.config.training.release
    run = latest_succeeded_run(project, "sft", release) if release else None
    if run is None or run.checkpoint is None:
        return None
    console.print("\n[bold]training runs[/bold] (catalogue table `runs`)")
    _print_arrow(
        _query(
            project,
            "SELECT stage, run_id, status, metrics->>'$.steps' AS steps, "
            "round(CAST(metrics->>'$.final_loss' AS DOUBLE), 3) AS final_loss, "
            "round(CAST(metrics->>'$.tokens_per_s' AS DOUBLE)) AS tokens_per_s "
            "FROM runs ORDER BY started_at",
        ),
        "table",
    )
    evals = _query(
        project,
        "SELECT eval_id, metrics FROM evals WHERE checkpoint_sha256 = "
        f"'{run.checkpoint_sha256}' ORDER BY created_at DESC LIMIT 1",
    ).to_pylist()
    if evals:
        print_eval_table(json.loads(evals[0]["metrics"]), f"evaluation {evals[0]['eval_id']}")
    try:
        console.print(lineage_tree(lineage(project, run.run_id), max_items=5), highlight=False)
    except LineageError as error:
        err_console.print(f"[red]lineage:[/] {error}")
    return project.lake.root / run.checkpoint


@app.command()
def demo(
    directory: Annotated[Path, typer.Option("--dir", help="demo project folder")] = Path("demo"),
) -> None:
    """Run the main job end to end on the bundled corpora and say where the results are."""
    from pipelines.demo.project import demo_project

    project = demo_project(directory)
    console.print(f"demo project: {project.directory}")
    ok = _run(project, None, None)
    print_summary(project)
    audit_ok = True
    if ok:
        from pipelines.releases.audit import audit as run_audit
        from pipelines.releases.create import load_release, release_summary

        name = project.config.releases[0].name
        release, utterances = load_release(project, name)
        console.print(
            f"release {name}: {release.n_utterances} utterances, "
            f"{release.duration_s / 3600:.4f} h in {len(release.shards)} shards "
            f"({release.n_duplicates_dropped} duplicates dropped); codes from the "
            f"{'random-weight DEMO' if release.tokenizer_is_demo else 'configured'} tokenizer"
        )
        _print_arrow(release_summary(utterances).to_arrow(), "table")
        with console.status("auditing the release"):
            result = run_audit(project, release=name, sample=10)
        audit_ok = result.passed
        console.print(
            f"audit of {result.scope}: {'passed' if result.passed else 'FAILED'} "
            f"({result.shards} shards, {result.samples} samples, {result.remeasured} "
            f"re-measured, {result.retokenized} re-tokenized)"
        )
        for problem in result.problems[:20]:
            err_console.print(f"[red]MISMATCH[/] {problem}", highlight=False)
    final_checkpoint = _print_training(project) if ok else None
    reports = project.lake.reports_dir()
    console.print(
        "\nresults:\n"
        f"  lake:           {project.lake.root} (manifests, quality, tokens, shards, releases)\n"
        f"  catalogue:      {project.catalogue_path}\n"
        f"  quality report: {reports / 'quality.html'}\n"
        f"  audit report:   {reports / 'audit.html'}\n"
        + (
            f"  checkpoint:     {final_checkpoint} (SFT, tiny profile)\n"
            if final_checkpoint
            else ""
        )
        + f"  Dagster home:   {project.dagster_home} (runs, events; SQLite)\n"
        f"  explore:        voxlake query --project {directory} "
        '"SELECT source, status, count(*) FROM utterances GROUP BY ALL"\n'
        f"  UI:             voxlake ui --project {directory}   (http://127.0.0.1:3000)"
    )
    if not (ok and audit_ok):
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
