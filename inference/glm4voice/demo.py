"""A tiny random-weight tokenizer checkpoint in the released layout, for tests and the demo.

No model weights can be downloaded on voxlake's build machines, so the demo
and the tests run on a checkpoint voxlake writes itself: the released
`config.json` with small dimensions (d_model 64, 4 layers, 2 heads, ffn 128,
pooling and quantisation after layer 4) but the full 16384-entry codebook,
128 mel bins and 1500 positions, the released `preprocessor_config.json`,
and a `model.safetensors` with exactly the released key set (no prefix,
`ema_count`/`ema_weight` included). Its `config.json` carries
`"voxlake_demo": "random weights: codes carry no meaning"`, which makes
`is_demo` true and `load_tokenizer` warn. The bytes depend only on the seed.

A codebook drawn independently of the encoder would give one code for
everything (a random encoder's hidden states share one large offset, so a
single entry is nearest to all of them). So the codebook is drawn from the
encoder's own hidden-state distribution: per-dimension mean and standard
deviation over a synthetic calibration signal (`calibration_signal`: a
gliding harmonic tone in syllable-rate bursts plus noise bursts), which makes
the demo's codes vary with the audio as real codes do.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import WhisperFeatureExtractor

from inference.glm4voice.config import (
    RELEASED_CONFIG,
    RELEASED_PREPROCESSOR,
    GLM4VoiceTokenizerConfig,
)
from inference.glm4voice.features import window_features
from inference.glm4voice.model import WhisperVQEncoder, sinusoids
from schemas.audio import TARGET_SAMPLE_RATE_HZ

DEMO_NOTE = "random weights: codes carry no meaning"

DEMO_DIMENSIONS: dict[str, Any] = {
    "d_model": 64,
    "encoder_layers": 4,
    "encoder_attention_heads": 2,
    "encoder_ffn_dim": 128,
    "pooling_position": 4,
    "quantize_position": 4,
}


def demo_config() -> GLM4VoiceTokenizerConfig:
    """The demo checkpoint's config: the released one with `DEMO_DIMENSIONS` and the demo note."""
    return GLM4VoiceTokenizerConfig.from_dict(
        {**RELEASED_CONFIG, **DEMO_DIMENSIONS, "voxlake_demo": DEMO_NOTE}
    )


@torch.no_grad()
def init_random_weights(model: WhisperVQEncoder, seed: int = 0) -> WhisperVQEncoder:
    """Fill a (materialised) encoder with deterministic random weights, in place.

    Linear and convolution weights ~ N(0, 1/fan_in) (activations keep their
    scale through the layers, so codes vary with the audio), biases ~ N(0,
    0.02²), LayerNorms identity, `embed_positions` Whisper's sinusoids and
    `embed_positions2` its first rows (upstream's initialisation), codebook ~
    N(0, 1), `ema_count` ones and `ema_weight` the codebook (upstream's).
    Tensors are drawn in sorted name order from one generator seeded `seed`.
    """
    generator = torch.Generator().manual_seed(seed)
    tensors = dict(model.named_parameters())
    tensors.update(model.named_buffers())
    for name in sorted(tensors):
        tensor = tensors[name]
        if name.endswith("layer_norm.weight"):
            tensor.fill_(1.0)
        elif name.endswith("layer_norm.bias"):
            tensor.zero_()
        elif name in ("embed_positions.weight", "embed_positions2.weight"):
            tensor.copy_(sinusoids(*tensor.shape))
        elif name == "ema_count":
            tensor.fill_(1.0)
        elif name == "ema_weight":
            continue  # the codebook's copy, set below
        elif name == "codebook.weight":
            tensor.copy_(torch.randn(tensor.shape, generator=generator))
        elif name.endswith(".bias"):
            tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.02)
        else:
            fan_in = math.prod(tensor.shape[1:])
            tensor.copy_(torch.randn(tensor.shape, generator=generator) / math.sqrt(fan_in))
    if "ema_weight" in tensors:
        tensors["ema_weight"].copy_(model.codebook.weight)
    return model


def calibration_signal(seed: int = 0, duration_s: float = 20.0) -> np.ndarray:
    """A deterministic speech-like test signal at 16 kHz, float32 in [-1, 1].

    A harmonic tone (19 partials) whose f0 glides between 100 and 400 Hz, gated
    at 4 Hz with random levels per 0.1 s, plus white-noise bursts (30% of the
    50 ms slots).
    """
    rng = np.random.default_rng(seed)
    n = round(duration_s * TARGET_SAMPLE_RATE_HZ)
    t = np.arange(n) / TARGET_SAMPLE_RATE_HZ
    f0_hz = 100.0 + 150.0 * (1.0 + np.sin(2 * np.pi * 0.3 * t))
    phase = 2 * np.pi * np.cumsum(f0_hz) / TARGET_SAMPLE_RATE_HZ
    voiced = sum(np.sin(k * phase) / k for k in range(1, 20))
    levels = rng.random(n // 1600 + 1).repeat(1600)[:n]
    envelope = (np.sin(2 * np.pi * 4.0 * t) > 0) * levels
    bursts = rng.random(n // 800 + 1).repeat(800)[:n] > 0.7
    signal = 0.1 * voiced * envelope + 0.05 * rng.standard_normal(n) * bursts
    return np.clip(signal, -1.0, 1.0).astype(np.float32)


@torch.no_grad()
def calibrate_codebook(model: WhisperVQEncoder, hidden: torch.Tensor, seed: int = 0) -> None:
    """Redraw the codebook around hidden states: rows (n, d) of the quantiser's input.

    Entries ~ N(μ, diag σ²), μ and σ the per-dimension mean and standard
    deviation of `hidden`; `ema_weight` follows the codebook. In place.
    """
    mean, std = hidden.mean(dim=0), hidden.std(dim=0)
    generator = torch.Generator().manual_seed(seed)
    codebook = model.codebook.weight
    draw = torch.randn(codebook.shape, generator=generator)
    codebook.copy_((mean.cpu() + std.cpu() * draw).to(codebook))
    if hasattr(model, "ema_weight"):
        model.ema_weight.copy_(codebook)


def _write_atomic(path: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _json_bytes(values: dict[str, Any]) -> bytes:
    return (json.dumps(values, indent=2, sort_keys=True) + "\n").encode("utf-8")


def write_demo_checkpoint(directory: Path | str, seed: int = 0) -> Path:
    """Write the demo checkpoint (config.json, model.safetensors, preprocessor_config.json).

    Creates `directory` if needed; every file is written atomically. Same seed,
    same bytes. Returns the folder.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = demo_config()
    model = init_random_weights(WhisperVQEncoder(config), seed)
    extractor = WhisperFeatureExtractor.from_dict(RELEASED_PREPROCESSOR)
    features, frame_mask = window_features(extractor, calibration_signal(seed), 1280)
    with torch.no_grad():
        output = model(features[None], frame_mask[None], return_hidden=True)
    assert output.hidden is not None
    calibrate_codebook(model, output.hidden[output.token_valid], seed)
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    handle, temporary = tempfile.mkstemp(prefix="model.safetensors", suffix=".tmp", dir=directory)
    os.close(handle)
    try:
        save_file(state, temporary, metadata={"format": "pt"})
        os.replace(temporary, directory / "model.safetensors")
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _write_atomic(directory / "config.json", _json_bytes(config.to_dict()))
    _write_atomic(directory / "preprocessor_config.json", _json_bytes(RELEASED_PREPROCESSOR))
    return directory
