"""Commands on trained checkpoints: `lineage` (what made one) and `eval` (how good it is).

`voxlake eval` is a group: `eval run CHECKPOINT --release R` evaluates (also reachable as
`eval CHECKPOINT --release R`, the usage from before the group), `eval compare A B`
compares two evaluations on the same utterances with a paired bootstrap, and
`eval report E` writes an evaluation's self-contained HTML report.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from typer.core import TyperGroup

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


def print_eval_sets(metrics: dict[str, Any]) -> None:
    """The per-set error rates of an evaluation, as a table."""
    import pyarrow as pa

    from pipelines.evaluation.summary import METRIC_LABELS, rate_with_interval

    sets = metrics.get("eval_sets") or []
    if not sets:
        return
    render.print_message("\nerror rates per evaluation set (95 % bootstrap interval):")
    render.print_arrow(
        pa.Table.from_pylist(
            [
                {
                    "evaluation set": s["eval_set"],
                    "task": s["task"],
                    "metric": METRIC_LABELS.get(s["metric"], s["metric"]),
                    "utterances": s["n_utterances"],
                    "units": s["n_ref_units"],
                    "error rate [95 % CI]": rate_with_interval(s),
                    "S": s["substitutions"],
                    "D": s["deletions"],
                    "I": s["insertions"],
                }
                for s in sets
            ]
        ),
        "table",
    )


def eval_run_command(
    checkpoint: Annotated[Path, typer.Argument(help="Hugging Face checkpoint folder")],
    release: Annotated[str, typer.Option("--release", help="release whose held-out split to use")],
    split: Annotated[str, typer.Option("--split", help="dev or test")] = "",
    max_utterances: Annotated[
        int | None,
        typer.Option("--max-utterances", min=1, help="transcribe at most this many utterances"),
    ] = None,
    project_dir: ProjectOption = None,
) -> None:
    """Evaluate a checkpoint on a release's held-out split: WER/CER per utterance, losses,
    schedules; register it in the catalogue and write its HTML report."""
    from pipelines.steps.evaluation import RANDOM_WEIGHTS_NOTE, run_evaluation

    project = load(project_dir)
    settings = project.config.training.eval
    if split:
        if split not in ("dev", "test"):
            raise fail(f"--split must be dev or test, not {split!r}")
        settings = settings.model_copy(update={"split": split})
    if max_utterances is not None:
        settings = settings.model_copy(update={"asr_max_utterances": max_utterances})
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
    print_eval_sets(record.metrics)
    if record.metrics.get("tokenizer_is_demo"):
        render.print_note(RANDOM_WEIGHTS_NOTE)
    render.print_message(f"registered evaluation {record.eval_id} in {project.catalogue_path}")
    render.print_message(f"report: {project.lake.eval_report(record.eval_id)}")


def eval_compare_command(
    a: Annotated[str, typer.Argument(help="A: eval id, run id, checkpoint path or sha256 prefix")],
    b: Annotated[str, typer.Argument(help="B, compared against A on the same utterances")],
    samples: Annotated[int, typer.Option("--samples", min=100, help="bootstrap resamples")] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="print the comparison as JSON")] = False,
    project_dir: ProjectOption = None,
) -> None:
    """Compare evaluation B with A: error rates, B − A with a paired bootstrap 95 % interval,
    and the breakdowns by source, language, SNR and duration side by side."""
    import pyarrow as pa

    from pipelines.evaluation.compare import (
        ComparisonError,
        compare_evaluations,
        difference_cells,
    )

    project = load(project_dir)
    try:
        comparison = compare_evaluations(project, a, b, samples=samples)
    except ComparisonError as error:
        raise fail(str(error)) from error
    if as_json:
        from pipelines.evaluation.compare import group_json

        payload = {
            **comparison.as_metadata(),
            "breakdowns": [group_json(g) for g in comparison.breakdowns],
        }
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    render.print_message(
        f"B = {comparison.b.eval_id} against A = {comparison.a.eval_id} on "
        f"{comparison.a.release}/{comparison.a.split}: {comparison.n_paired} utterances scored "
        f"by both ({comparison.n_only_a} by A only, {comparison.n_only_b} by B only); "
        "B − A in percentage points, negative = B makes fewer errors"
    )

    def table(groups: list[Any], heading: str) -> pa.Table:
        rows = []
        for g in groups:
            rate_a, rate_b, diff, verdict = difference_cells(g.difference)
            rows.append(
                {
                    heading: g.value,
                    "task": g.task,
                    "metric": g.metric,
                    "utterances": g.difference.n_utterances,
                    "A": rate_a,
                    "B": rate_b,
                    "B − A [95 % CI]": diff,
                    "verdict": verdict,
                }
            )
        return pa.Table.from_pylist(rows)

    render.print_arrow(table(comparison.sets, "evaluation set"), "table")
    dimensions = sorted({g.dimension for g in comparison.breakdowns})
    for dimension in dimensions:
        render.print_message(f"\nby {dimension}:")
        groups = [g for g in comparison.breakdowns if g.dimension == dimension]
        render.print_arrow(table(groups, dimension), "table")


def eval_report_command(
    evaluation: Annotated[
        str, typer.Argument(help="eval id, run id, checkpoint path or sha256 prefix")
    ],
    compare: Annotated[
        str | None,
        typer.Option("--compare", help="also compare it with this evaluation (as A)"),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="HTML file to write")] = None,
    project_dir: ProjectOption = None,
) -> None:
    """Write an evaluation's self-contained HTML report: error rates per set with intervals,
    breakdown plots, the worst utterances with audio and aligned errors, the TTS side."""
    from pipelines.evaluation.compare import ComparisonError, resolve_evaluation
    from pipelines.steps.evaluation import write_eval_report

    project = load(project_dir)
    try:
        record = resolve_evaluation(project, evaluation)
        path = write_eval_report(project, record, compare_to=compare, out=out)
    except (ComparisonError, FileNotFoundError) as error:
        raise fail(str(error)) from error
    render.print_message(f"report of {record.eval_id}: {path}")


class _EvalGroup(TyperGroup):
    """`voxlake eval CHECKPOINT …` runs `voxlake eval run CHECKPOINT …` (the usage from
    before `compare` and `report` existed)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


def build_eval_app() -> typer.Typer:
    """The `voxlake eval` group: `run` (the default), `compare`, `report`."""
    eval_app = typer.Typer(
        cls=_EvalGroup,
        no_args_is_help=True,
        help="Evaluate checkpoints (ASR WER/CER per utterance), compare them, report.",
    )
    eval_app.command("run")(eval_run_command)
    eval_app.command("compare")(eval_compare_command)
    eval_app.command("report")(eval_report_command)
    return eval_app
