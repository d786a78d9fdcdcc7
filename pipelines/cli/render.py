"""Everything `voxlake` prints with rich: messages, errors and warnings, run-wide notices,
progress bars and the per-phase summary, tables, `voxlake status`, the lineage.

The command modules of `pipelines/cli/` and `assets/cli.py` build no rich object and write
no rich markup: they hand plain text or data to these functions (and to
`render_tables.py`, the tables of particular data), so how the command line looks is
decided here alone. Output that is data (`--format csv|json`, `--json`, codes) is
written to stdout as it is, without rich.

The console rules (docs/console.md): every table fits the terminal's width and never
cuts an id (`render_fit.py` lays them out); a warning that applies to a whole run is
printed once, wrapped, at the top of the summary (`print_notices`); an error is
`error: ...` and at most a `try: ...` line, unwrapped, on stderr.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.status import Status
from rich.table import Table
from rich.text import Text

from pipelines.cli.render_fit import Cell, fit_table
from pipelines.cli.render_lineage import lineage_summary, lineage_tree

if TYPE_CHECKING:
    from pipelines.lineage import Lineage
    from pipelines.status import ProjectStatus

console = Console()
err_console = Console(stderr=True)

__all__ = ["console", "err_console", "lineage_tree"]


# ---------------------------------------------------------------------------
# Messages


def print_message(text: str) -> None:
    """One message on stdout, as rich prints it (numbers and paths highlighted)."""
    console.print(text)


def print_plain(text: str) -> None:
    """One message on stdout, wrapped to the terminal, without markup or highlighting."""
    console.print(text, markup=False, highlight=False)


def print_error(message: str) -> None:
    """`error: <message>` on stderr, one line however long; the caller decides the exit."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def print_try(example: str) -> None:
    """`try: <example>` under an error: a command that does what the user meant."""
    err_console.print(f"[bold]try:[/] {escape(example)}", highlight=False, soft_wrap=True)


def print_traceback(text: str) -> None:
    """A traceback on stderr, as Python prints it (`--verbose` only)."""
    err_console.print(text.rstrip(), markup=False, highlight=False, soft_wrap=True)


def print_log_line(line: str) -> None:
    """One line of a log echoed by `--verbose`, dimmed, on stderr."""
    err_console.print(line, style="dim", markup=False, highlight=False, soft_wrap=True)


def print_warning(message: str) -> None:
    """`warning: <message>` on stderr, wrapped to the terminal; the command goes on."""
    err_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)


def print_notices(warnings: Sequence[str], notes: Sequence[str] = ()) -> None:
    """What applies to a whole run (the demo tokenizer, a random-weight model), once, at
    the top of its summary: each warning, then each note, wrapped to the terminal."""
    for warning in warnings:
        console.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False)
    for note in notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    if warnings or notes:
        console.print()


def print_note(message: str) -> None:
    """A dimmed progress note on stdout (e.g. the steps of an evaluation)."""
    console.print(f"[dim]{escape(message)}[/dim]")


def print_passed(message: str) -> None:
    """A final success line in green, e.g. `audit passed`."""
    console.print(f"[green]{escape(message)}[/]")


def print_mismatches(problems: Iterable[str]) -> None:
    """Audit mismatches on stderr, one a line however long (a path in it is never split)."""
    for problem in problems:
        err_console.print(f"[red]MISMATCH[/] {escape(problem)}", highlight=False, soft_wrap=True)


def print_run_failures(failures: Iterable[str]) -> None:
    """Failed steps and checks of Dagster runs on stderr, one a line however long: the
    terminal wraps it, so a path or id in it stays whole for copying and grepping."""
    for failure in failures:
        err_console.print(f"[red]FAILED[/] {escape(failure)}", highlight=False, soft_wrap=True)


def print_lineage_error(message: str) -> None:
    """Why a lineage could not be shown, on stderr (the command goes on)."""
    err_console.print(f"[red]lineage:[/] {escape(message)}", highlight=False, soft_wrap=True)


def status(message: str) -> Status:
    """A spinner with `message` while the `with` block runs."""
    return console.status(message)


# ---------------------------------------------------------------------------
# Progress of a run, phase by phase

