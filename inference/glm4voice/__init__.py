"""The GLM-4-Voice speech tokenizer (Whisper-VQ encoder): 16 kHz speech → 12.5 Hz codes.

Loads the upstream checkpoint layout (THUDM/glm-4-voice-tokenizer: `config.json`,
`model.safetensors`, `preprocessor_config.json`) and yields upstream's codes,
in batches sorted by window length on CPU or CUDA.

>>> # tokenizer = load_tokenizer("models/glm-4-voice-tokenizer")
>>> # codes = tokenizer.tokenize([samples_16k])   # list of uint16 arrays
>>> from inference.glm4voice import expected_code_count
>>> expected_code_count(16000 * 4)
50

Modules: `config` (config.json), `features` (windows, log-mel, code counts),
`model` (the encoder), `loading` (strict safetensors loading), `files` (the
checkpoint's files and content hash, no torch),
`tokenizer` (the batched fast path), `reference` (the one-window-at-a-time
oracle), `demo` (the random-weight demo checkpoint).

The names below load their module on first use (PEP 562), so importing this
package, or `files` for the checkpoint hash, does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULE_OF = {
    "RELEASED_CONFIG": "config",
    "RELEASED_PREPROCESSOR": "config",
    "ConfigError": "config",
    "GLM4VoiceTokenizerConfig": "config",
    "DEMO_NOTE": "demo",
    "write_demo_checkpoint": "demo",
    "CODES_PER_SECOND": "features",
    "SAMPLES_PER_CODE": "features",
    "expected_code_count": "features",
    "CheckpointError": "files",
    "tokenizer_checkpoint_sha256": "files",
    "load_tokenizer": "loading",
    "WhisperVQEncoder": "model",
    "GLM4VoiceTokenizer": "tokenizer",
    "TokenizeStats": "tokenizer",
}

__all__ = sorted(_MODULE_OF)

def __getattr__(name: str) -> Any:
    """Import the submodule that defines `name` when it is first asked for."""
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    globals()[name] = value
    return value
