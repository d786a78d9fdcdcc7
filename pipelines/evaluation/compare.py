"""Compare two evaluations on the same utterances: error rates, paired bootstrap, breakdowns.

`voxlake eval compare A B` and the `evaluation` asset (after a retraining) use
`compare_evaluations`. A and B are evaluation ids, training run ids, checkpoint paths
or checkpoint sha256 prefixes (`resolve_evaluation`); both must be evaluations on the
same release split, and only utterances scored by both count (paired by utterance id,
task and metric). For every evaluation set and metric: A's and B's error rates, the
difference B − A with its paired bootstrap 95 % interval and verdict; then the same
side by side per source, language, 5 dB WADA-SNR bucket and duration bucket, from the
catalogue's `utterances`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from pydantic import ValidationError

from pipelines.catalogue.read import query_catalogue
from pipelines.catalogue.tables import DURATION_BUCKETS_S, SNR_BUCKET_DB
from pipelines.evaluation.stats import PairedDifference, paired_bootstrap
from pipelines.evaluation.summary import ALL_SETS
from pipelines.project import Project
from schemas.training import EvalRecord


class ComparisonError(Exception):
    """Two evaluations cannot be compared (unknown, ambiguous, or on different data)."""


def load_eval_records(project: Project) -> list[EvalRecord]:
    """Every evaluation record of the lake, oldest first."""
    folder = project.lake.evals_dir()
    records = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            records.append(EvalRecord.model_validate_json(path.read_bytes()))
        except (OSError, ValidationError) as error:
            raise ComparisonError(f"{path}: not a valid evaluation record ({error})") from error
    return sorted(records, key=lambda r: r.created_at)


def _lake_relative(project: Project, path: Path) -> str | None:
    try:
        return path.resolve().relative_to(project.lake.root.resolve()).as_posix()
    except ValueError:
        return None


def resolve_evaluation(project: Project, ref: str, like: EvalRecord | None = None) -> EvalRecord:
    """The evaluation `ref` names: an eval id, a run id, a checkpoint path (as given or
    lake-relative) or a checkpoint sha256 prefix (at least 6 hex digits).

    When `ref` names several evaluations (a checkpoint evaluated on several splits),
    the one on `like`'s release split is taken, else the newest if all are on one
    release split; otherwise ComparisonError lists them.
    """
    records = load_eval_records(project)
    path = Path(ref)
    relative = _lake_relative(project, path) if path.exists() else None
    found = [
        r
        for r in records
        if ref in (r.eval_id, r.run_id, r.checkpoint)
        or (relative is not None and r.checkpoint == relative)
        or (len(ref) >= 6 and r.checkpoint_sha256.startswith(ref.lower()))
    ]
    if not found:
        raise ComparisonError(
            f"no evaluation matches {ref!r} (an eval id, run id, checkpoint path or sha256 "
            f"prefix; known evaluations: {', '.join(r.eval_id for r in records) or 'none'})"
        )
    if like is not None:
        same = [r for r in found if (r.release, r.split) == (like.release, like.split)]
        found = same or found
    if len({(r.release, r.split) for r in found}) > 1:
        raise ComparisonError(
            f"{ref!r} names evaluations on several release splits: "
            + ", ".join(f"{r.eval_id} ({r.release}/{r.split})" for r in found)
            + "; name one by its eval id"
        )
    return found[-1]


@dataclass(frozen=True)
class ComparedGroup:
    """A and B on one group of paired utterances (an evaluation set, or a breakdown bucket)."""

    dimension: str  # "eval_set", "source", "language", "snr_db", "duration_s"
    value: str
    task: str
    metric: str
    difference: PairedDifference


@dataclass
class Comparison:
    """What `compare_evaluations` found: the two evaluations, the sets and the breakdowns."""

    a: EvalRecord
    b: EvalRecord
    n_paired: int
    n_only_a: int
    n_only_b: int
    sets: list[ComparedGroup] = field(default_factory=list)
    breakdowns: list[ComparedGroup] = field(default_factory=list)

    def as_metadata(self) -> dict[str, Any]:
        """JSON-ready summary (the `evaluation` asset's metadata)."""
        return {
            "a": self.a.eval_id,
            "b": self.b.eval_id,
            "n_paired_utterances": self.n_paired,
            "sets": [group_json(g) for g in self.sets],
        }


def group_json(group: ComparedGroup) -> dict[str, Any]:
    """One compared group as a JSON-ready dict."""
    d = group.difference
    return {
        group.dimension: group.value,
        "task": group.task,
        "metric": group.metric,
        "n_utterances": d.n_utterances,
        "rate_a": d.rate_a,
        "rate_b": d.rate_b,
        "difference": d.difference,
        "ci_low": d.low,
        "ci_high": d.high,
        "p_b_not_better": d.p_b_not_better,
        "verdict": d.verdict,
    }


def _read_rows(project: Project, record: EvalRecord) -> list[dict[str, Any]]:
    path = project.lake.eval_utterances(record.eval_id)
    if not path.is_file():
        raise ComparisonError(
            f"evaluation {record.eval_id} has no per-utterance scores ({path}); it was made "
            "before evaluations scored utterances: evaluate the checkpoint again"
        )
    return pq.read_table(path).to_pylist()


def _utterance_properties(project: Project, eval_id: str) -> dict[str, dict[str, Any]]:
    """source, language, speaker, WADA-SNR and duration of the utterances evaluation
    `eval_id` scored, from the catalogue (empty without one, or before it holds them)."""
    if not project.catalogue_path.exists():
        return {}
    quoted = "'" + eval_id.replace("'", "''") + "'"
    table = query_catalogue(
        project.catalogue_path,
        "SELECT DISTINCT u.utterance_id, u.source, u.language, u.speaker, u.wada_snr_db, "
        "u.duration_s FROM eval_utterances e JOIN utterances u USING (utterance_id) "
        f"WHERE e.eval_id = {quoted}",
    )
    return {row["utterance_id"]: row for row in table.to_pylist()}


def snr_bucket(snr_db: float | None) -> str | None:
    """`10–15 dB` for 12.3 dB (the 5 dB buckets of the catalogue's `eval_by_snr`)."""
    if snr_db is None:
        return None
    low = int(snr_db // SNR_BUCKET_DB * SNR_BUCKET_DB)
    return f"{low}–{low + SNR_BUCKET_DB} dB"


def duration_bucket(duration_s: float | None) -> str | None:
    """`2–5 s` for 3.1 s (the buckets of the catalogue's `eval_by_duration`)."""
    if duration_s is None:
        return None
    edges = sorted(DURATION_BUCKETS_S)
    low = max((e for e in edges if duration_s >= e), default=edges[0])
    higher = [e for e in edges if e > low]
    return f"{low:g}–{higher[0]:g} s" if higher else f"≥ {low:g} s"


BREAKDOWNS: dict[str, Callable[[Mapping[str, Any]], str | None]] = {
    "source": lambda u: u.get("source"),
    "language": lambda u: u.get("language"),
    "snr_db": lambda u: snr_bucket(u.get("wada_snr_db")),
    "duration_s": lambda u: duration_bucket(u.get("duration_s")),
}
"""The breakdowns of a comparison: dimension → the bucket of an utterance's properties."""


def compare_evaluations(
    project: Project, a_ref: str, b_ref: str, *, samples: int = 1000, seed: int = 0
) -> Comparison:
    """Compare evaluation B against A on the utterances both scored (see the module doc)."""
    b = resolve_evaluation(project, b_ref)
    a = resolve_evaluation(project, a_ref, like=b)
    if a.eval_id == b.eval_id:
        raise ComparisonError(f"{a_ref!r} and {b_ref!r} name the same evaluation {a.eval_id}")
    if (a.release, a.split) != (b.release, b.split):
        raise ComparisonError(
            f"{a.eval_id} is on {a.release}/{a.split} but {b.eval_id} on {b.release}/{b.split}: "
            "a comparison needs the same utterances"
        )
    rows_a = {(r["utterance_id"], r["task"], r["metric"]): r for r in _read_rows(project, a)}
    rows_b = {(r["utterance_id"], r["task"], r["metric"]): r for r in _read_rows(project, b)}
    paired = sorted(rows_a.keys() & rows_b.keys())
    if not paired:
        raise ComparisonError(f"{a.eval_id} and {b.eval_id} scored no utterance in common")
    properties = _utterance_properties(project, b.eval_id)
    groups: dict[tuple[str, str, str, str], list[tuple[str, str, str]]] = defaultdict(list)
    for key in paired:
        _, task, metric = key
        row = rows_b[key]
        groups[("eval_set", row["eval_set"], task, metric)].append(key)
        groups[("eval_set", ALL_SETS, task, metric)].append(key)
        props = {**row, **properties.get(key[0], {})}
        for dimension, bucket_of in BREAKDOWNS.items():
            bucket = bucket_of(props)
            if bucket is not None:
                groups[(dimension, bucket, task, metric)].append(key)
    comparison = Comparison(
        a=a,
        b=b,
        n_paired=len(paired),
        n_only_a=len(rows_a.keys() - rows_b.keys()),
        n_only_b=len(rows_b.keys() - rows_a.keys()),
    )
    n_sets = len({k[1] for k in groups if k[0] == "eval_set" and k[1] != ALL_SETS})
    for (dimension, value, task, metric), keys in sorted(groups.items()):
        if dimension == "eval_set" and value == ALL_SETS and n_sets < 2:
            continue
        difference = paired_bootstrap(
            [rows_a[k]["n_errors"] for k in keys],
            [rows_b[k]["n_errors"] for k in keys],
            [rows_b[k]["n_ref_units"] for k in keys],
            samples=samples,
            seed=seed,
        )
        group = ComparedGroup(dimension, value, task, metric, difference)
        (comparison.sets if dimension == "eval_set" else comparison.breakdowns).append(group)
    return comparison


def comparison_markdown(comparison: Comparison) -> str:
    """The comparison's sets as a markdown table (the Dagster UI shows it)."""
    lines = [
        f"B = {comparison.b.eval_id} against A = {comparison.a.eval_id}, "
        f"{comparison.n_paired} paired utterances",
        "",
        "| set | task | metric | A | B | B − A [95 % CI] | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for group in comparison.sets:
        lines.append(
            f"| {group.value} | {group.task} | {group.metric} | "
            + " | ".join(difference_cells(group.difference))
            + " |"
        )
    return "\n".join(lines)


def difference_cells(d: PairedDifference) -> list[str]:
    """[A, B, difference with interval, verdict] in percent, for tables."""

    def pct(v: float | None) -> str:
        return "–" if v is None else f"{100 * v:.1f} %"

    if d.difference is None or d.low is None or d.high is None:
        return [pct(d.rate_a), pct(d.rate_b), "–", "–"]
    diff = f"{100 * d.difference:+.1f} [{100 * d.low:+.1f}, {100 * d.high:+.1f}]"
    return [pct(d.rate_a), pct(d.rate_b), diff, d.verdict]
