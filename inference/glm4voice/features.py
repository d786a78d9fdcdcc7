"""Windows and log-mel features as upstream makes them, and the exact number of codes.

Upstream cuts 16 kHz mono audio into non-overlapping 30 s windows (the last
one shorter) and turns each window into a 128-bin log-mel with
`transformers.WhisperFeatureExtractor`, `padding="longest"`,
`pad_to_multiple_of=1280` samples (one code) and `return_attention_mask=True`.
`window_features` does exactly that for one window, as a batch of one, so a
window's features never depend on its neighbours in a batch.

The number of codes (`expected_code_count`), with W = 480,000 samples per
window and S = 1,280 samples per code: a window of n samples is padded to
⌈n / S⌉·S samples, which is 8·⌈n / S⌉ log-mel frames; its frame mask has
⌈n / 160⌉ ones, the encoder mask (`[:, ::2]`) ⌈n / 320⌉ and the code mask
(`[:, ::4]`) ⌈n / 1280⌉. So an utterance of N samples has

    codes(N) = ⌊N / W⌋ · ⌈W / S⌉ + ⌈(N mod W) / S⌉ = ⌊N / W⌋ · 375 + ⌈(N mod W) / 1280⌉

(12.5 per second; 0 for empty audio): 4 s → 50, 10 s → 125, 70 s → 875.

>>> expected_code_count(64_000), expected_code_count(160_000), expected_code_count(1_120_000)
(50, 125, 875)
>>> expected_code_count(1), expected_code_count(1280), expected_code_count(1281)
(1, 1, 2)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import WhisperFeatureExtractor

from inference.glm4voice.config import ConfigError, GLM4VoiceTokenizerConfig
from schemas.audio import TARGET_SAMPLE_RATE_HZ

WINDOW_S = 30
WINDOW_SAMPLES = WINDOW_S * TARGET_SAMPLE_RATE_HZ  # 480,000
HOP_SAMPLES = 160  # log-mel frames are 10 ms apart
CONV_STRIDE_FRAMES = 2  # conv1 stride 1 × conv2 stride 2
SAMPLES_PER_CODE = 1280  # 160 · 2 · 4 (pooling kernel): one code per 80 ms
CODES_PER_SECOND = TARGET_SAMPLE_RATE_HZ / SAMPLES_PER_CODE  # 12.5


def expected_code_count(
    n_samples: int, *, window_samples: int = WINDOW_SAMPLES,
    samples_per_code: int = SAMPLES_PER_CODE,
) -> int:
    """Codes the tokenizer yields for `n_samples` samples of 16 kHz audio (see module docstring).

    Sum over the 30 s windows of ⌈window samples / 1280⌉; 0 for no samples.
    The defaults are the released tokenizer's; `GLM4VoiceTokenizer.expected_code_count`
    passes its own checkpoint's values.
    """
    if n_samples < 0:
        raise ValueError(f"n_samples must be ≥ 0, not {n_samples}")
    full, rest = divmod(int(n_samples), window_samples)
    per_full = -(-window_samples // samples_per_code)
    return full * per_full + -(-rest // samples_per_code)


def split_windows(samples: np.ndarray, window_samples: int = WINDOW_SAMPLES) -> list[np.ndarray]:
    """Non-overlapping windows of `window_samples` samples (views); the last may be shorter.

    Empty audio has no windows (upstream's `while t * 16000 < len(audio)` loop).
    """
    return [samples[start : start + window_samples]
            for start in range(0, len(samples), window_samples)]


def load_feature_extractor(
    path: Path, config: GLM4VoiceTokenizerConfig
) -> WhisperFeatureExtractor:
    """`WhisperFeatureExtractor` from `preprocessor_config.json`, checked against the model.

    The extractor must be a Whisper one, at 16 kHz, with `feature_size` equal
    to the model's `num_mel_bins`; otherwise `ConfigError`.
    """
    try:
        values: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path} is not valid JSON: {error}") from error
    kind = values.get("feature_extractor_type", "WhisperFeatureExtractor")
    if kind != "WhisperFeatureExtractor":
        raise ConfigError(
            f"{path}: feature_extractor_type is {kind!r}, not WhisperFeatureExtractor"
        )
    extractor = WhisperFeatureExtractor.from_dict(values)
    if extractor.sampling_rate != TARGET_SAMPLE_RATE_HZ:
        raise ConfigError(
            f"{path}: sampling_rate {extractor.sampling_rate}, expected {TARGET_SAMPLE_RATE_HZ}"
        )
    if extractor.feature_size != config.num_mel_bins:
        raise ConfigError(
            f"{path}: feature_size {extractor.feature_size} but the model takes "
            f"num_mel_bins {config.num_mel_bins}"
        )
    return extractor


def samples_per_code(extractor: WhisperFeatureExtractor, config: GLM4VoiceTokenizerConfig) -> int:
    """Samples per code: hop · conv strides · pooling kernel (1280 for the released checkpoint).

    Upstream's `pad_to_multiple_of`, so a window is padded to whole codes.
    """
    return int(extractor.hop_length) * CONV_STRIDE_FRAMES * config.token_stride_frames


def window_features(
    extractor: WhisperFeatureExtractor, window: np.ndarray, pad_to_multiple_of: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-mel features of one window as upstream computes them, alone (a batch of one).

    Returns `features` (num_mel_bins, frames) float32 and `frame_mask`
    (frames,) int, 1 for frames whose first sample is audio; frames =
    ⌈len / pad_to_multiple_of⌉ · pad_to_multiple_of / hop.
    """
    out = extractor(
        [np.asarray(window, dtype=np.float32)],
        sampling_rate=extractor.sampling_rate,
        padding="longest",
        pad_to_multiple_of=pad_to_multiple_of,
        return_attention_mask=True,
        return_tensors="pt",
    )
    return out["input_features"][0], out["attention_mask"][0]
