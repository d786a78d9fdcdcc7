"""The manifest contract: what ingest knows about each input utterance.

Ingest has two steps. `inventory` parses a corpus's metadata into one
`InventoryItem` per input utterance and groups them into work units
(`UnitPlan`). `manifest` checks each item (paths, files, headers) and writes
exactly one `ManifestRecord` per item: `status="ok"`, or `status="rejected"`
with a reason code and a message. Nothing is dropped on the way.
"""

from __future__ import annotations

import enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.arrow import arrow_schema


class RejectReason(enum.StrEnum):
    """Why an input utterance did not pass ingest (machine-readable codes)."""

    missing_audio = "missing_audio"  # transcript/metadata names audio that is not there
    missing_transcript = "missing_transcript"  # audio without the transcript its corpus requires
    missing_metadata = "missing_metadata"  # audio without its metadata record (Emilia json)
    path_escape = "path_escape"  # a path resolves outside its root (../, absolute, symlink)
    malformed_record = "malformed_record"  # a line/record that cannot be parsed, or wrong types
    invalid_text_encoding = "invalid_text_encoding"  # transcript bytes are not UTF-8
    unreadable_audio = "unreadable_audio"  # no decoder recognises the file
    empty_audio = "empty_audio"  # a valid header with zero samples
    truncated_audio = "truncated_audio"  # the header promises more than the file holds
    segment_out_of_range = "segment_out_of_range"  # offset + duration past the recording's end
    invalid_timing = "invalid_timing"  # end <= start, negative offsets, non-finite times
    duplicate_id = "duplicate_id"  # a second input with an id already seen in the source
    unsupported_format = "unsupported_format"  # a format this installation cannot read
    invalid_file_name = "invalid_file_name"  # a file or member name that is not valid UTF-8
    inconsistent_metadata = "inconsistent_metadata"  # two facts that contradict each other
    duration_mismatch = "duration_mismatch"  # decoded length differs from the declared one


class InventoryItem(BaseModel):
    """One input utterance as the corpus metadata describes it (before any file is opened).

    `problem` is set when the metadata itself is already wrong (a malformed
    line, a transcript that is not UTF-8); the item still travels to the
    manifest step so that it is counted and rejected there, with its reason.
    """

    model_config = ConfigDict(extra="forbid")

    native_id: str = Field(description="the corpus's own id; unique within the source")
    audio_path: str | None = Field(
        None, description="audio file as written in the corpus, relative to the source root"
    )
    audio_member: str | None = Field(
        None,
        description="member inside the audio container: a tar member name, or "
        "'<column>@<row>' for a row of an Arrow/Parquet file",
    )
    text: str | None = None
    text_required: bool = False
    speaker: str | None = None
    language: str | None = None
    split: str | None = None
    subsets: list[str] = Field(default_factory=list)
    offset_s: float = 0.0
    duration_s: float | None = Field(None, description="declared duration; None = read header")
    is_segment: bool = Field(
        False, description="cut by offset/duration from a longer recording (range is checked)"
    )
    declared_sample_rate_hz: int | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
    problem: RejectReason | None = None
    problem_message: str | None = None
    origin: str | None = Field(
        None, description="where the metadata came from: 'file:line', 'tar member', ..."
    )


class UnitPlan(BaseModel):
    """A bounded slice of a source, planned by `inventory` and processed by every later step."""

    model_config = ConfigDict(extra="forbid")

    unit: str = Field(description="partition key: '<source>.<group>.<NNNNN>'")
    source: str
    n_inputs: int = Field(ge=0, description="input utterances in the unit")
    declared_duration_s: float = Field(0.0, description="sum of declared durations")
    items_sha256: str = Field(description="sha256 of the unit's inventory file")


class ManifestRecord(BaseModel):
    """One row of `lake/manifests/<source>/<unit>.parquet`: one input utterance."""

    model_config = ConfigDict(extra="forbid")

    utterance_id: str = Field(description="'<source>/<native id>', globally unique")
    source: str
    corpus_kind: str
    unit: str
    split: str | None = None
    subsets: list[str] = Field(default_factory=list)
    speaker: str | None = None
    language: str | None = Field(None, description="lower-case language code")
    text: str | None = None
    audio_path: str | None = Field(None, description="relative to the source root, posix")
    audio_member: str | None = None
    offset_s: float = 0.0
    duration_s: float | None = None
    is_segment: bool = Field(False, description="cut from a longer recording by offset/duration")
    declared_sample_rate_hz: int | None = None
    extra: str = Field("{}", description="JSON object: corpus-specific fields")
    status: Literal["ok", "rejected"] = "ok"
    reject_reason: str | None = None
    reject_message: str | None = None


MANIFEST_ARROW_SCHEMA = arrow_schema(ManifestRecord)
