"""The quality step for one unit: decode once, measure, judge, and write the audio shards.

Every manifest row gets exactly one `QualityRecord`:
- rows rejected at ingest keep their reason (`reject_stage="ingest"`);
- rows whose audio cannot be decoded are rejected with the decoder's reason
  (`"decode"`), never crashing the unit;
- the others are prepared (mono, 16 kHz, cut; each recording decoded once per
  unit), measured, hashed, and judged by the policy (`"policy"`).
The accepted utterances go into the unit's audio shards (`<key>.flac`,
`<key>.json`, `lake/shards/<source>/<unit>/`) in the same pass: this is the
only step that decodes the source; every later step reads the audio shards.
An utterance that is the whole of a 16 kHz mono 16-bit FLAC file is stored as
that file's own frames (`pipelines.audio.flac.passthrough_flac`: a minimal
stream, tags and pictures dropped), not encoded again; every other one is
encoded from its 16-bit PCM (`flac16_of_pcm`). Either way the member decodes
to the PCM that was measured and hashed (`pcm_sha256`).
The decisions are written atomically to `lake/quality/<source>/<unit>.parquet`,
which records (in its Parquet key-value metadata) the manifest it judged and the
version of the measures.

Re-judging: when the manifest and the measures are what the stored decisions
were made from (a policy edit), the unit is judged again from the stored
measures without decoding. If the accepted set is unchanged, no shard is
written; if it only shrank, the audio shards are rewritten from their own FLAC
and JSON; only when it grew is the source decoded again.

Why this module is long: decoding, judging, re-judging from stored measures and
rewriting shards are one decision about one unit's accepted set; split apart, each
piece would need the others' private state (the stored frame, the shard index).

Checks of the `quality` asset: `check_accounting` (every manifest row has exactly
one decision) and `check_distribution` (a unit's SNR and duration distributions
are plausible; a warning).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.audio.decode import AudioDecodeError
from pipelines.audio.opener import source_opener
from pipelines.audio.pcm import flac16_of_pcm, pcm16
from pipelines.audio.prepare import PreparedAudio, prepare_many
from pipelines.audio.ref import AudioOpener
from pipelines.audio.rows import segment_of
from pipelines.lake.atomic import write_parquet_atomic
from pipelines.lake.paths import Lake
from pipelines.lake.views import unit_manifest
from pipelines.project import Project
from pipelines.shards.reader import read_index, read_sample_members
from pipelines.shards.writer import (
    PlacedSample,
    ShardField,
    ShardSample,
    audio_index_row,
    encode_meta,
    write_shards,
)
from pipelines.steps.checks import CheckOutcome
from quality.distribution import implausible_distribution
from quality.measures import Measures, measure_pcm16
from quality.policy import judge
from schemas import QUALITY_ARROW_SCHEMA, QualityPolicy, QualityRecord, SourceConfig
from schemas.audio import TARGET_SAMPLE_RATE_HZ
from schemas.hashing import bytes_sha256, file_sha256
from schemas.shards import (
    AUDIO_MEMBERS,
    AUDIO_SHARD_PREFIX,
    SHARD_INDEX_ARROW_SCHEMA,
    AudioSampleMeta,
    ShardIndexRow,
    shard_key,
)

AUDIO_FIELD = ShardField(prefix=AUDIO_SHARD_PREFIX, members=AUDIO_MEMBERS)

MEASURES_VERSION = "2"
"""Bumped when a measure changes: stored measures of another version are not re-used.

2: the measures share one pass over the 16-bit PCM (`quality.signal`): energies and
sums exact, WADA-SNR's logs in float64; values move by float rounding only
(WADA-SNR ~3e-6 dB, STNR ~1e-6 dB, RMS ~1e-7 dB on the bench corpora)."""
MANIFEST_SHA256_META = b"voxlake.manifest_sha256"
MEASURES_VERSION_META = b"voxlake.measures_version"
MEASURE_NAMES = tuple(f.name for f in fields(Measures))

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
    audio_rows: list[ShardIndexRow] = field(default_factory=list)
    audio_index_sha256: str = ""
    decoded: bool = True
    """False when the unit was re-judged from stored measures without decoding."""
    audio_written: bool = True
    """False when the audio shards were already what the decisions accept."""


@dataclass(frozen=True)
class AudioSample:
    """An accepted utterance's audio shard sample and what its index row needs."""

    sample: ShardSample
    duration_s: float
    pcm_sha256: str


