"""The tokens contract: GLM-4-Voice codes per accepted utterance, and the tokenizer settings.

>>> TOKENS_ARROW_SCHEMA.field("codes").type
ListType(list<item: uint16>)
"""

from __future__ import annotations

from typing import Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from schemas.arrow import arrow_schema

DEMO_TOKENIZER_DIR = "models/glm4voice-demo"


class TokenizerConfig(BaseModel):
    """Which GLM-4-Voice tokenizer checkpoint to use, and how to run it."""

    model_config = ConfigDict(extra="forbid")

    checkpoint: str = Field(
        DEMO_TOKENIZER_DIR,
        description="checkpoint folder (config.json, model.safetensors, "
        "preprocessor_config.json), relative to the project; the default is a tiny "
        "random-weight demo checkpoint voxlake writes itself",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="half precision is used on CUDA only"
    )
    max_batch_frames: int = Field(
        48_000, ge=3000, description="log-mel frames per batch (30 s window = 3000)"
    )


class TokensRecord(BaseModel):
    """One row of `lake/tokens/<source>/<unit>.parquet`: the codes of one accepted utterance."""

    model_config = ConfigDict(extra="forbid")

    utterance_id: str
    source: str
    unit: str
    duration_s: float = Field(description="seconds of 16 kHz audio that were tokenized")
    n_samples: int = Field(description="16 kHz samples that were tokenized")
    codes: list[int] = Field(description="GLM-4-Voice codes in [0, 16384), 12.5 per second")
    n_codes: int
    tokenizer_sha256: str = Field(description="content hash of the tokenizer checkpoint")
    tokenizer_is_demo: bool = Field(description="random-weight demo checkpoint: codes mean nothing")


TOKENS_ARROW_SCHEMA = arrow_schema(TokensRecord, narrower={"codes": pa.list_(pa.uint16())})
