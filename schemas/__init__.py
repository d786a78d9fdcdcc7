"""voxlake's contracts: pydantic models and the Arrow schemas derived from them.

Nothing here imports other voxlake packages (or Dagster): these models are the
interface between pipeline steps, and between voxlake and its users.
"""

from schemas.arrow import arrow_schema
from schemas.manifest import (
    MANIFEST_ARROW_SCHEMA,
    InventoryItem,
    ManifestRecord,
    RejectReason,
    UnitPlan,
)
from schemas.project import ProjectConfig, SourceConfig, SourceKind, UnitLimits
from schemas.quality import (
    QUALITY_ARROW_SCHEMA,
    CharsPerSecondRange,
    QualityPolicy,
    QualityRecord,
    SourceRules,
)
from schemas.release import (
    RELEASE_UTTERANCE_ARROW_SCHEMA,
    Release,
    ReleaseShard,
    ReleaseSpec,
    ReleaseUtterance,
)
from schemas.shards import (
    CODE_INDEX_ARROW_SCHEMA,
    SHARD_INDEX_ARROW_SCHEMA,
    AudioSampleMeta,
    CodeIndexRow,
    CodeSampleMeta,
    ShardIndexRow,
    ShardLimits,
)
from schemas.tokens import TokenizerConfig

__all__ = [
    "CODE_INDEX_ARROW_SCHEMA",
    "MANIFEST_ARROW_SCHEMA",
    "QUALITY_ARROW_SCHEMA",
    "RELEASE_UTTERANCE_ARROW_SCHEMA",
    "SHARD_INDEX_ARROW_SCHEMA",
    "AudioSampleMeta",
    "CharsPerSecondRange",
    "CodeIndexRow",
    "CodeSampleMeta",
    "InventoryItem",
    "ManifestRecord",
    "ProjectConfig",
    "QualityPolicy",
    "QualityRecord",
    "RejectReason",
    "Release",
    "ReleaseShard",
    "ReleaseSpec",
    "ReleaseUtterance",
    "ShardIndexRow",
    "ShardLimits",
    "SourceConfig",
    "SourceKind",
    "SourceRules",
    "TokenizerConfig",
    "UnitLimits",
    "UnitPlan",
    "arrow_schema",
]
