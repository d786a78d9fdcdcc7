"""The quality step for one unit: decode, measure and judge every manifest row.

Every manifest row gets exactly one `QualityRecord`:
- rows rejected at ingest keep their reason (`reject_stage="ingest"`);
- rows whose audio cannot be decoded are rejected with the decoder's reason
  (`"decode"`), never crashing the unit;
- the others are prepared (mono, 16 kHz, cut; each recording decoded once per
  unit), measured, hashed, and judged by the policy (`"policy"`).
The unit's decisions are written atomically to `lake/quality/<source>/<unit>.parquet`.

Checks of the `quality` asset: `check_accounting` (every manifest row has exactly
one decision) and `check_distribution` (a unit's SNR and duration distributions
are plausible; a warning).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from pipelines.audio.decode import AudioDecodeError
from pipelines.audio.opener import source_opener
from pipelines.audio.pcm import pcm_sha256, stored_samples
from pipelines.audio.prepare import PreparedAudio, prepare_many
from pipelines.audio.ref import AudioOpener
from pipelines.audio.rows import segment_of
from pipelines.lake.atomic import write_parquet_atomic
from pipelines.lake.views import unit_manifest
from pipelines.project import Project
from pipelines.steps.checks import CheckOutcome
from quality.distribution import implausible_distribution
from quality.measures import measure
from quality.policy import judge
from schemas import QUALITY_ARROW_SCHEMA, QualityPolicy, QualityRecord, SourceConfig
from schemas.audio import TARGET_SAMPLE_RATE_HZ
from schemas.hashing import file_sha256

PROGRESS_EVERY = 200  # utterances between progress callbacks


@dataclass
class QualitySummary:
    """What one unit's quality step decided."""

    unit: str
    path: Path
    sha256: str
    policy_version: str
    frame: pl.DataFrame
    n_manifest_rows: int
    n_accepted: int = 0
    n_rejected: int = 0
    accepted_duration_s: float = 0.0
    rejections: dict[str, int] = field(default_factory=dict)


def _base(row: dict, policy_version: str) -> dict:
    return {
        "utterance_id": row["utterance_id"],
        "source": row["source"],
        "unit": row["unit"],
        "language": row["language"],
        "policy_version": policy_version,
        "declared_duration_s": row["declared_duration_s"],
    }


def _judged(
    row: dict, prepared: PreparedAudio, policy: QualityPolicy, policy_version: str
) -> QualityRecord:
    # Measure the audio as it will be stored (16-bit PCM, what shards hold and what the
    # tokenizer sees), so every measure can be reproduced from a shard. Quantisation
    # matters: decoders leave ~1e-6 residue in digital silence that WADA-SNR reads as
    # signal; 16-bit turns it back into the exact zeros WADA excludes. NaN/inf are
    # counted on the decoded floats, before quantisation maps them to numbers.
    stored = stored_samples(prepared.samples)
    measures = asdict(measure(stored, TARGET_SAMPLE_RATE_HZ, row["text"]))
    measures["non_finite_samples"] = int(np.count_nonzero(~np.isfinite(prepared.samples)))
    failures = judge(
        policy,
        row["source"],
        row["language"],
        measures,
        declared_duration_s=row["declared_duration_s"],
        extra=json.loads(row["extra"] or "{}"),
        subsets=row["subsets"],
    )
    record = {
        **_base(row, policy_version),
        **measures,
        "source_sample_rate_hz": prepared.source_sample_rate_hz,
        "source_channels": prepared.source_channels,
        "pcm_sha256": pcm_sha256(prepared.samples),
        "status": "rejected" if failures else "accepted",
        "failed_rules": [f.rule for f in failures],
    }
    if failures:
        first = failures[0]
        record.update(
            reject_stage="policy",
            reject_rule=first.rule,
            reject_value=first.value,
            reject_threshold=first.threshold,
            reject_message=first.message,
        )
    return QualityRecord.model_validate(record)


