"""The GLM-4-Voice tokenizer's `config.json`: a Whisper config extended with VQ fields.

`GLM4VoiceTokenizerConfig.from_dict` reads the keys upstream's
`WhisperVQConfig` reads, with upstream's defaults when a key is absent (and
`transformers.WhisperConfig`'s defaults for the Whisper keys); every other key
(`architectures`, `torch_dtype`, decoder settings, ...) is kept in `extra`
and written back by `to_dict`, never an error. A value of the wrong type is a
`ConfigError` naming the key.

>>> config = GLM4VoiceTokenizerConfig.from_dict({"d_model": 64, "pooling_kernel_size": 4})
>>> config.pooling_type, config.pooling_position, config.quantize_position
('max', 0, 16)
>>> GLM4VoiceTokenizerConfig.from_dict({"torch_dtype": "float32"}).extra
{'torch_dtype': 'float32'}
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

POOLING_TYPES = ("max", "avg")

# THUDM/glm-4-voice-tokenizer's config.json (the design note's table): what a user's
# downloaded checkpoint holds. Tests and the demo checkpoint start from it.
RELEASED_CONFIG: dict[str, Any] = {
    "architectures": ["WhisperVQEncoder"],
    "d_model": 1280,
    "encoder_layers": 32,
    "encoder_attention_heads": 20,
    "encoder_ffn_dim": 5120,
    "num_mel_bins": 128,
    "max_source_positions": 1500,
    "encoder_causal_convolution": True,
    "encoder_causal_attention": False,
    "pooling_kernel_size": 4,
    "pooling_type": "avg",
    "pooling_position": 16,
    "quantize_position": 16,
    "quantize_vocab_size": 16384,
    "quantize_encoder_only": True,
    "quantize_causal_block_size": 200,
    "quantize_causal_encoder": False,
    "quantize_commit_coefficient": 0.25,
    "quantize_ema_decay": 0.99,
    "quantize_loss_scale": 10.0,
    "quantize_restart_interval": 100,
    "skip_language_detection": True,
    "vocab_size": 51866,
    "torch_dtype": "float32",
}

# Its preprocessor_config.json.
RELEASED_PREPROCESSOR: dict[str, Any] = {
    "feature_extractor_type": "WhisperFeatureExtractor",
    "feature_size": 128,
    "hop_length": 160,
    "n_fft": 400,
    "sampling_rate": 16000,
    "chunk_length": 30,
    "n_samples": 480000,
    "nb_max_frames": 3000,
    "padding_side": "right",
    "padding_value": 0.0,
    "return_attention_mask": False,
}

# Upstream's layers use `ACT2FN[activation_function]`; only the exact (erf) GELU, the
# value of every GLM-4-Voice config, is implemented here.
SUPPORTED_ACTIVATIONS = ("gelu",)


class ConfigError(ValueError):
    """A `config.json` value that is missing, of the wrong type, or inconsistent."""


@dataclass(frozen=True)
class GLM4VoiceTokenizerConfig:
    """The fields of upstream's `WhisperVQConfig` that define the encoder and its codes.

    Whisper fields default as in `transformers.WhisperConfig`; VQ fields as in
    upstream's `WhisperVQConfig`. Positions count encoder layers from 1:
    pooling happens after the first `pooling_position` layers (0: never, as in
    upstream, whose check `layer_index + 1 == pooling_position` never holds)
    and quantisation after the first `quantize_position` layers.
    `quantize_causal_block_size` is in encoder frames (50 per second);
    `None` gives plain key-padding attention.
    """

    # Whisper (transformers.WhisperConfig defaults)
    vocab_size: int = 51865
    num_mel_bins: int = 80
    encoder_layers: int = 4
    encoder_attention_heads: int = 6
    encoder_ffn_dim: int = 1536
    d_model: int = 384
    max_source_positions: int = 1500
    activation_function: str = "gelu"
    # VQ extension (upstream WhisperVQConfig defaults)
    pooling_kernel_size: int | None = None
    pooling_type: str = "max"
    pooling_position: int = 0
    quantize_vocab_size: int | None = None
    quantize_position: int = 16
    quantize_commit_coefficient: float = 0.25
    quantize_loss_scale: float = 1.0
    quantize_ema_decay: float | None = None
    quantize_restart_interval: int | None = None
    quantize_encoder_only: bool = False
    quantize_causal_encoder: bool = False
    quantize_causal_block_size: int | None = None
    skip_language_detection: bool = False
    encoder_causal_attention: bool = False
    encoder_causal_convolution: bool = False
    # every other key of config.json, kept as read
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.d_model % self.encoder_attention_heads:
            raise ConfigError(
                f"d_model {self.d_model} is not a multiple of encoder_attention_heads "
                f"{self.encoder_attention_heads}"
            )
        if self.pooling_type not in POOLING_TYPES:
            raise ConfigError(
                f"pooling_type must be one of {POOLING_TYPES}, not {self.pooling_type!r}"
            )
        if self.activation_function not in SUPPORTED_ACTIVATIONS:
            raise ConfigError(
                f"activation_function {self.activation_function!r} is not supported "
                f"(supported: {SUPPORTED_ACTIVATIONS})"
            )
        if self.quantize_vocab_size is not None and self.quantize_position < self.pooling_position:
            # upstream asserts this when it builds the codebook
            raise ConfigError(
                f"quantize_position {self.quantize_position} is before pooling_position "
                f"{self.pooling_position}"
            )

    def check_tokenizer(self) -> None:
        """Raise `ConfigError` unless this config describes a model that yields codes.

        Needs a codebook (`quantize_vocab_size`, at most 65536 so a code fits
        uint16), `quantize_position` ≥ 1 (upstream's loop never quantises at 0)
        and, for a full encoder, `quantize_position` ≤ `encoder_layers`.
        """
        if self.quantize_vocab_size is None:
            raise ConfigError("quantize_vocab_size is not set: this model has no codebook")
        if self.quantize_vocab_size > 1 << 16:
            raise ConfigError(
                f"quantize_vocab_size {self.quantize_vocab_size} does not fit uint16 codes"
            )
        if self.quantize_position < 1:
            raise ConfigError("quantize_position must be ≥ 1 for the model to yield codes")
        if not self.quantize_encoder_only and self.quantize_position > self.encoder_layers:
            raise ConfigError(
                f"quantize_position {self.quantize_position} is past the last of "
                f"encoder_layers {self.encoder_layers}"
            )

    @property
    def head_dim(self) -> int:
        """Width of one attention head: d_model / encoder_attention_heads."""
        return self.d_model // self.encoder_attention_heads

    @property
    def pools(self) -> bool:
        """True when a pooling layer runs before quantisation (kernel set, position ≥ 1)."""
        return self.pooling_kernel_size is not None and self.pooling_position >= 1

    @property
    def token_stride_frames(self) -> int:
        """Encoder frames (after conv2) per code: the pooling kernel when pooling runs, else 1."""
        return int(self.pooling_kernel_size) if self.pools else 1

    @property
    def is_demo(self) -> bool:
        """True for voxlake's random-weight demo checkpoint (it carries a `voxlake_demo` key)."""
        return "voxlake_demo" in self.extra

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GLM4VoiceTokenizerConfig:
        """Build from a parsed `config.json`; unknown keys go to `extra`, absent keys default."""
        if not isinstance(values, dict):
            raise ConfigError(f"config.json must hold a JSON object, not {type(values).__name__}")
        known: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in values.items():
            if key in _FIELD_TYPES:
                known[key] = _checked(key, value)
            else:
                extra[key] = value
        return cls(**known, extra=extra)

    @classmethod
    def from_json_file(cls, path: Path) -> GLM4VoiceTokenizerConfig:
        """Read `config.json`; a file that is not JSON is a `ConfigError` naming it."""
        try:
            values = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ConfigError(f"{path} is not valid JSON: {error}") from error
        try:
            return cls.from_dict(values)
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from error

    def to_dict(self) -> dict[str, Any]:
        """Every field and every extra key, as `config.json` holds them."""
        out = {name: getattr(self, name) for name in _FIELD_TYPES}
        out.update(self.extra)
        return out

    def replace(self, **changes: Any) -> GLM4VoiceTokenizerConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


# Field name -> accepted JSON types. bool is checked apart: JSON true is not an integer.
_FIELD_TYPES: dict[str, tuple[str, bool]] = {
    # name: (kind, nullable)
    "vocab_size": ("int", False),
    "num_mel_bins": ("int", False),
    "encoder_layers": ("int", False),
    "encoder_attention_heads": ("int", False),
    "encoder_ffn_dim": ("int", False),
    "d_model": ("int", False),
    "max_source_positions": ("int", False),
    "activation_function": ("str", False),
    "pooling_kernel_size": ("int", True),
    "pooling_type": ("str", False),
    "pooling_position": ("int", False),
    "quantize_vocab_size": ("int", True),
    "quantize_position": ("int", False),
    "quantize_commit_coefficient": ("float", False),
    "quantize_loss_scale": ("float", False),
    "quantize_ema_decay": ("float", True),
    "quantize_restart_interval": ("int", True),
    "quantize_encoder_only": ("bool", False),
    "quantize_causal_encoder": ("bool", False),
    "quantize_causal_block_size": ("int", True),
    "skip_language_detection": ("bool", False),
    "encoder_causal_attention": ("bool", False),
    "encoder_causal_convolution": ("bool", False),
}

# Sizes that must be positive when set (positions may be 0).
_POSITIVE = {
    "num_mel_bins", "encoder_layers", "encoder_attention_heads", "encoder_ffn_dim", "d_model",
    "max_source_positions", "pooling_kernel_size", "quantize_vocab_size",
    "quantize_causal_block_size",
}


def _checked(key: str, value: Any) -> Any:
    kind, nullable = _FIELD_TYPES[key]
    if value is None:
        if nullable:
            return None
        raise ConfigError(f"{key} must be set, not null")
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, int | float) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
    }[kind]
    if not ok:
        raise ConfigError(f"{key} must be {kind}{' or null' if nullable else ''}, not {value!r}")
    if kind == "int" and (value < 0 or (key in _POSITIVE and value == 0)):
        raise ConfigError(f"{key} must be {'positive' if key in _POSITIVE else '≥ 0'}, not {value}")
    return float(value) if kind == "float" else value
