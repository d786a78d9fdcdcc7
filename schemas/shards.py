"""The shard contract: WebDataset tars of accepted utterances and their index.

Each sample of a shard is `<key>.flac` (16 kHz mono 16-bit), `<key>.codes.npy`
(uint16 GLM-4-Voice codes) and `<key>.json` (`ShardSampleMeta`), consecutive in
the tar. `lake/shards/<source>/<unit>/index.parquet` holds one `ShardIndexRow`
per sample: where each member's bytes lie in which shard, and the shard's sha256.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.arrow import arrow_schema


class ShardLimits(BaseModel):
    """Upper bounds of one shard (whichever is reached first closes it)."""

    model_config = ConfigDict(extra="forbid")

    max_bytes: int = Field(512 * 1024 * 1024, ge=1024, description="tar bytes per shard")
    max_samples: int = Field(10_000, ge=1, description="samples per shard")


class ShardSampleMeta(BaseModel):
    """`<key>.json` inside a shard: what a training job needs besides audio and codes."""

    model_config = ConfigDict(extra="forbid")

    utterance_id: str
    source: str
    text: str | None
    speaker: str | None
    language: str | None
    split: str | None
    duration_s: float
    snr_db: float | None = Field(description="WADA-SNR")
    stnr_snr_db: float | None
    clipping_ratio: float | None
    silence_ratio: float | None
    rms_dbfs: float | None
    bandwidth_hz: float | None
    chars_per_s: float | None
    n_codes: int
    pcm_sha256: str
    tokenizer_sha256: str
    tokenizer_is_demo: bool
    policy_version: str


class ShardIndexRow(BaseModel):
    """One sample in `index.parquet`: its key, its shard and its members' byte ranges."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(description="WebDataset key: no dots, unique in the lake")
    utterance_id: str
    source: str
    unit: str
    shard: str = Field(description="shard path relative to the lake root")
    shard_sha256: str
    shard_bytes: int
    flac_offset: int = Field(description="byte offset of the member's data in the tar")
    flac_size: int
    codes_offset: int
    codes_size: int
    json_offset: int
    json_size: int
    duration_s: float
    n_codes: int


SHARD_INDEX_ARROW_SCHEMA = arrow_schema(ShardIndexRow)
