"""Everything `voxlake` prints with rich: messages, tables from Arrow, the lake summary, the
evaluation table, the lineage tree, progress bars and spinners.

The command modules of `pipelines/cli/` and `assets/cli.py` build no rich object and write
no rich markup: they hand plain text or data to these functions, so how the command line
looks is decided here alone. Output that is data (`--format csv|json`, `--json`, codes)
is written to stdout as it is, without rich.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.status import Status
from rich.table import Table
from rich.tree import Tree

from pipelines.lineage import short_sha256

if TYPE_CHECKING:
    import pyarrow as pa

    from pipelines.lineage import Lineage, ReleaseLink
    from pipelines.status import ProjectStatus
    from schemas import Release, SourceConfig
    from schemas.training import RunRecord

console = Console()
err_console = Console(stderr=True)


# ---------------------------------------------------------------------------
# Messages


def print_message(text: str) -> None:
    """One message on stdout, as rich prints it (numbers and paths highlighted)."""
    console.print(text)


def print_error(message: str) -> None:
    """`error: <message>` on stderr; the caller decides the exit code."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)


def print_warning(message: str) -> None:
    """`warning: <message>` on stderr; the command goes on."""
    err_console.print(f"[yellow]warning:[/] {message}")


def print_note(message: str) -> None:
    """A dimmed progress note on stdout (e.g. the steps of an evaluation)."""
    console.print(f"[dim]{message}[/dim]")


def print_passed(message: str) -> None:
    """A final success line in green, e.g. `audit passed`."""
    console.print(f"[green]{message}[/]")


def print_mismatches(problems: Iterable[str]) -> None:
    """Audit mismatches on stderr, one a line."""
    for problem in problems:
        err_console.print(f"[red]MISMATCH[/] {problem}", highlight=False)


def print_run_failures(failures: Iterable[str]) -> None:
    """Failed steps and checks of Dagster runs on stderr, one a line."""
    for failure in failures:
        err_console.print(f"[red]FAILED[/] {failure}", highlight=False)


def print_lineage_error(message: str) -> None:
    """Why a lineage could not be shown, on stderr (the command goes on)."""
    err_console.print(f"[red]lineage:[/] {message}")


def status(message: str) -> Status:
    """A spinner with `message` while the `with` block runs."""
    return console.status(message)


