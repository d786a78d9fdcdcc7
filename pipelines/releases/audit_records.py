"""What an audit found, as data: the result, per shard, per re-measured utterance, and the
listening sample. Filled by `pipelines.releases.audit` (and `audit_sample`), rendered by
`pipelines.releases.audit_report`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ShardCheck:
    """What the audit found for one shard file."""

    kind: str
    """audio | code"""
    shard: str
    exists: bool = True
    sha256_matches: bool | None = None
    """None when the file is missing."""
    wrong_members: int = 0
    """Samples whose members are not exactly those of their field."""
    samples: int = 0
    """Samples in the shard that the audit compared with their catalogue rows."""
    expected: int = 0
    """Catalogue rows that point at the shard."""
    duration_s: float = 0.0
    """Catalogue duration of the compared samples."""
    problems: int = 0


@dataclass
class Remeasure:
    """One sampled utterance's stored and re-measured values, by measure name."""

    utterance_id: str
    stored: dict[str, float | None] = field(default_factory=dict)
    fresh: dict[str, float | None] = field(default_factory=dict)


@dataclass
class SampledUtterance:
    """One utterance of the listening sample, with its FLAC as the audio shard stores it."""

    utterance_id: str
    source: str
    text: str | None
    speaker: str | None
    language: str | None
    split: str | None
    duration_s: float
    n_codes: int | None
    measures: dict[str, float | None]
    flac: bytes | None
    """None when the sample's FLAC could not be read (the problems say why)."""


@dataclass
class AuditResult:
    """What the audit looked at and every mismatch it found."""

    scope: str
    shards: int = 0
    code_shards: int = 0
    samples: int = 0
    code_samples: int = 0
    remeasured: int = 0
    retokenized: int = 0
    problems: list[str] = field(default_factory=list)
    report_path: Path | None = None
    seed: int = 0
    sample_per_source: int = 0
    shard_checks: list[ShardCheck] = field(default_factory=list)
    remeasures: list[Remeasure] = field(default_factory=list)
    code_agreement: dict[str, float] = field(default_factory=dict)
    """Re-tokenized utterance → share of code positions equal to the stored codes."""
    sampled: list[SampledUtterance] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when nothing disagreed."""
        return not self.problems