def _base(row: dict, policy_version: str) -> dict:
    return {
        "utterance_id": row["utterance_id"],
        "source": row["source"],
        "unit": row["unit"],
        "language": row["language"],
        "policy_version": policy_version,
        "declared_duration_s": row["declared_duration_s"],
    }


def _decide(
    row: dict,
    measures: dict,
    policy: QualityPolicy,
    policy_version: str,
    described: dict,
) -> QualityRecord:
    """Judge one measured row; `described` adds the source format and the PCM hash."""
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
        **described,
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


def _judged(
    row: dict, prepared: PreparedAudio, policy: QualityPolicy, policy_version: str
) -> tuple[QualityRecord, np.ndarray]:
    """Measure and judge one prepared row; also return its 16-bit PCM (what shards store)."""
    # Measure the audio as it will be stored (16-bit PCM, what shards hold and what the
    # tokenizer sees), so every measure can be reproduced from a shard. Quantisation
    # matters: decoders leave ~1e-6 residue in digital silence that WADA-SNR reads as
    # signal; 16-bit turns it back into the exact zeros WADA excludes. NaN/inf are
    # counted on the decoded floats, before quantisation maps them to numbers (a 16-bit
    # source decoded as integers has none).
    if prepared.pcm16 is not None:
        pcm, non_finite = prepared.pcm16, 0
    else:
        samples = prepared.samples
        finite = np.isfinite(samples)
        non_finite = 0 if finite.all() else int(finite.size - np.count_nonzero(finite))
        pcm = pcm16(samples)
    measures = vars(measure_pcm16(pcm, TARGET_SAMPLE_RATE_HZ, row["text"])).copy()
    measures["non_finite_samples"] = non_finite
    described = {
        "source_sample_rate_hz": prepared.source_sample_rate_hz,
        "source_channels": prepared.source_channels,
        "pcm_sha256": bytes_sha256(np.ascontiguousarray(pcm, dtype="<i2").data),
    }
    return _decide(row, measures, policy, policy_version, described), pcm


def _audio_sample(
    row: dict, record: QualityRecord, pcm: np.ndarray, flac: bytes | None = None
) -> AudioSample:
    """The audio shard sample of an accepted row: its FLAC and its JSON.

    `flac` is the source's own stream when it can be passed through
    (`PreparedAudio.flac`); otherwise the PCM is encoded.
    """
    assert record.duration_s is not None and record.pcm_sha256 is not None
    meta = AudioSampleMeta(
        utterance_id=record.utterance_id,
        source=record.source,
        text=row["text"],
        speaker=row["speaker"],
        language=record.language,
        split=row["split"],
        duration_s=record.duration_s,
        snr_db=record.wada_snr_db,
        stnr_snr_db=record.stnr_snr_db,
        clipping_ratio=record.clipping_ratio,
        silence_ratio=record.silence_ratio,
        rms_dbfs=record.rms_dbfs,
        bandwidth_hz=record.bandwidth_hz,
        chars_per_s=record.chars_per_s,
        pcm_sha256=record.pcm_sha256,
    )
    sample = ShardSample(
        key=shard_key(record.utterance_id),
        utterance_id=record.utterance_id,
        payloads=(flac if flac is not None else flac16_of_pcm(pcm), encode_meta(meta)),
    )
    return AudioSample(sample, record.duration_s, record.pcm_sha256)


def _ingest_rejection(row: dict, version: str) -> QualityRecord:
    return QualityRecord(
        **_base(row, version),
        status="rejected",
        reject_stage="ingest",
        reject_rule=row["reject_reason"],
        reject_message=row["reject_message"],
    )


def _decode_rejection(row: dict, version: str, reason: str, message: str | None) -> QualityRecord:
    return QualityRecord(
        **_base(row, version),
        status="rejected",
        reject_stage="decode",
        reject_rule=reason,
        reject_message=message,
    )


