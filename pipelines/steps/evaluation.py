"""The `evaluation` step: evaluate a checkpoint and register it (the asset and `voxlake eval`).

The evaluation (trainer.evaluate) scores the checkpoint on a release's held-out split and
compares the decoding schedules; the result is written to `lake/evals/<eval_id>.json`
(`EvalRecord`) and loaded into the catalogue's `evals` table. The eval id is a function
of the checkpoint's content hash, the release and the split, so evaluating the same
checkpoint again replaces its record instead of piling up copies.
`evaluate_final_checkpoint` is what the `evaluation` asset runs: the newest SFT
checkpoint on `training.release`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.catalogue.build import update_catalogue
from pipelines.lake.atomic import write_bytes_atomic
from pipelines.project import Project
from pipelines.steps.train import TrainingError, lake_relative, latest_succeeded_run, load_runs
from pipelines.version import code_version
from schemas.training import EvalRecord, EvalSettings

if TYPE_CHECKING:
    from trainer.evaluate import EvalResult


def eval_id_for(checkpoint_sha256: str, release: str, split: str) -> str:
    """The id of the evaluation of a checkpoint (by content) on a release split."""
    return f"eval-{checkpoint_sha256[:12]}-{release}-{split}"


def run_evaluation(
    project: Project,
    checkpoint: Path,
    release: str,
    settings: EvalSettings | None = None,
    dagster_run_id: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[EvalRecord, EvalResult]:
    """Evaluate `checkpoint` on `release`, write its EvalRecord and update the catalogue."""
    # Imported here, not at the top: the definitions import this module (see steps/train.py).
    from trainer.evaluate import evaluate_checkpoint

    settings = settings or project.config.training.eval
    result = evaluate_checkpoint(
        checkpoint, project.lake.root, release, settings, progress=progress
    )
    relative = lake_relative(project, checkpoint)
    run_id = next(
        (r.run_id for r in load_runs(project) if r.checkpoint_sha256 == result.checkpoint_sha256),
        None,
    )
    record = EvalRecord(
        eval_id=eval_id_for(result.checkpoint_sha256, release, settings.split),
        run_id=run_id,
        checkpoint=relative,
        checkpoint_sha256=result.checkpoint_sha256,
        release=release,
        split=settings.split,
        code_version=code_version(),
        created_at=dt.datetime.now(dt.UTC),
        dagster_run_id=dagster_run_id,
        metrics=result.as_metrics(),
    )
    path = project.lake.eval_record(record.eval_id)
    write_bytes_atomic(path, record.model_dump_json(indent=1).encode("utf-8"))
    update_catalogue(project)
    return record, result


def evaluate_final_checkpoint(
    project: Project,
    dagster_run_id: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> EvalRecord:
    """Evaluate the newest succeeded SFT checkpoint on `training.release`; register it.

    Raises TrainingError when no SFT run on that release has finished.
    """
    release = project.config.training.release
    run = latest_succeeded_run(project, "sft", release) if release else None
    if release is None or run is None or run.checkpoint is None:
        raise TrainingError("no finished train_sft run on training.release; materialise it first")
    record, _ = run_evaluation(
        project,
        project.lake.root / run.checkpoint,
        release,
        dagster_run_id=dagster_run_id,
        progress=progress,
    )
    return record


# --- metadata for the Dagster UI -----------------------------------------------------------


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "–" if value is None else format(value, spec)


def schedule_rows(metrics: dict[str, Any]) -> list[list[str]]:
    """Rows (schedule, tokens/s, speed-up, agreement, prefix agreement) of an eval's table."""
    rows = []
    for row in metrics.get("schedules", []):
        if row.get("skipped"):
            rows.append([row["schedule"], "skipped", "", "", row["skipped"]])
            continue
        rows.append(
            [
                row["schedule"],
                _fmt(row["tokens_per_s"], ".1f"),
                _fmt(row["speedup_vs_vanilla"], ".2f") + "×",
                _fmt(row["agreement_with_vanilla"]),
                _fmt(row["prefix_agreement_with_vanilla"]),
            ]
        )
    return rows


SCHEDULE_HEADERS = ["schedule", "tokens/s", "speed-up", "agreement", "prefix agreement"]


def eval_markdown(metrics: dict[str, Any]) -> str:
    """The evaluation as markdown: losses, per-module accuracy, schedules, and a plot."""
    lines = [
        "| measure | value |",
        "| --- | --- |",
        f"| main loss (nats/token) | {_fmt(metrics.get('main_loss'))} |",
        f"| text loss / perplexity | {_fmt(metrics.get('text_loss'))} / "
        f"{_fmt(metrics.get('text_ppl'), '.1f')} |",
        f"| audio loss / perplexity | {_fmt(metrics.get('audio_loss'))} / "
        f"{_fmt(metrics.get('audio_ppl'), '.1f')} |",
        f"| main head top-1 | {_fmt(metrics.get('main_top1'))} |",
        "",
        "| " + " | ".join(SCHEDULE_HEADERS) + " |",
        "| " + " | ".join("---" for _ in SCHEDULE_HEADERS) + " |",
        *["| " + " | ".join(row) + " |" for row in schedule_rows(metrics)],
    ]
    # Imported here: matplotlib costs the code location (which imports this module
    # through the asset definitions) a third of a second it needs only for this plot.
    from matplotlib.figure import Figure

    from quality.report.plots import png_data_uri

    figure = Figure(figsize=(8, 3), dpi=100)
    left, right = figure.subplots(1, 2)
    top1 = metrics.get("mctp_top1") or []
    left.plot(range(len(top1)), [v if v is not None else float("nan") for v in top1], "o-")
    if metrics.get("main_top1") is not None:
        left.axhline(metrics["main_top1"], color="grey", linestyle="--", label="main head")
        left.legend(fontsize=7)
    left.set_xlabel("MCTP module k (predicts token t+k+2)")
    left.set_ylabel("top-1 accuracy")
    done = [r for r in metrics.get("schedules", []) if not r.get("skipped")]
    right.bar(
        [r["schedule"] for r in done], [r["speedup_vs_vanilla"] or 0.0 for r in done], color="C0"
    )
    right.set_ylabel("decode speed-up vs Vanilla")
    for index, row in enumerate(done):
        agreement = row["agreement_with_vanilla"]
        right.annotate(f"agree {_fmt(agreement, '.2f')}", (index, 0), fontsize=7, ha="center")
    figure.tight_layout()
    lines += ["", f"![evaluation]({png_data_uri(figure)})"]
    return "\n".join(lines)
