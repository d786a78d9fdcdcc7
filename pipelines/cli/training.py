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

from pipelines.cli import render, render_tables
from pipelines.cli.options import ProjectOption, fail, load, one_line

METRIC_SHORT = {"wer": "WER", "cer": "CER", "audio_token_error": "ATE"}
"""Metric names in the 80-column tables; the legend below a table spells them out."""
METRIC_LEGEND = "ATE: audio-token error, teacher-forced; S/D/I: substituted/deleted/inserted"


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
        raise fail(
            one_line(str(error)),
            example='voxlake query "SELECT stage, run_id, checkpoint FROM runs"   '
            "(then voxlake lineage RUN_ID)",
        ) from error
    if as_json:
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
        return
    render.print_lineage(result)


def eval_set_rows(metrics: dict[str, Any]) -> list[list[str]]:
    """One row per evaluation set and metric: set, task and metric, utterances, reference
    units, error rate in % with its 95 % interval, S/D/I."""
    rows = []
    for s in metrics.get("eval_sets") or []:
        rate = "–"
        if s.get("error_rate") is not None:
            rate = f"{100 * s['error_rate']:.1f}"
            if s.get("ci_low") is not None and s.get("ci_high") is not None:
                rate += f" [{100 * s['ci_low']:.1f}, {100 * s['ci_high']:.1f}]"
        rows.append(
            [
                s["eval_set"],
                f"{s['task']} {METRIC_SHORT.get(s['metric'], s['metric'])}",
                str(s["n_utterances"]),
                str(s["n_ref_units"]),
                rate,
                f"{s['substitutions']}/{s['deletions']}/{s['insertions']}",
            ]
        )
    return rows


def print_eval_sets(metrics: dict[str, Any]) -> None:
    """The per-set error rates of an evaluation, as a table."""
    rows = eval_set_rows(metrics)
    if rows:
        render_tables.print_rows(
            ["evaluation set", "task", "utt", "units", "error % [95 % CI]", "S/D/I"],
            rows,
            title="error rates per evaluation set (95 % bootstrap interval)",
            notes=[METRIC_LEGEND],
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
            raise fail(
                f"--split must be dev or test, not {split!r}",
                example=f"voxlake eval {checkpoint} --release {release} --split dev",
            )
        settings = settings.model_copy(update={"split": split})
    if max_utterances is not None:
        settings = settings.model_copy(update={"asr_max_utterances": max_utterances})
    if not checkpoint.is_dir():
        raise fail(
            f"{checkpoint}: no such checkpoint folder",
            example=f"voxlake eval lake/checkpoints/RUN_ID/hf --release {release}",
        )
    try:
        record, _ = run_evaluation(
            project,
            checkpoint,
            release,
            settings,
            progress=render.print_note,
        )
    except (ValueError, FileNotFoundError) as error:
        raise fail(one_line(str(error))) from error
    # What applies to the whole evaluation comes first, once.
    if record.metrics.get("tokenizer_is_demo"):
        render.print_notices([], [RANDOM_WEIGHTS_NOTE])
    render_tables.print_eval_table(record.metrics, f"{record.eval_id} ({checkpoint})")
    print_eval_sets(record.metrics)
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

    from pipelines.evaluation.compare import ComparisonError, compare_evaluations

    project = load(project_dir)
    try:
        comparison = compare_evaluations(project, a, b, samples=samples)
    except ComparisonError as error:
        raise fail(
            str(error), example=_eval_example(project, "voxlake eval compare {} B")
        ) from error
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

    print_comparison(comparison.sets, "evaluation set")
    dimensions = sorted({g.dimension for g in comparison.breakdowns})
    for dimension in dimensions:
        groups = [g for g in comparison.breakdowns if g.dimension == dimension]
        print_comparison(groups, dimension, title=f"by {dimension}")


def print_comparison(groups: list[Any], heading: str, title: str | None = None) -> None:
    """One table of compared groups (`ComparedGroup`): A, B and B − A with its interval."""
    from pipelines.evaluation.compare import difference_cells

    rows = []
    for g in groups:
        rate_a, rate_b, diff, verdict = difference_cells(g.difference)
        metric = METRIC_SHORT.get(g.metric, g.metric)
        n = str(g.difference.n_utterances)
        rows.append([str(g.value), f"{g.task} {metric}", n, rate_a, rate_b, diff, verdict])
    render_tables.print_rows(
        [heading, "task", "utt", "A", "B", "B − A [95 % CI]", "verdict"],
        rows,
        title=title,
        notes=[METRIC_LEGEND.split(";")[0]],
    )


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
        raise fail(str(error), example=_eval_example(project, "voxlake eval report {}")) from error
    render.print_message(f"report of {record.eval_id}: {path}")


def _eval_example(project: Any, template: str) -> str:
    """`template` with a known evaluation's id, or how to make one when there is none."""
    from pipelines.evaluation.compare import ComparisonError, load_eval_records

    try:
        records = load_eval_records(project)
    except ComparisonError:
        records = []
    if not records:
        return "voxlake eval lake/checkpoints/RUN_ID/hf --release RELEASE   (no evaluation yet)"
    return template.format(records[-1].eval_id)


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
