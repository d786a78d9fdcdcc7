"""The quality contract: the curation policy users write, and one decision per utterance.

The policy lives under `quality:` in `voxlake.yaml`. Its version is a content
hash of its canonical JSON, stored with every decision, so a changed threshold
is visible in the data and makes the quality step stale in Dagster.

>>> policy = QualityPolicy()
>>> len(policy.version())
12
>>> QualityPolicy(min_snr_db=10.0).version() != policy.version()
True
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.arrow import arrow_schema
from schemas.hashing import canonical_json_sha256


class CharsPerSecondRange(BaseModel):
    """Plausible characters of transcript per second of audio, for one language."""

    model_config = ConfigDict(extra="forbid")

    min: float = Field(ge=0)
    max: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> CharsPerSecondRange:
        if self.min >= self.max:
            raise ValueError(f"min ({self.min}) must be below max ({self.max})")
        return self


class SourceRules(BaseModel):
    """Rules for one source; unset fields fall back to the project-wide policy."""

    model_config = ConfigDict(extra="forbid")

    min_duration_s: float | None = Field(None, ge=0)
    max_duration_s: float | None = Field(None, gt=0)
    min_snr_db: float | None = None
    min_dnsmos: float | None = Field(None, description="floor on a declared DNSMOS (Emilia)")
    min_confidence: float | None = Field(
        None, ge=0, le=1, description="floor on a declared label confidence (WenetSpeech)"
    )
    keep_subsets: list[str] | None = Field(
        None, description="keep only utterances in any of these subsets (WenetSpeech)"
    )


def _default_chars_per_s() -> dict[str, CharsPerSecondRange]:
    # Wide on purpose: these catch transcripts that belong to other audio, not fast talkers.
    return {
        "default": CharsPerSecondRange(min=1.0, max=35.0),
        "zh": CharsPerSecondRange(min=1.0, max=12.0),
        "en": CharsPerSecondRange(min=3.0, max=35.0),
    }


class QualityPolicy(BaseModel):
    """What an accepted utterance must satisfy. Every rule names a measured quantity."""

    model_config = ConfigDict(extra="forbid")

    min_duration_s: float = Field(0.5, ge=0, description="shortest accepted utterance")
    max_duration_s: float = Field(30.0, gt=0, description="longest accepted utterance")
    max_duration_mismatch_s: float = Field(
        0.5, ge=0, description="|measured - declared| duration allowed"
    )
    min_snr_db: float | None = Field(5.0, description="WADA-SNR floor; null disables")
    max_clipping_ratio: float = Field(0.001, ge=0, le=1)
    max_silence_ratio: float = Field(0.8, ge=0, le=1)
    min_bandwidth_hz: float | None = Field(
        None, ge=0, description="effective bandwidth floor (Hz); 4000 drops 8 kHz telephone audio"
    )
    chars_per_s: dict[str, CharsPerSecondRange] = Field(
        default_factory=_default_chars_per_s,
        description="per language code; 'default' for the others",
    )
    min_dnsmos: float | None = None
    min_confidence: float | None = Field(None, ge=0, le=1)
    keep_subsets: list[str] | None = None
    sources: dict[str, SourceRules] = Field(default_factory=dict)

    @field_validator("chars_per_s")
    @classmethod
    def _has_default(cls, ranges: dict[str, CharsPerSecondRange]) -> dict[str, CharsPerSecondRange]:
        if "default" not in ranges:
            raise ValueError("needs a 'default' entry for languages without their own range")
        return ranges

    @model_validator(mode="after")
    def _ordered(self) -> QualityPolicy:
        if self.min_duration_s >= self.max_duration_s:
            raise ValueError(
                f"min_duration_s ({self.min_duration_s}) must be below "
                f"max_duration_s ({self.max_duration_s})"
            )
        return self

    def version(self) -> str:
        """Content hash of the policy (12 hex digits): equal policies, equal versions."""
        return canonical_json_sha256(self.model_dump(mode="json"))[:12]

    def chars_per_s_range(self, language: str | None) -> CharsPerSecondRange:
        """The characters-per-second range for `language` (or the default)."""
        return self.chars_per_s.get(language or "", self.chars_per_s["default"])


class QualityRecord(BaseModel):
    """One row of `lake/quality/<source>/<unit>.parquet`: the decision on one input utterance.

    Every manifest row has one: rows rejected at ingest keep their ingest reason
    (`reject_stage="ingest"`); rows that fail to decode are rejected with the
    decoder's reason (`"decode"`); the others are measured and judged by the
    policy (`"policy"`): the first rule that fired, its measured value and its
    threshold, plus every rule that failed in `failed_rules`.
    """

    model_config = ConfigDict(extra="forbid")

    utterance_id: str
    source: str
    unit: str
    language: str | None = None
    status: Literal["accepted", "rejected"]
    reject_stage: Literal["ingest", "decode", "policy"] | None = None
    reject_rule: str | None = None
    reject_value: float | None = None
    reject_threshold: float | None = None
    reject_message: str | None = None
    failed_rules: list[str] = Field(default_factory=list)
    policy_version: str
    declared_duration_s: float | None = None
    duration_s: float | None = Field(None, description="measured, after decoding and cutting")
    source_sample_rate_hz: int | None = None
    source_channels: int | None = None
    wada_snr_db: float | None = None
    stnr_snr_db: float | None = None
    clipping_ratio: float | None = None
    longest_clipped_run: int | None = Field(None, description="samples")
    silence_ratio: float | None = None
    leading_silence_s: float | None = None
    trailing_silence_s: float | None = None
    rms_dbfs: float | None = None
    peak_dbfs: float | None = None
    dc_offset: float | None = None
    bandwidth_hz: float | None = None
    non_finite_samples: int | None = None
    chars_per_s: float | None = None
    pcm_sha256: str | None = Field(None, description="sha256 of the 16 kHz int16 PCM")


QUALITY_ARROW_SCHEMA = arrow_schema(QualityRecord)
