"""The tokenizer settings. The codes themselves live in code shards (`schemas/shards.py`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

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
