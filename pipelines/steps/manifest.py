"""The `manifest[unit]` step: check every planned item of a unit and write its manifest.

`build_manifest` checks every planned item (path safety, file presence,
header, segment range, transcript) and writes one manifest row per item,
`ok` or `rejected` with a reason, so `inputs == ok + rejected` always holds.
`planned_inputs` reads how many inputs the inventory planned for the unit.

Check of the `manifest` asset: `check_accounting`, inputs == manifest rows ==
ok + rejected, and utterance ids are unique.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa

from pipelines.audio.decode import CODEC_TOLERANCE_S
from pipelines.audio.headers import wav_truncation
from pipelines.audio.opener import source_opener
from pipelines.audio.ref import AudioHeader, AudioOpener, AudioRefError, probe_header
from pipelines.lake.atomic import write_parquet_atomic
from pipelines.lake.paths import Lake
from pipelines.steps.checks import CheckOutcome
from pipelines.units import read_unit_items, read_units_index
from schemas import (
    MANIFEST_ARROW_SCHEMA,
    InventoryItem,
    ManifestRecord,
    SourceConfig,
    UnitPlan,
)

# A segment may end this far past the recording's end before it counts as out of range
# (codecs pad or trim a few milliseconds); the same tolerance the decoder applies.
SEGMENT_END_TOLERANCE_S = CODEC_TOLERANCE_S
_NOT_RIFF_FORMATS = frozenset({"FLAC", "MP3", "OGG"})


class UnitNotPlannedError(LookupError):
    """The unit is not in its source's inventory; the message says what to re-run."""


def planned_unit(lake: Lake, source: str, unit: str) -> UnitPlan:
    """The inventory's plan of `unit` (inputs, declared duration, items hash).

    Raises UnitNotPlannedError when the unit is not in the inventory.
    """
    plans = {p.unit: p for p in read_units_index(lake, source)}
    if unit not in plans:
        raise UnitNotPlannedError(
            f"unit {unit!r} is not in the inventory of {source!r}; "
            "re-materialize inventory/" + source
        )
    return plans[unit]


def planned_inputs(lake: Lake, source: str, unit: str) -> int:
    """How many input utterances the inventory of `source` planned for `unit`.

    Raises UnitNotPlannedError when the unit is not in the inventory.
    """
    return planned_unit(lake, source, unit).n_inputs


@dataclass
class ManifestSummary:
    """Counts of one unit's manifest, for logs, metadata and the accounting check."""

    unit: str
    n_inputs: int
    n_ok: int = 0
    n_rejected: int = 0
    ok_duration_s: float = 0.0
    rejections: Counter[str] = field(default_factory=Counter)
    languages: Counter[str] = field(default_factory=Counter)


def _reject(record: dict[str, object], reason: str, message: str) -> ManifestRecord:
    record.update(status="rejected", reject_reason=reason, reject_message=message)
    return ManifestRecord.model_validate(record)


class _HeaderCache:
    """Probe each (file, member) once per unit: a long recording serves many segments."""

    def __init__(self, opener: AudioOpener) -> None:
        self.opener = opener
        self._cache: dict[tuple[str, str | None], AudioHeader | AudioRefError] = {}

    def get(self, audio_path: str, member: str | None) -> AudioHeader:
        key = (audio_path, member)
        if key not in self._cache:
            try:
                handle = self.opener.open(audio_path, member)
                name = member or audio_path
                header = probe_header(handle, name)
                # Only a RIFF WAVE file declares a data size to compare with: a file
                # libsndfile reads as FLAC, MP3 or Ogg (whose first bytes are not RIFF)
                # is not opened a second time to look.
                if header.format.split("/")[0] not in _NOT_RIFF_FORMATS:
                    cut_short = wav_truncation(handle, name, header.frames, header.sample_rate_hz)
                    if cut_short is not None:
                        raise AudioRefError("truncated_audio", cut_short)
                self._cache[key] = header
            except AudioRefError as error:
                self._cache[key] = error
        value = self._cache[key]
        if isinstance(value, AudioRefError):
            raise value
        return value


