"""Models trained by ``trainer``: Qwen2 with MCTP (multiple cross-modal token prediction)."""

from trainer.model.mctp import (
    IGNORE_INDEX,
    MCTPOutput,
    Qwen2MCTPConfig,
    Qwen2MCTPForCausalLM,
    shifted_targets,
)

__all__ = [
    "IGNORE_INDEX",
    "MCTPOutput",
    "Qwen2MCTPConfig",
    "Qwen2MCTPForCausalLM",
    "shifted_targets",
]