_PHASE_NOUNS = {"inventory": "sources", "units": "units"}
"""What a phase counts (the others count assets)."""


@dataclass
class Phase:
    """What one phase of a run did, for its summary line."""

    name: str
    started: float
    ended: float
    done: int = 0
    total: int = 0
    runs: int = 0
    hours_done: float | None = None
    hours_total: float | None = None

    @property
    def seconds(self) -> float:
        """Wall time from the phase's first progress report to its last."""
        return self.ended - self.started


def _hours(value: float) -> str:
    return f"{value:.2f}" if value < 100 else f"{value:,.0f}"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def phase_line(phase: Phase) -> str:
    """`units      22 units, 0.06 h of audio, in 0:00:30 (0.7 units/s, 7.2 h/h; 4 runs)`."""
    noun = _PHASE_NOUNS.get(phase.name, "assets")
    count = f"{phase.done}" if phase.done == phase.total else f"{phase.done} of {phase.total}"
    hours = f", {_hours(phase.hours_done)} h of audio," if phase.hours_total else ""
    rates = []
    # A rate means something for units of audio, not for a handful of assets.
    if phase.seconds >= 1 and phase.done and noun == "units":
        rates.append(f"{phase.done / phase.seconds:.1f} {noun}/s")
        if phase.hours_done:
            rates.append(f"{phase.hours_done * 3600 / phase.seconds:.1f} h/h")
    runs = f"{phase.runs} runs" if phase.runs > 1 else ""
    detail = "; ".join(p for p in (", ".join(rates), runs) if p)
    counted = noun[:-1] if phase.done == phase.total == 1 else noun
    return f"{phase.name:<10} {count} {counted}{hours} in {_clock(phase.seconds)}" + (
        f" ({detail})" if detail else ""
    )


@contextmanager
def stage_progress(clock: Callable[[], float] = time.monotonic) -> Iterator[Callable[..., None]]:
    """One live progress display per phase of a run, then one summary line per phase.

    Yields `on_progress(stage, done, total, runs_done, runs_total, hours_done=None,
    hours_total=None)`: units (or sources, or assets) done of all, the phase's Dagster
    runs finished, and the hours of audio done and planned where the plan knows them.
    The display shows those, the rate and the time left; it goes away when the run
    ends (on a terminal) and the summary lines stay. `clock` times the phases.
    """
    phases: dict[str, Phase] = {}
    with Progress(
        TextColumn("[bold]{task.description:<10}"),
        BarColumn(bar_width=12),
        MofNCompleteColumn(),
        TextColumn("{task.fields[hours]}"),
        TextColumn("{task.fields[rate]}"),
        TextColumn("{task.fields[runs]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        # Piped or captured, a live display shows nothing (and leaves a blank line).
        disable=not console.is_terminal,
    ) as progress:
        tasks: dict[str, TaskID] = {}

        def on_progress(
            stage: str,
            done: int,
            total: int,
            runs_done: int,
            runs_total: int,
            hours_done: float | None = None,
            hours_total: float | None = None,
        ) -> None:
            now = clock()
            if stage not in tasks:
                for other in tasks.values():  # an earlier phase is over
                    progress.stop_task(other)
                tasks[stage] = progress.add_task(stage, total=total, hours="", rate="", runs="")
                phases[stage] = Phase(stage, now, now)
            # A later round of the same phase (units a failed run left) replaces the counts.
            phase = phases[stage]
            phase.ended, phase.done, phase.total, phase.runs = (
                now,
                min(done, total),
                total,
                runs_total,
            )
            phase.hours_done, phase.hours_total = hours_done, hours_total
            counts_units = _PHASE_NOUNS.get(stage) == "units"
            rate = f"{done / phase.seconds:.1f}/s" if counts_units and phase.seconds >= 1 else ""
            hours = f"{_hours(hours_done or 0)}/{_hours(hours_total)} h" if hours_total else ""
            runs = f"runs {runs_done}/{runs_total}" if runs_total > 1 else ""
            progress.update(
                tasks[stage],
                completed=min(done, total),
                total=total,
                hours=hours,
                rate=rate,
                runs=runs,
            )

        yield on_progress
    for phase in phases.values():
        console.print(phase_line(phase), highlight=False)


# ---------------------------------------------------------------------------
# Tables


def print_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Cell]],
    *,
    title: str | None = None,
    notes: Sequence[str] = (),
) -> None:
    """A table that fits the terminal and never cuts an id (`render_fit.fit_table`): its
    title above, its notes (legends, what a short hash is) dimmed below."""
    if title:
        console.print(Text(title, style="bold"))
    console.print(fit_table(headers, rows, console.width))
    for note in notes:
        console.print(Text(note, style="dim"))