def assess_rows(
    rows: list[dict],
    opener: AudioOpener,
    policy: QualityPolicy,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[QualityRecord]:
    """One `QualityRecord` per manifest row (dicts from `unit_manifest`), in row order."""
    version = policy.version()
    records: list[QualityRecord | None] = [None] * len(rows)
    to_prepare: list[int] = []
    for index, row in enumerate(rows):
        if row["status"] != "ok":
            records[index] = QualityRecord(
                **_base(row, version),
                status="rejected",
                reject_stage="ingest",
                reject_rule=row["reject_reason"],
                reject_message=row["reject_message"],
            )
        else:
            to_prepare.append(index)
    segments = [segment_of(rows[i]) for i in to_prepare]
    done = len(rows) - len(to_prepare)
    for position, outcome in prepare_many(segments, opener.open):
        index = to_prepare[position]
        row = rows[index]
        if isinstance(outcome, AudioDecodeError):
            records[index] = QualityRecord(
                **_base(row, version),
                status="rejected",
                reject_stage="decode",
                reject_rule=outcome.reason,
                reject_message=outcome.message,
            )
        else:
            records[index] = _judged(row, outcome, policy, version)
        done += 1
        if on_progress is not None and done % PROGRESS_EVERY == 0:
            on_progress(done, len(rows))
    if on_progress is not None:
        on_progress(len(rows), len(rows))
    assert all(r is not None for r in records)
    return records  # type: ignore[return-value]


def assess_unit(
    project: Project,
    source: SourceConfig,
    unit: str,
    on_progress: Callable[[int, int], None] | None = None,
) -> QualitySummary:
    """Assess every manifest row of `unit`; write and summarise its quality Parquet."""
    lake = project.lake
    manifest_path = lake.manifest(source.name, unit)
    if not manifest_path.exists():
        raise FileNotFoundError(f"{manifest_path} is missing: materialize manifest[{unit}] first")
    rows = unit_manifest(lake, source.name, unit).to_dicts()
    policy = project.config.quality
    with source_opener(source, project.directory) as opener:
        records = assess_rows(rows, opener, policy, on_progress)
    table = pa.Table.from_pylist(
        sorted((r.model_dump(mode="json") for r in records), key=lambda r: r["utterance_id"]),
        schema=QUALITY_ARROW_SCHEMA,
    )
    path = lake.quality(source.name, unit)
    write_parquet_atomic(path, table)
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    accepted = [r for r in records if r.status == "accepted"]
    return QualitySummary(
        unit=unit,
        path=path,
        sha256=file_sha256(path),
        policy_version=policy.version(),
        frame=frame,
        n_manifest_rows=len(rows),
        n_accepted=len(accepted),
        n_rejected=len(records) - len(accepted),
        accepted_duration_s=sum(r.duration_s or 0.0 for r in accepted),
        rejections=dict(
            Counter(f"{r.reject_stage}:{r.reject_rule}" for r in records if r.status == "rejected")
        ),
    )


def check_accounting(summary: QualitySummary) -> CheckOutcome:
    """Every manifest row has exactly one decision: rows == accepted + rejected, ids unique."""
    frame = summary.frame
    accounted = summary.n_accepted + summary.n_rejected
    passed = accounted == summary.n_manifest_rows == frame.height and (
        frame["utterance_id"].n_unique() == frame.height
    )
    return CheckOutcome(
        passed=passed,
        metadata={
            "manifest_rows": summary.n_manifest_rows,
            "accepted_plus_rejected": accounted,
            "rows": frame.height,
        },
    )


def check_distribution(frame: pl.DataFrame) -> CheckOutcome:
    """A warning when the SNR or duration distribution of the measured rows is implausible.

    `frame` holds one unit's decisions; the rows measured are those judged by the
    policy (rejections at ingest or decode have no measures).
    """
    measured = frame.filter(frame["reject_stage"].is_null() | (frame["reject_stage"] == "policy"))
    reasons = implausible_distribution(
        measured["wada_snr_db"].to_list(), measured["duration_s"].to_list()
    )
    return CheckOutcome(
        passed=not reasons,
        metadata={"measured": measured.height},
        description="; ".join(reasons) or None,
        severity="warn",
    )
