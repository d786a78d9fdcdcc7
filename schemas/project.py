"""The voxlake project file (`voxlake.yaml`): lake root, work-unit limits and sources.

>>> cfg = ProjectConfig.model_validate(
...     {"sources": [{"name": "libri", "kind": "librispeech", "path": "corpora/LibriSpeech"}]}
... )
>>> cfg.sources[0].kind.value, cfg.lake
('librispeech', 'lake')
"""

from __future__ import annotations

import enum
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.quality import QualityPolicy
from schemas.release import ReleaseSpec
from schemas.shards import ShardLimits
from schemas.sources import OPTIONS_BY_KIND
from schemas.tokens import TokenizerConfig
from schemas.training import TrainingConfig

SOURCE_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"


class SourceKind(enum.StrEnum):
    """Corpus formats voxlake reads; each has one connector module of the same name."""

    librispeech = "librispeech"
    wenetspeech = "wenetspeech"
    emilia = "emilia"
    audio_folder = "audio_folder"
    table = "table"
    vita_jsonl = "vita_jsonl"
    hf_dataset = "hf_dataset"
    lhotse = "lhotse"


class UnitLimits(BaseModel):
    """Upper bounds of one work unit: memory and run time per step stay bounded."""

    model_config = ConfigDict(extra="forbid")

    max_utterances: int = Field(2000, ge=1, description="utterances per unit, at most")
    max_duration_s: float = Field(
        4 * 3600.0, gt=0, description="declared audio per unit, at most (seconds)"
    )


class Executor(enum.StrEnum):
    """Where the steps of a Dagster run execute (see `deploy/` for the profiles)."""

    in_process = "in_process"
    multiprocess = "multiprocess"
    celery = "celery"
    k8s = "k8s"


class ExecutionSettings(BaseModel):
    """How `voxlake run` (and UI backfills) cut the work into Dagster runs and run their steps."""

    model_config = ConfigDict(extra="forbid")

    units_per_run: int = Field(
        16,
        ge=1,
        le=1000,
        description="work units one Dagster run carries at most (the unit assets' backfill "
        "policy); per-run start-up is paid once per this many units",
    )
    executor: Executor = Field(
        Executor.in_process,
        description="the executor of every job: `in_process` runs a run's steps in its run "
        "worker (least overhead on one machine); `multiprocess`, `celery` or `k8s` spread them",
    )
    step_retries: int = Field(
        2, ge=0, le=10, description="retries of a failed step before its unit counts as failed"
    )
    celery_broker: str = Field(
        "redis://127.0.0.1:6379/0", description="Celery broker URL (executor `celery`)"
    )
    celery_backend: str = Field(
        "redis://127.0.0.1:6379/1", description="Celery result backend URL (executor `celery`)"
    )
    k8s_namespace: str = Field("voxlake", description="namespace of step pods (executor `k8s`)")
    k8s_image: str | None = Field(
        None, description="container image of step pods (executor `k8s`; default: the run's)"
    )
    k8s_lake_claim: str = Field(
        "voxlake-lake",
        description="PersistentVolumeClaim holding the project and its lake, mounted in every "
        "step pod at /project (executor `k8s`)",
    )
    k8s_gpu_requests: bool = Field(
        True, description="steps of the `gpu` pool request one nvidia.com/gpu (executor `k8s`)"
    )


class SourceConfig(BaseModel):
    """One corpus: where it is, what format it has, and format-specific options."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="short unique name; prefixes every utterance id")
    kind: SourceKind
    path: str = Field(description="corpus root (or manifest file), relative to the project")
    options: dict[str, Any] = Field(default_factory=dict)
    allowed_roots: list[str] = Field(
        default_factory=list,
        description="extra folders that manifest paths may point into (default: none)",
    )
    units: UnitLimits | None = Field(None, description="overrides the project's unit limits")

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        if not re.fullmatch(SOURCE_NAME_PATTERN, name):
            raise ValueError(
                f"source name {name!r} must be lower-case letters, digits and '_', "
                "starting with a letter"
            )
        return name

    @model_validator(mode="after")
    def _check_options(self) -> SourceConfig:
        # Validate (and normalise) the options with the kind's own model so a typo in an
        # option is an error naming it, not a silently ignored key.
        options_model = OPTIONS_BY_KIND[self.kind.value]
        self.options = options_model.model_validate(self.options).model_dump(mode="json")
        return self

    def typed_options(self) -> BaseModel:
        """The options as the kind's pydantic model (see `schemas.sources`)."""
        return OPTIONS_BY_KIND[self.kind.value].model_validate(self.options)


class ProjectConfig(BaseModel):
    """The whole `voxlake.yaml`."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(1, description="file format version")
    lake: str = Field("lake", description="lake root, relative to the project folder")
    catalogue: str = Field(
        "catalogue.duckdb", description="DuckDB catalogue file, relative to the project folder"
    )
    units: UnitLimits = Field(default_factory=UnitLimits)
    sources: list[SourceConfig] = Field(default_factory=list)
    quality: QualityPolicy = Field(default_factory=QualityPolicy)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    shards: ShardLimits = Field(default_factory=ShardLimits)
    releases: list[ReleaseSpec] = Field(
        default_factory=list, description="releases the `release` asset creates"
    )
    training: TrainingConfig = Field(
        default_factory=TrainingConfig, description="what the training stages train on"
    )
    execution: ExecutionSettings = Field(
        default_factory=ExecutionSettings,
        description="how runs are cut and where their steps execute",
    )

    @field_validator("version")
    @classmethod
    def _check_version(cls, version: int) -> int:
        if version != 1:
            raise ValueError(f"unsupported voxlake.yaml version {version}; this voxlake reads 1")
        return version

    @model_validator(mode="after")
    def _unique_names(self) -> ProjectConfig:
        seen: set[str] = set()
        for source in self.sources:
            if source.name in seen:
                raise ValueError(f"source name {source.name!r} is used twice")
            seen.add(source.name)
        unknown = sorted(set(self.quality.sources) - seen)
        if unknown:
            raise ValueError(f"quality.sources names unknown sources: {', '.join(unknown)}")
        return self

    def source(self, name: str) -> SourceConfig:
        """The source called `name`; KeyError naming the known sources otherwise."""
        for source in self.sources:
            if source.name == name:
                return source
        known = ", ".join(s.name for s in self.sources) or "none"
        raise KeyError(f"no source named {name!r} (known: {known})")

    def unit_limits(self, source: SourceConfig) -> UnitLimits:
        """The unit limits in force for `source`."""
        return source.units or self.units
