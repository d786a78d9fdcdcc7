"""The `evaluation` step: evaluate a checkpoint and register it (the asset and `voxlake eval`).

The evaluation (trainer.evaluate) transcribes a release's held-out split and scores
every utterance (WER, or CER for Mandarin, with S/D/I), scores the teacher-forced
losses and compares the decoding schedules. The step then

- names each utterance's evaluation set: the release's `eval_set` for a source's own
  test split (`librispeech/test-clean`, `wenetspeech/test_net`), else
  `<release>/<split>` (the release's held-out speakers);
- writes the per-utterance rows (`EvalUtterance`) to
  `lake/evals/<eval_id>.utterances.parquet`, then the record (`EvalRecord`, with the
  per-set error rates and their 95 % bootstrap intervals in `metrics["eval_sets"]`) to
  `lake/evals/<eval_id>.json`, and updates the catalogue (`evals`, `eval_utterances`);
- writes the HTML report (`lake/reports/<eval_id>.html`, `write_eval_report`), with
  the comparison against the previous evaluation on the same release split if any.

The eval id is a function of the checkpoint's content hash, the release and the split,
so evaluating the same checkpoint again replaces its record instead of piling up copies.
`evaluate_final_checkpoint` is what the `evaluation` asset runs: the newest SFT
checkpoint on `training.release`, compared with the previous evaluation on the same
release split when there is one (`previous_evaluation`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa

from pipelines.catalogue.build import update_catalogue
from pipelines.evaluation.compare import (
    Comparison,
    ComparisonError,
    compare_evaluations,
    load_eval_records,
)
from pipelines.evaluation.lookup import breakdowns, shard_audio, split_utterances, utterance_facts
from pipelines.evaluation.report import (
    AlignedStep,
    ReportData,
    WorstUtterance,
    render_report,
)
from pipelines.evaluation.summary import METRIC_LABELS, set_summaries
from pipelines.lake.atomic import write_bytes_atomic, write_parquet_atomic
from pipelines.project import Project
from pipelines.steps.train import TrainingError, lake_relative, latest_succeeded_run, load_runs
from pipelines.version import code_version
from schemas.training import EVAL_UTTERANCE_ARROW_SCHEMA, EvalRecord, EvalSettings

if TYPE_CHECKING:
    from trainer.evaluate import EvalResult

RANDOM_WEIGHTS_NOTE = (
    "Why the error rates are near 100 %: the release's codes come from the random-weight "
    "DEMO GLM-4-Voice tokenizer, so they carry no speech content, and the model (the tiny "
    "profile: a 2-layer Qwen2 trained for a few steps on a few dozen utterances) has not "
    "learnt to transcribe; it mostly emits speech tokens instead of text, so nearly every "
    "reference word is a deletion. The figures show that the evaluation measures, not "
    "what a real checkpoint would score."
)


def eval_id_for(checkpoint_sha256: str, release: str, split: str) -> str:
    """The id of the evaluation of a checkpoint (by content) on a release split."""
    return f"eval-{checkpoint_sha256[:12]}-{release}-{split}"


def utterance_rows(
    project: Project, eval_id: str, release: str, split: str, result: EvalResult
) -> list[dict[str, Any]]:
    """The evaluation's `EvalUtterance` rows: one per transcription (ASR) and one per
    teacher-forced TTS example."""
    by_key = split_utterances(project, release, split)
    rows: list[dict[str, Any]] = []
    for t in result.transcriptions:
        known = by_key.get(t.key)
        score = t.score
        language = t.language if t.language is not None or known is None else known.language
        rows.append(
            {
                "eval_id": eval_id,
                "utterance_id": t.utterance_id,
                "key": t.key,
                "source": t.source,
                "language": language,
                "eval_set": known.eval_set if known else f"{release}/{split}",
                "task": "asr",
                "metric": score.metric,
                "reference": t.reference,
                "hypothesis": t.hypothesis,
                "reference_normalized": score.reference_normalized,
                "hypothesis_normalized": score.hypothesis_normalized,
                "n_ref_units": score.n_ref_units,
                "n_hyp_units": score.n_hyp_units,
                "n_errors": score.n_errors,
                "substitutions": score.substitutions,
                "deletions": score.deletions,
                "insertions": score.insertions,
                "error_rate": score.error_rate,
                "loss": t.loss,
                "n_hyp_tokens": t.n_hyp_tokens,
                "stopped": t.stopped,
            }
        )
    for example in result.example_scores:
        known = by_key.get(example.key)
        if example.task != "tts" or known is None or example.n_audio_targets == 0:
            continue
        wrong = example.n_audio_targets - example.n_audio_correct
        rows.append(
            {
                "eval_id": eval_id,
                "utterance_id": known.utterance_id,
                "key": example.key,
                "source": known.source,
                "language": known.language,
                "eval_set": known.eval_set,
                "task": "tts",
                "metric": "audio_token_error",
                "reference": None,
                "hypothesis": None,
                "n_ref_units": example.n_audio_targets,
                "n_hyp_units": example.n_audio_targets,
                # Teacher-forced: position i is predicted given the true tokens before it,
                # so the alignment is the identity and every error is a substitution.
                "n_errors": wrong,
                "substitutions": wrong,
                "deletions": 0,
                "insertions": 0,
                "error_rate": wrong / example.n_audio_targets,
                "loss": example.loss,
            }
        )
    return rows


def _release_is_demo(project: Project, release: str) -> bool:
    from pipelines.releases.create import load_release

    try:
        description, _ = load_release(project, release)
    except (OSError, ValueError):
        return False
    return description.tokenizer_is_demo


def run_evaluation(
    project: Project,
    checkpoint: Path,
    release: str,
    settings: EvalSettings | None = None,
    dagster_run_id: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[EvalRecord, EvalResult]:
    """Evaluate `checkpoint` on `release`; write its rows, record and report; update the
    catalogue."""
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
    eval_id = eval_id_for(result.checkpoint_sha256, release, settings.split)
    rows = utterance_rows(project, eval_id, release, settings.split, result)
    metrics = result.as_metrics()
    metrics["eval_sets"] = set_summaries(rows, samples=settings.bootstrap_samples)
    metrics["tokenizer_is_demo"] = _release_is_demo(project, release)
    record = EvalRecord(
        eval_id=eval_id,
        run_id=run_id,
        checkpoint=relative,
        checkpoint_sha256=result.checkpoint_sha256,
        release=release,
        split=settings.split,
        code_version=code_version(),
        created_at=dt.datetime.now(dt.UTC),
        dagster_run_id=dagster_run_id,
        metrics=metrics,
    )
    # Rows first, the record last: the record is what makes the evaluation exist.
    write_parquet_atomic(
        project.lake.eval_utterances(eval_id),
        pa.Table.from_pylist(rows, schema=EVAL_UTTERANCE_ARROW_SCHEMA),
    )
    path = project.lake.eval_record(record.eval_id)
    write_bytes_atomic(path, record.model_dump_json(indent=1).encode("utf-8"))
    update_catalogue(project)
    # A retrained checkpoint's report shows it against the previous one on the same split.
    previous = previous_evaluation(project, record)
    try:
        write_eval_report(
            project, record, settings=settings, compare_to=previous and previous.eval_id
        )
    except ComparisonError:
        write_eval_report(project, record, settings=settings)
    return record, result


def previous_evaluation(project: Project, record: EvalRecord) -> EvalRecord | None:
    """The newest evaluation of another checkpoint on the same release split, made before
    `record` and with per-utterance scores (what a retrained checkpoint is compared with)."""
    earlier = [
        r
        for r in load_eval_records(project)
        if (r.release, r.split) == (record.release, record.split)
        and r.checkpoint_sha256 != record.checkpoint_sha256
        and r.created_at < record.created_at
        and project.lake.eval_utterances(r.eval_id).is_file()
    ]
    return earlier[-1] if earlier else None


def compare_with_previous(project: Project, record: EvalRecord) -> Comparison | None:
    """`record` (B) against the previous evaluation on its release split (A), if any."""
    previous = previous_evaluation(project, record)
    if previous is None:
        return None
    try:
        return compare_evaluations(project, previous.eval_id, record.eval_id)
    except ComparisonError:
        return None  # e.g. no utterance in common: nothing to compare


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


# --- the HTML report -----------------------------------------------------------------------


def _eval_rows(project: Project, eval_id: str) -> list[dict[str, Any]]:
    return pl.read_parquet(project.lake.eval_utterances(eval_id)).to_dicts()


def worst_utterances(
    project: Project, record: EvalRecord, rows: list[dict[str, Any]], limit: int
) -> list[WorstUtterance]:
    """The `limit` ASR utterances with the highest error rate (then most errors), with their
    alignment and audio."""
    from trainer.scoring import align_units, split_units

    asr = [r for r in rows if r["task"] == "asr" and r["error_rate"] is not None]
    asr.sort(key=lambda r: (-r["error_rate"], -r["n_errors"], r["utterance_id"]))
    chosen = asr[:limit]
    shards = {
        u.utterance_id: u.shard
        for u in split_utterances(project, record.release, record.split).values()
    }
    facts = utterance_facts(project, [r["utterance_id"] for r in chosen])
    out = []
    for r in chosen:
        metric = r["metric"]
        steps = align_units(
            split_units(r["reference_normalized"] or "", metric),
            split_units(r["hypothesis_normalized"] or "", metric),
        )
        audio, note = shard_audio(project, shards.get(r["utterance_id"]), r["key"])
        fact = facts.get(r["utterance_id"], {})
        out.append(
            WorstUtterance(
                utterance_id=r["utterance_id"],
                eval_set=r["eval_set"],
                metric=metric,
                error_rate=r["error_rate"],
                n_errors=r["n_errors"],
                n_ref_units=r["n_ref_units"],
                substitutions=r["substitutions"],
                deletions=r["deletions"],
                insertions=r["insertions"],
                reference=r["reference"] or "",
                hypothesis=r["hypothesis"] or "",
                aligned=[AlignedStep(s.op, s.reference, s.hypothesis) for s in steps],
                audio_flac=audio,
                audio_note=note,
                wada_snr_db=fact.get("wada_snr_db"),
                duration_s=fact.get("duration_s"),
            )
        )
    return out


def write_eval_report(
    project: Project,
    record: EvalRecord,
    *,
    settings: EvalSettings | None = None,
    compare_to: str | None = None,
    out: Path | None = None,
) -> Path:
    """Write the self-contained HTML report of `record` (default
    `lake/reports/<eval_id>.html`); with `compare_to` (an evaluation, run, checkpoint),
    it shows the comparison of `record` against it too. Returns the path written."""
    settings = settings or project.config.training.eval
    rows = _eval_rows(project, record.eval_id)
    comparison = (
        compare_evaluations(project, compare_to, record.eval_id, samples=settings.bootstrap_samples)
        if compare_to
        else None
    )
    notes = []
    if record.metrics.get("tokenizer_is_demo"):
        notes.append(RANDOM_WEIGHTS_NOTE)
    data = ReportData(
        record=record,
        sets=record.metrics.get("eval_sets")
        or set_summaries(rows, samples=settings.bootstrap_samples),
        breakdowns=breakdowns(project, record.eval_id),
        worst=worst_utterances(project, record, rows, settings.report_worst),
        comparison=comparison,
        notes=notes,
    )
    path = out or project.lake.eval_report(record.eval_id)
    write_bytes_atomic(path, render_report(data).encode("utf-8"))
    return path


def error_rate_lines(metrics: dict[str, Any]) -> list[str]:
    """One line per evaluation set: `librispeech/test-clean  asr WER 12.3 % [10.1, 14.6] ...`."""
    from pipelines.evaluation.summary import rate_with_interval

    return [
        f"{s['eval_set']}: {s['task']} {METRIC_LABELS.get(s['metric'], s['metric'])} "
        f"{rate_with_interval(s)} over {s['n_utterances']} utterances "
        f"(S {s['substitutions']}, D {s['deletions']}, I {s['insertions']})"
        for s in metrics.get("eval_sets", [])
    ]


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
    """The evaluation as markdown: error rates per set, losses, per-module accuracy,
    schedules, and a plot."""
    from pipelines.evaluation.summary import rate_with_interval

    lines = []
    if metrics.get("eval_sets"):
        lines += [
            "| evaluation set | task | metric | utterances | error rate [95 % CI] | S | D | I |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
            *[
                f"| {s['eval_set']} | {s['task']} | {METRIC_LABELS.get(s['metric'], s['metric'])}"
                f" | {s['n_utterances']} | {rate_with_interval(s)} | {s['substitutions']} | "
                f"{s['deletions']} | {s['insertions']} |"
                for s in metrics["eval_sets"]
            ],
            "",
        ]
    if metrics.get("tokenizer_is_demo"):
        lines += [f"_{RANDOM_WEIGHTS_NOTE}_", ""]
    lines += [
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
