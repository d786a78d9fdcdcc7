"""The GLM-4-Voice speech tokenizer (Whisper-VQ encoder): 16 kHz speech → 12.5 Hz codes.

Loads the upstream checkpoint layout (THUDM/glm-4-voice-tokenizer: `config.json`,
`model.safetensors`, `preprocessor_config.json`) and yields upstream's codes,
in batches sorted by window length on CPU or CUDA.

>>> # tokenizer = load_tokenizer("models/glm-4-voice-tokenizer")
>>> # codes = tokenizer.tokenize([samples_16k])   # list of uint16 arrays
>>> expected_code_count(16000 * 4)
50

Modules: `config` (config.json), `features` (windows, log-mel, code counts),
`model` (the encoder), `loading` (strict safetensors loading, content hash),
`tokenizer` (the batched fast path), `reference` (the one-window-at-a-time
oracle), `demo` (the random-weight demo checkpoint).
"""

from inference.glm4voice.config import (
    RELEASED_CONFIG,
    RELEASED_PREPROCESSOR,
    ConfigError,
    GLM4VoiceTokenizerConfig,
)
from inference.glm4voice.demo import DEMO_NOTE, write_demo_checkpoint
from inference.glm4voice.features import CODES_PER_SECOND, SAMPLES_PER_CODE, expected_code_count
from inference.glm4voice.loading import (
    CheckpointError,
    load_tokenizer,
    tokenizer_checkpoint_sha256,
)
from inference.glm4voice.model import WhisperVQEncoder
from inference.glm4voice.tokenizer import GLM4VoiceTokenizer, TokenizeStats

__all__ = [
    "CODES_PER_SECOND",
    "DEMO_NOTE",
    "RELEASED_CONFIG",
    "RELEASED_PREPROCESSOR",
    "SAMPLES_PER_CODE",
    "CheckpointError",
    "ConfigError",
    "GLM4VoiceTokenizer",
    "GLM4VoiceTokenizerConfig",
    "TokenizeStats",
    "WhisperVQEncoder",
    "expected_code_count",
    "load_tokenizer",
    "tokenizer_checkpoint_sha256",
    "write_demo_checkpoint",
]