def assess_rows(
    rows: list[dict],
    opener: AudioOpener,
    policy: QualityPolicy,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[list[QualityRecord], list[AudioSample]]:
    """One `QualityRecord` per manifest row (dicts from `unit_manifest`), in row order,
    and the audio shard samples of the accepted rows."""
    version = policy.version()
    records: list[QualityRecord | None] = [None] * len(rows)
    audio: list[AudioSample] = []
    to_prepare: list[int] = []
    for index, row in enumerate(rows):
        if row["status"] != "ok":
            records[index] = _ingest_rejection(row, version)
        else:
            to_prepare.append(index)
    segments = [segment_of(rows[i]) for i in to_prepare]
    done = len(rows) - len(to_prepare)
    for position, outcome in prepare_many(segments, opener.open, flac_passthrough=True):
        index = to_prepare[position]
        row = rows[index]
        if isinstance(outcome, AudioDecodeError):
            records[index] = _decode_rejection(row, version, outcome.reason, outcome.message)
        else:
            record, pcm = _judged(row, outcome, policy, version)
            records[index] = record
            if record.status == "accepted":
                audio.append(_audio_sample(row, record, pcm, outcome.flac))
        done += 1
        if on_progress is not None and done % PROGRESS_EVERY == 0:
            on_progress(done, len(rows))
    if on_progress is not None:
        on_progress(len(rows), len(rows))
    assert all(r is not None for r in records)
    return records, audio  # type: ignore[return-value]


def rejudge_rows(
    rows: list[dict], stored: dict[str, dict], policy: QualityPolicy
) -> list[QualityRecord] | None:
    """Decisions for `rows` from the stored measures (`stored`: quality rows by utterance id).

    No audio is decoded. None when a row that passed ingest has no stored decision
    (the stored decisions were made from another manifest).
    """
    version = policy.version()
    records: list[QualityRecord] = []
    for row in rows:
        if row["status"] != "ok":
            records.append(_ingest_rejection(row, version))
            continue
        previous = stored.get(row["utterance_id"])
        if previous is None or previous["reject_stage"] == "ingest":
            return None
        if previous["reject_stage"] == "decode":
            records.append(
                _decode_rejection(row, version, previous["reject_rule"], previous["reject_message"])
            )
            continue
        measures = {name: previous[name] for name in MEASURE_NAMES}
        described = {
            name: previous[name]
            for name in ("source_sample_rate_hz", "source_channels", "pcm_sha256")
        }
        records.append(_decide(row, measures, policy, version, described))
    return records


def stored_decisions(
    lake: Lake, source: str, unit: str, manifest_sha256: str
) -> dict[str, dict] | None:
    """The unit's stored quality rows by utterance id, if made from this manifest and these
    measures; None otherwise (no file, another manifest, another measures version)."""
    path = lake.quality(source, unit)
    if not path.exists():
        return None
    metadata = pq.read_schema(path).metadata or {}
    if (
        metadata.get(MANIFEST_SHA256_META) != manifest_sha256.encode()
        or metadata.get(MEASURES_VERSION_META) != MEASURES_VERSION.encode()
    ):
        return None
    return {row["utterance_id"]: row for row in pq.read_table(path).to_pylist()}


def _audio_index_row(source: str, unit: str, audio: dict[str, AudioSample]):
    def row(placed: PlacedSample) -> ShardIndexRow:
        sample = audio[placed.sample.key]
        return audio_index_row(placed, source, unit, sample.duration_s, sample.pcm_sha256)

    return row


def write_audio_shards(
    project: Project, source: str, unit: str, audio: list[AudioSample]
) -> list[ShardIndexRow]:
    """Write a unit's audio shards and their index; return the index rows (key order)."""
    by_key = {a.sample.key: a for a in audio}
    if len(by_key) != len(audio):
        raise ValueError(f"{unit}: two accepted utterances share a shard key")
    folder = project.lake.shards_dir(source, unit)
    write_shards(
        [a.sample for a in audio],
        folder,
        AUDIO_FIELD,
        lake_root=project.lake.root,
        index_row=_audio_index_row(source, unit, by_key),
        index_schema=SHARD_INDEX_ARROW_SCHEMA,
        limits=project.config.shards,
    )
    return read_index(folder)


def _kept_audio(project: Project, rows: list[ShardIndexRow]) -> list[AudioSample]:
    """Audio samples re-read from the unit's own audio shards (no decoding)."""
    payloads = read_sample_members(project.lake.root, rows, ("flac", "json"))
    return [
        AudioSample(
            ShardSample(key=row.key, utterance_id=row.utterance_id, payloads=members),
            row.duration_s,
            row.pcm_sha256,
        )
        for row, members in zip(rows, payloads, strict=True)
    ]


def _existing_audio_rows(project: Project, source: str, unit: str) -> list[ShardIndexRow] | None:
    folder = project.lake.shards_dir(source, unit)
    try:
        return read_index(folder)
    except FileNotFoundError:
        return None


def assess_unit(
    project: Project,
    source: SourceConfig,
    unit: str,
    on_progress: Callable[[int, int], None] | None = None,
) -> QualitySummary:
    """Judge every manifest row of `unit`, write its audio shards and its decisions.

    Decodes the unit's recordings once; or, when the stored decisions were made
    from this manifest with these measures (a policy edit), re-judges from them
    and rewrites the audio shards only when the accepted set changed.
    """
    lake = project.lake
    manifest_path = lake.manifest(source.name, unit)
    if not manifest_path.exists():
        raise FileNotFoundError(f"{manifest_path} is missing: materialize manifest[{unit}] first")
    manifest_sha256 = file_sha256(manifest_path)
    rows = unit_manifest(lake, source.name, unit).to_dicts()
    policy = project.config.quality

    records: list[QualityRecord] | None = None
    audio_rows: list[ShardIndexRow] | None = None
    decoded = audio_written = False
    stored = stored_decisions(lake, source.name, unit, manifest_sha256)
    existing = _existing_audio_rows(project, source.name, unit) if stored is not None else None
    if stored is not None and existing is not None:
        records = rejudge_rows(rows, stored, policy)
    if records is not None and existing is not None:
        accepted = {r.utterance_id for r in records if r.status == "accepted"}
        in_shards = {r.utterance_id for r in existing}
        if accepted == in_shards:
            audio_rows = existing
        elif accepted < in_shards:
            kept = [r for r in existing if r.utterance_id in accepted]
            audio_rows = write_audio_shards(project, source.name, unit, _kept_audio(project, kept))
            audio_written = True
        else:
            records = None  # newly accepted audio is in no shard: decode again
    if records is None or audio_rows is None:
        with source_opener(source, project.directory) as opener:
            records, audio = assess_rows(rows, opener, policy, on_progress)
        audio_rows = write_audio_shards(project, source.name, unit, audio)
        decoded = audio_written = True
    elif on_progress is not None:
        on_progress(len(rows), len(rows))

    table = pa.Table.from_pylist(
        sorted((r.model_dump(mode="json") for r in records), key=lambda r: r["utterance_id"]),
        schema=QUALITY_ARROW_SCHEMA,
    ).replace_schema_metadata(
        {MANIFEST_SHA256_META: manifest_sha256, MEASURES_VERSION_META: MEASURES_VERSION}
    )
    path = lake.quality(source.name, unit)
    write_parquet_atomic(path, table)
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    accepted_records = [r for r in records if r.status == "accepted"]
    return QualitySummary(
        unit=unit,
        path=path,
        sha256=file_sha256(path),
        policy_version=policy.version(),
        frame=frame,
        n_manifest_rows=len(rows),
        n_accepted=len(accepted_records),
        n_rejected=len(records) - len(accepted_records),
        accepted_duration_s=sum(r.duration_s or 0.0 for r in accepted_records),
        rejections=dict(
            Counter(f"{r.reject_stage}:{r.reject_rule}" for r in records if r.status == "rejected")
        ),
        audio_rows=audio_rows,
        audio_index_sha256=file_sha256(lake.shard_index(source.name, unit)),
        decoded=decoded,
        audio_written=audio_written,
    )


def check_accounting(summary: QualitySummary) -> CheckOutcome:
    """Every manifest row has exactly one decision (rows == accepted + rejected, ids unique)
    and every accepted utterance, and nothing else, is in exactly one audio shard."""
    frame = summary.frame
    accounted = summary.n_accepted + summary.n_rejected
    accepted = set(frame.filter(pl.col("status") == "accepted")["utterance_id"].to_list())
    in_shards = Counter(row.utterance_id for row in summary.audio_rows)
    missing = sorted(accepted - set(in_shards))
    extra = sorted(u for u, n in in_shards.items() if n > 1 or u not in accepted)
    passed = (
        accounted == summary.n_manifest_rows == frame.height
        and frame["utterance_id"].n_unique() == frame.height
        and not missing
        and not extra
    )
    return CheckOutcome(
        passed=passed,
        metadata={
            "manifest_rows": summary.n_manifest_rows,
            "accepted_plus_rejected": accounted,
            "rows": frame.height,
            "in_audio_shards": sum(in_shards.values()),
            "missing_from_shards": missing[:10],
            "unexpected_in_shards": extra[:10],
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
