"""Every model-free measure of one utterance, in one call: `measure(samples, rate, text)`.

`Measures` has exactly the measure columns of `schemas.quality.QualityRecord`, so
a caller writes `QualityRecord(**asdict(measure(...)), utterance_id=..., ...)`.

>>> import numpy as np
>>> t = np.arange(16000) / 16000
>>> m = measure((0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000, "a tone")
>>> round(m.rms_dbfs, 2), round(m.peak_dbfs, 2), m.clipping_ratio, m.chars_per_s
(-9.03, -6.02, 0.0, 5.0)
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np

from quality.levels import (
    CLIP_LEVEL,
    LEVEL_FLOOR_DBFS,
    clipping,
    dc_offset,
    non_finite_count,
    peak_dbfs,
    rms_dbfs,
    silence,
)
from quality.snr import stnr_snr_db, wada_snr_db
from quality.spectrum import effective_bandwidth_hz

__all__ = [
    "CLIP_LEVEL",
    "LEVEL_FLOOR_DBFS",
    "Measures",
    "chars_per_second",
    "clipping",
    "dc_offset",
    "effective_bandwidth_hz",
    "measure",
    "non_finite_count",
    "peak_dbfs",
    "rms_dbfs",
    "silence",
    "stnr_snr_db",
    "wada_snr_db",
]


def chars_per_second(text: str | None, duration_s: float) -> float | None:
    """Transcript characters per second of audio (characters / s).

    Counts characters that are neither whitespace nor Unicode punctuation
    (categories P*), so "你好，世界。" counts 4 and "Hi, there!" counts 7.
    None when `text` is None or `duration_s` <= 0.
    """
    if text is None or duration_s <= 0:
        return None
    count = sum(
        1 for ch in text if not ch.isspace() and not unicodedata.category(ch).startswith("P")
    )
    return count / duration_s


@dataclass(frozen=True)
class Measures:
    """The measures of one utterance; field names and units as in `QualityRecord`."""

    duration_s: float
    wada_snr_db: float | None
    stnr_snr_db: float | None
    clipping_ratio: float
    longest_clipped_run: int
    silence_ratio: float
    leading_silence_s: float
    trailing_silence_s: float
    rms_dbfs: float
    peak_dbfs: float
    dc_offset: float
    bandwidth_hz: float
    non_finite_samples: int
    chars_per_s: float | None


def measure(samples: np.ndarray, sample_rate_hz: int, text: str | None = None) -> Measures:
    """Measure one mono utterance (float samples on [-1, 1] at `sample_rate_hz`).

    Non-finite samples are counted first and then replaced by 0, so that every
    other measure stays finite. duration_s is samples / sample_rate_hz; the
    others are documented on their functions: `wada_snr_db`, `stnr_snr_db`,
    `clipping`, `silence` (-50 dBFS threshold), `rms_dbfs`, `peak_dbfs`,
    `dc_offset`, `effective_bandwidth_hz` (99.9 % energy share), `chars_per_second`.

    Raises ValueError for a non-positive sample rate or samples that are not 1-D.
    """
    if sample_rate_hz <= 0:
        raise ValueError(f"sample_rate_hz must be positive, got {sample_rate_hz}")
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected mono 1-D samples, got shape {x.shape}")
    non_finite = non_finite_count(x)
    if non_finite:
        x = np.where(np.isfinite(x), x, np.float32(0.0))
    duration_s = x.size / sample_rate_hz
    clipping_ratio, longest_clipped_run = clipping(x)
    silence_ratio, leading_silence_s, trailing_silence_s = silence(x, sample_rate_hz)
    return Measures(
        duration_s=duration_s,
        wada_snr_db=wada_snr_db(x),
        stnr_snr_db=stnr_snr_db(x, sample_rate_hz),
        clipping_ratio=clipping_ratio,
        longest_clipped_run=longest_clipped_run,
        silence_ratio=silence_ratio,
        leading_silence_s=leading_silence_s,
        trailing_silence_s=trailing_silence_s,
        rms_dbfs=rms_dbfs(x),
        peak_dbfs=peak_dbfs(x),
        dc_offset=dc_offset(x),
        bandwidth_hz=effective_bandwidth_hz(x, sample_rate_hz),
        non_finite_samples=non_finite,
        chars_per_s=chars_per_second(text, duration_s),
    )
