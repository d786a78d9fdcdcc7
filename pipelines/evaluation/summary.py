"""Error rates of one evaluation per evaluation set, with bootstrap intervals.

The rows are an evaluation's `EvalUtterance` rows as dicts (from the step, the lake
file or the catalogue); a summary groups them by evaluation set, task and metric, so
WER and CER, and ASR and the TTS side's audio-token error, are never added together.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from pipelines.evaluation.stats import bootstrap_error_rate

ALL_SETS = "(all)"
"""The `eval_set` of a summary over every set of one task and metric."""


def set_summaries(
    rows: Iterable[Mapping[str, Any]], *, samples: int = 1000, seed: int = 0
) -> list[dict[str, Any]]:
    """One summary per (eval_set, task, metric), then one per (task, metric) over all sets.

    Each: utterances, reference units, errors, S/D/I, the corpus error rate with its 95 %
    bootstrap interval (`ci_low`, `ci_high`), and the mean teacher-forced loss.
    """
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["eval_set"], row["task"], row["metric"])].append(row)
        groups[(ALL_SETS, row["task"], row["metric"])].append(row)
    out = []
    for (eval_set, task, metric), members in sorted(
        groups.items(), key=lambda item: (item[0][0] == ALL_SETS, item[0])
    ):
        if eval_set == ALL_SETS and len({m["eval_set"] for m in members}) < 2:
            continue  # one set only: its own summary says it all
        interval = bootstrap_error_rate(
            [m["n_errors"] for m in members],
            [m["n_ref_units"] for m in members],
            samples=samples,
            seed=seed,
        )
        losses = [m["loss"] for m in members if m.get("loss") is not None]
        out.append(
            {
                "eval_set": eval_set,
                "task": task,
                "metric": metric,
                "n_utterances": len(members),
                "n_ref_units": interval.n_ref_units,
                "n_errors": interval.n_errors,
                "substitutions": sum(m["substitutions"] for m in members),
                "deletions": sum(m["deletions"] for m in members),
                "insertions": sum(m["insertions"] for m in members),
                "error_rate": interval.rate,
                "ci_low": interval.low,
                "ci_high": interval.high,
                "mean_loss": sum(losses) / len(losses) if losses else None,
            }
        )
    return out


METRIC_LABELS = {"wer": "WER", "cer": "CER", "audio_token_error": "audio-token error (TF)"}
"""How a metric is named in tables and reports."""


def percent(value: float | None, digits: int = 1) -> str:
    """`0.1234` → `12.3 %`; None → `–`."""
    return "–" if value is None else f"{100 * value:.{digits}f} %"


def rate_with_interval(summary: Mapping[str, Any]) -> str:
    """`12.3 % [10.1, 14.6]`: the rate and its 95 % interval, in percent."""
    if summary.get("error_rate") is None:
        return "–"
    low, high = summary.get("ci_low"), summary.get("ci_high")
    if low is None or high is None:
        return percent(summary["error_rate"])
    return f"{percent(summary['error_rate'])} [{100 * low:.1f}, {100 * high:.1f}]"