def check_item(
    item: InventoryItem, source: SourceConfig, unit: str, headers: _HeaderCache
) -> ManifestRecord:
    """Turn one inventory item into its manifest row: `ok`, or `rejected` with a reason."""
    record: dict[str, object] = {
        "utterance_id": f"{source.name}/{item.native_id}",
        "source": source.name,
        "corpus_kind": source.kind.value,
        "unit": unit,
        "split": item.split,
        "subsets": item.subsets,
        "speaker": item.speaker,
        "language": item.language.lower() if item.language else None,
        "text": item.text,
        "audio_path": item.audio_path,
        "audio_member": item.audio_member,
        "offset_s": item.offset_s,
        "duration_s": item.duration_s,
        "is_segment": item.is_segment or item.offset_s > 0,
        "declared_sample_rate_hz": item.declared_sample_rate_hz,
        "extra": json.dumps(item.extra, ensure_ascii=False, sort_keys=True),
    }
    if item.problem is not None:
        return _reject(record, item.problem.value, item.problem_message or item.problem.value)
    if item.audio_path is None:
        return _reject(record, "missing_audio", f"{item.native_id}: no audio is named")
    if (
        not math.isfinite(item.offset_s)
        or item.offset_s < 0
        or (
            item.duration_s is not None
            and (not math.isfinite(item.duration_s) or item.duration_s <= 0)
        )
    ):
        return _reject(
            record,
            "invalid_timing",
            f"{item.native_id}: offset {item.offset_s} s, duration {item.duration_s} s",
        )
    if item.text_required and not (item.text or "").strip():
        return _reject(record, "missing_transcript", f"{item.native_id}: no transcript")
    try:
        headers.opener.path(item.audio_path)  # path safety and presence, even when not probed
        needs_header = item.duration_s is None or item.is_segment
        if needs_header:
            header = headers.get(item.audio_path, item.audio_member)
            if item.declared_sample_rate_hz is None:
                record["declared_sample_rate_hz"] = header.sample_rate_hz
            if item.duration_s is None:
                record["duration_s"] = round(header.duration_s - item.offset_s, 6)
                if record["duration_s"] <= 0:  # type: ignore[operator]
                    return _reject(
                        record,
                        "segment_out_of_range",
                        f"{item.native_id}: offset {item.offset_s} s is past the end "
                        f"({header.duration_s:.3f} s)",
                    )
            end_s = item.offset_s + float(record["duration_s"])  # type: ignore[arg-type]
            if end_s > header.duration_s + SEGMENT_END_TOLERANCE_S:
                return _reject(
                    record,
                    "segment_out_of_range",
                    f"{item.native_id}: segment ends at {end_s:.3f} s but "
                    f"{item.audio_path} holds {header.duration_s:.3f} s",
                )
        elif item.audio_member is not None:
            headers.opener.open(item.audio_path, item.audio_member)  # the member must exist
    except AudioRefError as error:
        return _reject(record, error.reason, error.message)
    return ManifestRecord.model_validate(record)


def manifest_records(
    source: SourceConfig, project_dir: Path, lake: Lake, unit: str
) -> Iterator[ManifestRecord]:
    """Check every item of `unit` and yield its manifest row, in inventory order."""
    items_path = lake.inventory_items(source.name, unit)
    if not items_path.exists():
        raise FileNotFoundError(
            f"unit {unit!r} has no inventory file {items_path}; materialize the inventory first"
        )
    with source_opener(source, project_dir) as opener:
        headers = _HeaderCache(opener)
        for item in read_unit_items(items_path):
            yield check_item(item, source, unit, headers)


def build_manifest(
    source: SourceConfig, project_dir: Path, lake: Lake, unit: str, n_inputs: int
) -> ManifestSummary:
    """Write `lake/manifests/<source>/<unit>.parquet` and return its counts."""
    summary = ManifestSummary(unit=unit, n_inputs=n_inputs)
    rows: list[dict[str, object]] = []
    for record in manifest_records(source, project_dir, lake, unit):
        rows.append(record.model_dump(mode="json"))
        if record.status == "ok":
            summary.n_ok += 1
            summary.ok_duration_s += record.duration_s or 0.0
            summary.languages[record.language or "und"] += 1
        else:
            summary.n_rejected += 1
            summary.rejections[record.reject_reason or "unknown"] += 1
    # Sorted rows: the same inputs give the same bytes, whatever order a connector used.
    rows.sort(key=lambda r: str(r["utterance_id"]))
    table = pa.Table.from_pylist(rows, schema=MANIFEST_ARROW_SCHEMA)
    write_parquet_atomic(lake.manifest(source.name, unit), table)
    return summary


def check_accounting(
    n_inputs: int, summary: ManifestSummary, manifest: pl.DataFrame
) -> CheckOutcome:
    """inputs == manifest rows == ok + rejected, and every utterance id is unique.

    `n_inputs` is what the inventory planned, `manifest` the unit's manifest as written.
    """
    n_rows = manifest.height
    n_unique = manifest["utterance_id"].n_unique()
    accounted = summary.n_ok + summary.n_rejected
    passed = accounted == n_inputs == n_rows and n_unique == n_rows
    return CheckOutcome(
        passed=passed,
        metadata={
            "inputs": n_inputs,
            "rows": n_rows,
            "ok_plus_rejected": accounted,
            "unique_ids": n_unique,
        },
        description=None
        if passed
        else f"{n_inputs} inputs but {n_rows} rows ({n_unique} unique ids)",
    )
