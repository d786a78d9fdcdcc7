"""GLM-4-Voice tokenizer config.json: the released values, upstream's defaults, strict types."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import WhisperConfig

from inference.glm4voice.config import (
    RELEASED_CONFIG,
    ConfigError,
    GLM4VoiceTokenizerConfig,
)


def test_the_released_config_parses_to_the_design_notes_values() -> None:
    config = GLM4VoiceTokenizerConfig.from_dict(RELEASED_CONFIG)
    assert (config.d_model, config.encoder_layers, config.encoder_attention_heads) == (1280, 32, 20)
    assert (config.encoder_ffn_dim, config.num_mel_bins, config.max_source_positions) == (
        5120,
        128,
        1500,
    )
    assert config.encoder_causal_convolution is True and config.encoder_causal_attention is False
    assert (config.pooling_kernel_size, config.pooling_type, config.pooling_position) == (
        4,
        "avg",
        16,
    )
    assert (config.quantize_position, config.quantize_vocab_size) == (16, 16384)
    assert config.quantize_encoder_only is True and config.quantize_causal_encoder is False
    assert config.quantize_causal_block_size == 200
    assert config.quantize_ema_decay == 0.99 and config.quantize_restart_interval == 100
    assert config.quantize_commit_coefficient == 0.25 and config.quantize_loss_scale == 10.0
    assert config.skip_language_detection is True and config.vocab_size == 51866
    assert config.head_dim == 64 and config.token_stride_frames == 4 and config.pools
    # keys the encoder does not read are kept, not rejected
    assert config.extra == {"architectures": ["WhisperVQEncoder"], "torch_dtype": "float32"}
    assert not config.is_demo
    config.check_tokenizer()


def test_absent_keys_take_upstreams_defaults() -> None:
    config = GLM4VoiceTokenizerConfig.from_dict({})
    assert config.pooling_kernel_size is None
    assert config.pooling_type == "max"
    assert config.pooling_position == 0
    assert config.quantize_vocab_size is None
    assert config.quantize_position == 16
    assert config.quantize_encoder_only is False
    assert config.encoder_causal_attention is False
    assert config.encoder_causal_convolution is False
    assert config.quantize_causal_block_size is None and config.quantize_ema_decay is None
    assert not config.pools and config.token_stride_frames == 1


def test_whisper_keys_default_as_transformers_whisper_config() -> None:
    config = GLM4VoiceTokenizerConfig.from_dict({})
    whisper = WhisperConfig()
    for key in (
        "vocab_size",
        "num_mel_bins",
        "encoder_layers",
        "encoder_attention_heads",
        "encoder_ffn_dim",
        "d_model",
        "max_source_positions",
        "activation_function",
    ):
        assert getattr(config, key) == getattr(whisper, key), key


def test_many_unknown_keys_are_kept_and_written_back(tmp_path: Path) -> None:
    values = {
        **RELEASED_CONFIG,
        "decoder_layers": 32,
        "begin_suppress_tokens": [220, 50257],
        "transformers_version": "4.44.1",
        "use_cache": True,
        "voxlake_demo": "x",
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(values))
    config = GLM4VoiceTokenizerConfig.from_json_file(path)
    assert config.extra["decoder_layers"] == 32 and config.is_demo
    # every field is written, the absent activation_function with its default
    assert config.to_dict() == {**values, "activation_function": "gelu"}


def test_avg_and_max_pooling_are_accepted_and_others_rejected() -> None:
    for kind in ("avg", "max"):
        assert GLM4VoiceTokenizerConfig.from_dict({"pooling_type": kind}).pooling_type == kind
    with pytest.raises(ConfigError, match="pooling_type"):
        GLM4VoiceTokenizerConfig.from_dict({"pooling_type": "mean"})


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("d_model", "1280", "d_model must be int"),
        ("d_model", 1280.0, "d_model must be int"),
        ("quantize_encoder_only", 1, "quantize_encoder_only must be bool"),
        ("encoder_layers", True, "encoder_layers must be int"),
        ("pooling_kernel_size", 0, "pooling_kernel_size must be positive"),
        ("d_model", None, "d_model must be set"),
        ("quantize_position", -1, "quantize_position must be ≥ 0"),
    ],
)
def test_wrong_types_name_the_key(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        GLM4VoiceTokenizerConfig.from_dict({**RELEASED_CONFIG, key: value})


def test_inconsistent_configs_are_rejected() -> None:
    with pytest.raises(ConfigError, match="not a multiple"):
        GLM4VoiceTokenizerConfig.from_dict({"d_model": 100, "encoder_attention_heads": 3})
    with pytest.raises(ConfigError, match="before pooling_position"):
        GLM4VoiceTokenizerConfig.from_dict(
            {"quantize_vocab_size": 8, "pooling_position": 5, "quantize_position": 4}
        )
    with pytest.raises(ConfigError, match="activation_function"):
        GLM4VoiceTokenizerConfig.from_dict({"activation_function": "relu"})


def test_a_tokenizer_needs_a_codebook_that_fits_uint16() -> None:
    with pytest.raises(ConfigError, match="no codebook"):
        GLM4VoiceTokenizerConfig.from_dict({}).check_tokenizer()
    with pytest.raises(ConfigError, match="uint16"):
        GLM4VoiceTokenizerConfig.from_dict(
            {**RELEASED_CONFIG, "quantize_vocab_size": 70000}
        ).check_tokenizer()
    with pytest.raises(ConfigError, match="past the last"):
        GLM4VoiceTokenizerConfig.from_dict(
            {**RELEASED_CONFIG, "quantize_encoder_only": False, "encoder_layers": 8}
        ).check_tokenizer()


def test_a_file_that_is_not_json_is_named(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match=r"config\.json is not valid JSON"):
        GLM4VoiceTokenizerConfig.from_json_file(path)