def print_fields(title: str, fields: Sequence[tuple[str, str]]) -> None:
    """`title:` then one `  name: value` line per field, values aligned; a value too long
    for the terminal wraps under itself (a path is folded, never cut)."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for name, value in fields:
        grid.add_row(f"  {name}:", Text(value))
    console.print(f"\n{title}:", highlight=False)
    console.print(grid, highlight=False)


# ---------------------------------------------------------------------------
# The lineage (the model and the catalogue walk are pipelines/lineage.py)


def print_lineage(result: Lineage, max_items: int = 20) -> None:
    """The lineage tree on stdout; shards and units beyond `max_items` are counted only."""
    console.print(lineage_tree(result, max_items=max_items), highlight=False)


def print_lineage_summary(result: Lineage, project_option: str = "") -> None:
    """The lineage in a few lines, and the command that prints the whole tree."""
    for line in lineage_summary(result, project_option):
        print_plain(line)


# ---------------------------------------------------------------------------
# Status

_STATE_STYLE = {"failed": "red", "stale": "yellow", "never": "dim", "current": "green"}
# Failed or stale units named per source under the tables; the JSON lists all.
_UNITS_NAMED = 5


def _styled(value: object, style: str | None = None) -> Text:
    return Text(str(value), style=style or "")


def print_status(status: ProjectStatus) -> None:
    """`voxlake status`: units, utterances and last run per source, in tables that fit the
    terminal (ids never cut), then the failed and stale units by name."""
    if not status.sources:
        console.print("no sources: add one with `voxlake source add`")
        return
    units, utterances, runs = [], [], []
    for s in status.sources:
        inventory = s.inventory.value
        units.append(
            [
                s.source,
                _styled(inventory, _STATE_STYLE.get(inventory)),
                str(s.units_planned),
                _styled(s.units_done, "green" if s.units_done else None),
                _styled(s.units_failed, "red" if s.units_failed else None),
                _styled(s.units_stale, "yellow" if s.units_stale else None),
                str(s.units_pending),
            ]
        )
        utterances.append(
            [
                s.source,
                str(s.utterances_planned),
                str(s.utterances_accepted),
                str(s.utterances_rejected),
                str(s.utterances_pending),
                f"{s.accepted_hours:.2f}/{s.planned_hours:.2f}",
            ]
        )
        run = s.last_run
        if run is None:
            runs.append([s.source, _styled("none", "dim"), "", ""])
            continue
        ended = f"{run.ended_at:%Y-%m-%d %H:%M}" if run.ended_at else "running"
        style = "green" if run.succeeded else "red" if run.status == "FAILURE" else "yellow"
        result = _styled(run.status, style)
        if run.failed_runs and run.runs > 1:
            result.append(f" ({run.failed_runs} of {run.runs} runs)")
        runs.append([s.source, result, ended, run.run_id])
    print_table(
        ["source", "inventory", "planned", "done", "failed", "stale", "pending"],
        units,
        title="units",
    )
    print_table(
        ["source", "planned", "accepted", "rejected", "pending", "hours acc/plan"],
        utterances,
        title="utterances",
    )
    print_table(["source", "result", "ended (UTC)", "run id"], runs, title="last run")
    for s in status.sources:
        for label, named in (("failed", s.failed_units), ("stale", s.stale_units)):
            if named:
                more = f" and {len(named) - _UNITS_NAMED} more" if len(named) > _UNITS_NAMED else ""
                print_plain(f"{s.source}: {label} units {', '.join(named[:_UNITS_NAMED])}{more}")
    if any(s.units_failed or s.units_stale or s.units_pending for s in status.sources) or any(
        s.inventory.value in ("stale", "never", "failed") for s in status.sources
    ):
        console.print("`voxlake run` does what is pending, stale or failed; --json lists all")
