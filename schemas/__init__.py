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
    SHARD_INDEX_ARROW_SCHEMA,
    ShardIndexRow,
    ShardLimits,
    ShardSampleMeta,
)
from schemas.tokens import TOKENS_ARROW_SCHEMA, TokenizerConfig, TokensRecord

__all__ = [
    "MANIFEST_ARROW_SCHEMA",
    "QUALITY_ARROW_SCHEMA",
    "RELEASE_UTTERANCE_ARROW_SCHEMA",
    "SHARD_INDEX_ARROW_SCHEMA",
    "TOKENS_ARROW_SCHEMA",
    "CharsPerSecondRange",
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
    "ShardSampleMeta",
    "SourceConfig",
    "SourceKind",
    "SourceRules",
    "TokenizerConfig",
    "TokensRecord",
    "UnitLimits",
    "UnitPlan",
    "arrow_schema",
]
