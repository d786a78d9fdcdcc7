"""Run an evaluation of a checkpoint and register it: shared by the asset and `voxlake eval`.

The evaluation (trainer.evaluate) scores the checkpoint on a release's held-out split and
compares the decoding schedules; the result is written to `lake/evals/<eval_id>.json`
(`EvalRecord`) and loaded into the catalogue's `evals` table. The eval id is a function
of the checkpoint's content hash, the release and the split, so evaluating the same
checkpoint again replaces its record instead of piling up copies.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

from pipelines.catalogue import update_catalogue
from pipelines.lake import write_bytes_atomic
from pipelines.project import Project
from pipelines.training import lake_relative, load_runs
from pipelines.version import code_version
from schemas.training import EvalRecord, EvalSettings
from trainer.evaluate import EvalResult, evaluate_checkpoint

EVALS_DIR = "evals"


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
    path = project.lake.root / EVALS_DIR / f"{record.eval_id}.json"
    write_bytes_atomic(path, record.model_dump_json(indent=1).encode("utf-8"))
    update_catalogue(project)
    return record, result
