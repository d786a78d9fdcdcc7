"""What `voxlake demo` prints once its Dagster run is over: the warnings that apply to the
whole run, once; the lake summary; the release and its audit; the training runs, the
final evaluation and a compact lineage; where everything is.

Everything is read first and printed after, so the run-wide warnings (the demo
tokenizer, the random-weight model) come at the top of the summary, before the first
table. The run itself starts in `assets/cli.py` (the only command-line module that
imports Dagster); the demo project is set up by `pipelines/demo/project.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.cli import render, render_tables
from pipelines.cli.catalogue import print_summary, run_sql
from pipelines.cli.notices import demo_tokenizer_warning
from pipelines.cli.options import shown_path
from pipelines.cli.releases import print_release_table
from pipelines.project import Project


@dataclass
class _Training:
    """What the demo shows of its training: read before anything is printed."""

    runs: Any = None
    evaluation: dict[str, Any] | None = None
    lineage: Any = None
    lineage_error: str | None = None
    checkpoint: Path | None = None
    notes: list[str] = field(default_factory=list)


def _read_training(project: Project) -> _Training:
    """The runs table, the final checkpoint's newest evaluation and its lineage."""
    from pipelines.lineage import LineageError, lineage
    from pipelines.steps.evaluation import RANDOM_WEIGHTS_NOTE
    from pipelines.steps.train import latest_succeeded_run

    found = _Training()
    release = project.config.training.release
    run = latest_succeeded_run(project, "sft", release) if release else None
    if run is None or run.checkpoint is None:
        return found
    found.checkpoint = project.lake.root / run.checkpoint
    found.runs = run_sql(
        project,
        "SELECT stage, run_id, status, metrics->>'$.steps' AS steps, "
        "round(CAST(metrics->>'$.final_loss' AS DOUBLE), 3) AS final_loss, "
        "round(CAST(metrics->>'$.tokens_per_s' AS DOUBLE)) AS tokens_per_s "
        "FROM runs ORDER BY started_at",
    )
    evals = run_sql(
        project,
        "SELECT eval_id, metrics FROM evals WHERE checkpoint_sha256 = "
        f"'{run.checkpoint_sha256}' ORDER BY created_at DESC LIMIT 1",
    ).to_pylist()
    if evals:
        found.evaluation = {"eval_id": evals[0]["eval_id"], **json.loads(evals[0]["metrics"])}
        if found.evaluation.get("tokenizer_is_demo"):
            found.notes.append(RANDOM_WEIGHTS_NOTE)
    try:
        found.lineage = lineage(project, run.run_id)
    except LineageError as error:
        found.lineage_error = str(error)
    return found


def _audit(project: Project) -> Any:
    """The demo release's audit (shards against the catalogue, a re-measured sample)."""
    from pipelines.releases.audit import audit as run_audit

    with render.status("auditing the release"):
        return run_audit(project, release=project.config.releases[0].name, sample=10)


def _print_release_and_audit(project: Project, result: Any) -> None:
    """The demo release, its utterances per source and language, and its audit."""
    from pipelines.releases.create import load_release

    name = project.config.releases[0].name
    release, utterances = load_release(project, name)
    sets = ", ".join(f"{name} ({n})" for name, n in release.eval_sets.items()) or "none"
    render.print_message(
        f"release {name}: {release.n_utterances} utterances ({release.duration_s / 3600:.4f} h), "
        f"{len(release.shards)} audio + {len(release.code_shards)} code shards, "
        f"{release.n_duplicates_dropped} duplicates dropped; evaluation sets, in test only: "
        f"{sets}; {release.n_held_back} held back (same PCM as one of theirs)"
    )
    print_release_table(utterances)
    render.print_message(
        f"audit of {result.scope}: {'passed' if result.passed else 'FAILED'} "
        f"({result.shards} audio shards, {result.code_shards} code shards, {result.samples} "
        f"samples, {result.remeasured} re-measured, {result.retokenized} re-tokenized)"
    )
    render.print_mismatches(result.problems[:20])


def _print_training(project: Project, training: _Training, directory: Path) -> None:
    """The runs table, the final evaluation and the compact lineage."""
    from pipelines.cli.training import print_eval_sets

    if training.runs is None:
        return
    render.print_message("")
    render_tables.print_training_runs(training.runs)
    if training.evaluation is not None:
        metrics = training.evaluation
        render_tables.print_eval_table(metrics, f"evaluation {metrics['eval_id']}")
        print_eval_sets(metrics)
    if training.lineage is not None:
        render.print_lineage_summary(training.lineage, f" --project {shown_path(directory)}")
    elif training.lineage_error is not None:
        render.print_lineage_error(training.lineage_error)


def print_demo_results(
    project: Project,
    directory: Path,
    run_ok: bool,
    warnings: list[str] | None = None,
    log_dir: Path | None = None,
) -> bool:
    """Everything the demo shows after its run (`run_ok`: the run succeeded; `warnings`:
    the run's own, `log_dir`: its logs); True when the run and the audit both passed."""
    audit = _audit(project) if run_ok else None
    training = _read_training(project) if run_ok else _Training()
    tokenizer = demo_tokenizer_warning(project)
    # Once each: the run may have found the demo tokenizer too.
    said = list(dict.fromkeys([*([tokenizer] if tokenizer else []), *(warnings or [])]))
    render.print_notices(said, training.notes)
    print_summary(project)
    if audit is not None:
        render.print_message("")
        _print_release_and_audit(project, audit)
    _print_training(project, training, directory)
    reports = project.lake.reports_dir()
    fields = [
        ("lake", f"{shown_path(project.lake.root)} (manifests, quality, shards, codes, releases)"),
        ("catalogue", shown_path(project.catalogue_path)),
        ("quality report", shown_path(reports / "quality.html")),
        ("audit report", shown_path(reports / "audit.html")),
    ]
    if training.evaluation is not None:
        report = project.lake.eval_report(training.evaluation["eval_id"])
        fields.append(("eval report", shown_path(report)))
    if training.checkpoint is not None:
        fields.append(("checkpoint", f"{shown_path(training.checkpoint)} (SFT)"))
    if log_dir is not None and log_dir.is_dir():
        fields.append(("logs", f"{shown_path(log_dir)} (Dagster, deepspeed launcher)"))
    fields.append(("UI", f"voxlake ui --project {shown_path(directory)}   (http://127.0.0.1:3000)"))
    render.print_fields("results", fields)
    return run_ok and (audit is None or audit.passed)