@contextmanager
def stage_progress() -> Iterator[Callable[[str, int, int, int, int], None]]:
    """One progress bar per stage of a run; yields `on_progress(stage, done, total, runs_done,
    runs_total)`: units (or assets) done of all, and the stage's Dagster runs finished."""
    with Progress(
        TextColumn("[bold]{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[runs]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        tasks: dict[str, Any] = {}

        def on_progress(stage: str, done: int, total: int, runs_done: int, runs_total: int) -> None:
            if stage not in tasks:
                for other in tasks.values():  # an earlier stage is over
                    progress.stop_task(other)
                tasks[stage] = progress.add_task(stage, total=total, runs="")
            runs = f"runs {runs_done}/{runs_total}" if runs_total > 1 else ""
            progress.update(tasks[stage], completed=min(done, total), total=total, runs=runs)

        yield on_progress


# ---------------------------------------------------------------------------
# Tables


def print_arrow(table: Any, fmt: str) -> None:
    """An Arrow table as a rich table, or as CSV or JSON on stdout (`fmt`: table | csv | json)."""
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


def print_summary(
    per_source: pa.Table,
    ingest_rejections: pa.Table,
    quality: pa.Table,
    quality_rejections: pa.Table | None,
) -> None:
    """The lake summary: per source, then the tables that have rows, each with its caption."""
    print_arrow(per_source, "table")
    if ingest_rejections.num_rows:
        console.print("rejected at ingest, by reason:")
        print_arrow(ingest_rejections, "table")
    if quality.num_rows:
        console.print("quality (decode, measure, policy):")
        print_arrow(quality, "table")
        if quality_rejections is not None and quality_rejections.num_rows:
            console.print("rejected after ingest, by rule:")
            print_arrow(quality_rejections, "table")


def print_sources(sources: Iterable[SourceConfig]) -> None:
    """The project's sources: name, kind, path and the options that are set."""
    table = Table("name", "kind", "path", "options")
    for source in sources:
        options = {k: v for k, v in source.options.items() if v is not None}
        table.add_row(source.name, source.kind.value, source.path, json.dumps(options))
    console.print(table)


def print_release_list(releases: Iterable[Release]) -> None:
    """One row per release: name, creation time, utterances, hours, audio and code shards."""
    table = Table("name", "created", "utterances", "hours", "audio shards", "code shards")
    for release in releases:
        table.add_row(
            release.name,
            f"{release.created_at:%Y-%m-%d %H:%M}",
            str(release.n_utterances),
            f"{release.duration_s / 3600:.4f}",
            str(len(release.shards)),
            str(len(release.code_shards)),
        )
    console.print(table)


def print_training_runs(runs: pa.Table) -> None:
    """The catalogue's training runs under a bold heading (the demo's closing report)."""
    console.print("\n[bold]training runs[/bold] (catalogue table `runs`)")
    print_arrow(runs, "table")


def print_eval_table(metrics: dict[str, Any], title: str) -> None:
    """An evaluation's losses, per-module accuracy and schedule comparison as rich tables."""
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


# ---------------------------------------------------------------------------
# The lineage tree (the model and the catalogue walk are pipelines/lineage.py)


def print_lineage(result: Lineage, max_items: int = 20) -> None:
    """The lineage tree on stdout; shards and units beyond `max_items` are counted only."""
    console.print(lineage_tree(result, max_items=max_items), highlight=False)


def _when(value: dt.datetime | None) -> str:
    return f"{value.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC" if value else "-"


_KEY_METRICS = (
    "steps",
    "final_loss",
    "final_main_loss",
    "tokens_per_s",
    "main_loss",
    "text_ppl",
    "audio_ppl",
    "main_top1",
)


def _key_metrics(metrics: dict[str, Any]) -> str:
    """The headline numbers of a run or eval (`--json` has them all)."""
    parts = []
    for key in _KEY_METRICS:
        value = metrics.get(key)
        if isinstance(value, float):
            parts.append(f"{key} {value:.4g}")
        elif value is not None:
            parts.append(f"{key} {value}")
    for row in metrics.get("schedules") or []:
        if row.get("speedup_vs_vanilla") is not None and row["schedule"] != "vanilla":
            parts.append(f"{row['schedule']} {row['speedup_vs_vanilla']:.2f}×")
    return ", ".join(parts) or _compact(metrics)


def _deepspeed_summary(config: dict[str, Any]) -> str:
    """ZeRO stage, precision, batch and accumulation, clipping: what decides a run."""
    zero = (config.get("zero_optimization") or {}).get("stage")
    bf16 = (config.get("bf16") or {}).get("enabled")
    return (
        f"ZeRO-{zero}, {'bf16' if bf16 else 'fp32'}, micro batch "
        f"{config.get('train_micro_batch_size_per_gpu')} × accumulation "
        f"{config.get('gradient_accumulation_steps')}, clip {config.get('gradient_clipping')}"
    )


def _compact(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _run_node(parent: Tree, run: RunRecord) -> Tree:
    took = ""
    if run.finished_at is not None:
        minutes = (run.finished_at - run.started_at).total_seconds() / 60
        took = f" ({minutes:.1f} min)"
    node = parent.add(
        f"[bold]run {escape(run.run_id)}[/]: {escape(run.stage)}, profile "
        f"{escape(run.profile)}, {escape(run.status)}, world size {run.world_size}"
    )
    node.add(f"trained on release {escape(run.release)}")
    node.add(
        f"checkpoint {escape(run.checkpoint or '-')} (sha256 {short_sha256(run.checkpoint_sha256)})"
    )
    node.add(f"config {escape(run.config_path)} (sha256 {short_sha256(run.config_sha256)})")
    node.add(f"text tokenizer sha256 {short_sha256(run.tokenizer_sha256)}")
    node.add(f"code {escape(run.code_version)}")
    node.add(f"DeepSpeed {escape(_deepspeed_summary(run.deepspeed_config))}")
    resumed = (
        f", resumed from step {run.resumed_from_step}" if run.resumed_from_step is not None else ""
    )
    node.add(f"started {_when(run.started_at)}, finished {_when(run.finished_at)}{took}{resumed}")
    if run.dagster_run_id:
        node.add(f"Dagster run {escape(run.dagster_run_id)}")
    node.add(f"metrics {escape(_key_metrics(run.metrics))}")
    return node


def _more(node: Tree, shown: int, total: int) -> None:
    if total > shown:
        node.add(f"[dim]... and {total - shown} more (--json lists all)[/]")


def _release_node(parent: Tree, release: ReleaseLink, max_items: int) -> None:
    demo = " [bold yellow](DEMO: random weights)[/]" if release.tokenizer_is_demo else ""
    node = parent.add(
        f"[bold]release {escape(release.name)}[/] (created {_when(release.created_at)}): "
        f"{release.n_utterances} utterances, {release.duration_s / 3600:.4f} h"
    )
    node.add(
        f"where {escape(release.where)}; split by {escape(release.split_by)} "
        f"(dev {release.dev_fraction}, test {release.test_fraction}), dedup {release.dedup}"
    )
    node.add(f"policy {escape(', '.join(release.policy_versions) or '-')}")
    tokenizers = ", ".join(short_sha256(t) for t in release.tokenizer_sha256) or "-"
    node.add(f"audio tokenizer sha256 {tokenizers}{demo}")
    node.add(f"code {escape(release.code_version)}")
    for title, listed in (("audio shards", release.shards), ("code shards", release.code_shards)):
        shards = node.add(f"{title} ({len(listed)})")
        for shard in listed[:max_items]:
            shards.add(
                f"{escape(shard.shard)} sha256 {short_sha256(shard.sha256)}, {shard.bytes} bytes"
            )
        _more(shards, min(max_items, len(listed)), len(listed))
    units = node.add(f"units ({len(release.units)})")
    for unit in release.units[:max_items]:
        inputs = f"{unit.n_inputs} inputs" if unit.n_inputs is not None else "not inventoried"
        units.add(
            f"{escape(unit.unit)} ({escape(unit.source)}): {unit.n_shards} audio + "
            f"{unit.n_code_shards} code shards, {unit.n_utterances} utterances, {inputs}"
        )
    _more(units, min(max_items, len(release.units)), len(release.units))
    sources = node.add(f"sources ({len(release.sources)})")
    for source in release.sources:
        if source.configured:
            sources.add(
                f"{escape(source.name)} ({escape(source.kind or '-')}) {escape(source.path or '-')}"
            )
        else:
            sources.add(f"{escape(source.name)} [yellow](no longer in voxlake.yaml)[/]")


def lineage_tree(result: Lineage, max_items: int = 20) -> Tree:
    """The lineage as a rich Tree; shards and units beyond `max_items` are counted only."""
    root = Tree(
        f"[bold]checkpoint {escape(result.checkpoint or '(none yet)')}[/] "
        f"(sha256 {short_sha256(result.checkpoint_sha256)})"
    )
    parent = root
    for index, run in enumerate(result.runs):
        node = _run_node(parent, run)
        if run.base_checkpoint is None:
            node.add("base: freshly initialised model")
        elif index + 1 < len(result.runs):
            base = result.runs[index + 1]
            parent = node.add(f"base {escape(run.base_checkpoint)} <- run {escape(base.run_id)}")
        else:
            node.add(f"base {escape(run.base_checkpoint)} (not made by a run in the catalogue)")
    for release in result.releases:
        _release_node(root, release, max_items)
    evals = root.add(f"evaluations ({len(result.evals)})")
    for evaluation in result.evals:
        evals.add(
            f"{escape(evaluation.eval_id)}: {escape(evaluation.release)} {evaluation.split}, "
            f"{_when(evaluation.created_at)}, metrics {escape(_key_metrics(evaluation.metrics))}"
        )
    return root


# ---------------------------------------------------------------------------
# Status

_STATE_STYLE = {"failed": "red", "stale": "yellow", "never": "dim", "current": "green"}
# Failed or stale units named per source under the tables; the JSON lists all.
_UNITS_NAMED = 5


def print_status(status: ProjectStatus) -> None:
    """`voxlake status`: units, utterances and last run per source, in tables that fit 80
    columns (ids wrap, never cut), then the failed and stale units by name."""
    from rich import box

    def count(n: int, style: str | None = None) -> str:
        return f"[{style}]{n}[/]" if n and style else str(n)

    units = Table(title="units", box=box.SIMPLE_HEAD, title_justify="left")
    units.add_column("source", overflow="fold")
    units.add_column("inventory")
    for name in ("planned", "done", "failed", "stale", "pending"):
        units.add_column(name, justify="right")
    utterances = Table(title="utterances", box=box.SIMPLE_HEAD, title_justify="left")
    utterances.add_column("source", overflow="fold")
    for name in ("planned", "accepted", "rejected", "pending"):
        utterances.add_column(name, justify="right")
    utterances.add_column("hours acc/plan", justify="right")
    runs = Table(title="last run", box=box.SIMPLE_HEAD, title_justify="left")
    runs.add_column("source", overflow="fold")
    runs.add_column("result")
    runs.add_column("ended (UTC)")
    runs.add_column("run id", overflow="fold")
    for s in status.sources:
        name = escape(s.source)
        inventory = s.inventory.value
        units.add_row(
            name,
            f"[{_STATE_STYLE.get(inventory, 'default')}]{inventory}[/]",
            str(s.units_planned),
            count(s.units_done, "green"),
            count(s.units_failed, "red"),
            count(s.units_stale, "yellow"),
            str(s.units_pending),
        )
        utterances.add_row(
            name,
            str(s.utterances_planned),
            str(s.utterances_accepted),
            str(s.utterances_rejected),
            str(s.utterances_pending),
            f"{s.accepted_hours:.2f}/{s.planned_hours:.2f}",
        )
        run = s.last_run
        if run is None:
            runs.add_row(name, "[dim]none[/]", "", "")
        else:
            ended = f"{run.ended_at:%Y-%m-%d %H:%M}" if run.ended_at else "running"
            style = "green" if run.succeeded else "red" if run.status == "FAILURE" else "yellow"
            result = f"[{style}]{run.status}[/]"
            if run.failed_runs and run.runs > 1:
                result += f" ({run.failed_runs} of {run.runs} runs)"
            runs.add_row(name, result, ended, escape(run.run_id))
    if not status.sources:
        console.print("no sources: add one with `voxlake source add`")
        return
    for table in (units, utterances, runs):
        console.print(table)
    for s in status.sources:
        for label, named in (("failed", s.failed_units), ("stale", s.stale_units)):
            if named:
                more = f" and {len(named) - _UNITS_NAMED} more" if len(named) > _UNITS_NAMED else ""
                console.print(
                    f"{escape(s.source)}: {label} units {escape(', '.join(named[:_UNITS_NAMED]))}"
                    f"{more}",
                    highlight=False,
                )
    if any(s.units_failed or s.units_stale or s.units_pending for s in status.sources) or any(
        s.inventory.value in ("stale", "never", "failed") for s in status.sources
    ):
        console.print("`voxlake run` does what is pending, stale or failed; --json lists all")
