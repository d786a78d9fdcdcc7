"""What `voxlake demo` prints once its Dagster run is over: the lake summary, the release and
its audit, the training runs, the final evaluation and lineage, and where everything is.

The run itself starts in `assets/cli.py` (the only command-line module that imports Dagster);
the demo project is set up by `pipelines/demo/project.py`.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.cli import render
from pipelines.cli.catalogue import print_summary, run_sql
from pipelines.project import Project


def _print_release_and_audit(project: Project) -> bool:
    """The demo release, its hours per split, source and language, and its audit; True if
    the audit passed."""
    from pipelines.releases.audit import audit as run_audit
    from pipelines.releases.create import load_release, release_summary

    name = project.config.releases[0].name
    release, utterances = load_release(project, name)
    render.print_message(
        f"release {name}: {release.n_utterances} utterances, "
        f"{release.duration_s / 3600:.4f} h in {len(release.shards)} audio and "
        f"{len(release.code_shards)} code shards "
        f"({release.n_duplicates_dropped} duplicates dropped); codes from the "
        f"{'random-weight DEMO' if release.tokenizer_is_demo else 'configured'} tokenizer"
    )
    sets = ", ".join(f"{name} ({n})" for name, n in release.eval_sets.items()) or "none"
    render.print_message(
        f"evaluation sets (test only): {sets}; {release.n_held_back} utterances held back "
        "(same PCM as an evaluation-set utterance)"
    )
    render.print_arrow(release_summary(utterances).to_arrow(), "table")
    with render.status("auditing the release"):
        result = run_audit(project, release=name, sample=10)
    render.print_message(
        f"audit of {result.scope}: {'passed' if result.passed else 'FAILED'} "
        f"({result.shards} audio shards, {result.code_shards} code shards, {result.samples} "
        f"samples, {result.remeasured} re-measured, {result.retokenized} re-tokenized)"
    )
    render.print_mismatches(result.problems[:20])
    return result.passed


def _print_training(project: Project) -> Path | None:
    """After a demo run: the runs table, the final evaluation and the final lineage."""
    from pipelines.lineage import LineageError, lineage
    from pipelines.steps.train import latest_succeeded_run

    release = project.config.training.release
    run = latest_succeeded_run(project, "sft", release) if release else None
    if run is None or run.checkpoint is None:
        return None
    render.print_training_runs(
        run_sql(
            project,
            "SELECT stage, run_id, status, metrics->>'$.steps' AS steps, "
            "round(CAST(metrics->>'$.final_loss' AS DOUBLE), 3) AS final_loss, "
            "round(CAST(metrics->>'$.tokens_per_s' AS DOUBLE)) AS tokens_per_s "
            "FROM runs ORDER BY started_at",
        )
    )
    evals = run_sql(
        project,
        "SELECT eval_id, metrics FROM evals WHERE checkpoint_sha256 = "
        f"'{run.checkpoint_sha256}' ORDER BY created_at DESC LIMIT 1",
    ).to_pylist()
    if evals:
        from pipelines.cli.training import print_eval_sets
        from pipelines.steps.evaluation import RANDOM_WEIGHTS_NOTE

        metrics = json.loads(evals[0]["metrics"])
        render.print_eval_table(metrics, f"evaluation {evals[0]['eval_id']}")
        print_eval_sets(metrics)
        if metrics.get("tokenizer_is_demo"):
            render.print_note(RANDOM_WEIGHTS_NOTE)
        render.print_message(f"evaluation report: {project.lake.eval_report(evals[0]['eval_id'])}")
    try:
        render.print_lineage(lineage(project, run.run_id), max_items=5)
    except LineageError as error:
        render.print_lineage_error(str(error))
    return project.lake.root / run.checkpoint


def print_demo_results(project: Project, directory: Path, run_ok: bool) -> bool:
    """Everything the demo shows after its run (`run_ok`: the run succeeded); True when the
    run and the release audit both passed."""
    print_summary(project)
    audit_ok = _print_release_and_audit(project) if run_ok else True
    final_checkpoint = _print_training(project) if run_ok else None
    reports = project.lake.reports_dir()
    render.print_message(
        "\nresults:\n"
        f"  lake:           {project.lake.root} (manifests, quality, shards, codes, releases)\n"
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
    return run_ok and audit_ok
