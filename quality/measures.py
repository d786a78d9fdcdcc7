"""Every model-free measure of one utterance, in one call: `measure(samples, rate, text)`.

`Measures` has exactly the measure columns of `schemas.quality.QualityRecord`, so
a caller writes `QualityRecord(**asdict(measure(...)), utterance_id=..., ...)`.

`measure_pcm16(pcm, rate, text)` measures 16-bit PCM (int16 k, the audio
k / 32768 that the shards store) without converting it to floats first: the
quality step's form. `measure` of floats that are exactly k / 32768 (a decoded
16-bit file, `pipelines.audio.pcm.stored_samples`) gives what `measure_pcm16(k)`
gives, bit for bit, so re-measuring a shard's FLAC reproduces the catalogue.
Both share the work of the measures through one `quality.signal.Signal`.

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
    clipping_of,
    dc_offset,
    dc_offset_of,
    non_finite_count,
    peak_dbfs,
    peak_dbfs_of,
    rms_dbfs,
    rms_dbfs_of,
    silence,
    silence_of,
)
from quality.signal import PCM16_SCALE, Signal
from quality.snr import stnr_snr_db, stnr_snr_db_of, wada_snr_db, wada_snr_db_of
from quality.spectrum import effective_bandwidth_hz, effective_bandwidth_hz_of

__all__ = [
    "CLIP_LEVEL",
    "LEVEL_FLOOR_DBFS",
    "Measures",
    "chars_per_second",
    "clipping",
    "dc_offset",
    "effective_bandwidth_hz",
    "measure",
    "measure_pcm16",
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
    return sum(map(_COUNTED.__getitem__, text)) / duration_s


class _CountedCharacters(dict):
    """1 for a character `chars_per_second` counts, 0 for whitespace and punctuation (cached)."""

    def __missing__(self, ch: str) -> int:
        counted = int(not ch.isspace() and not unicodedata.category(ch).startswith("P"))
        if len(self) < 65536:
            self[ch] = counted
        return counted


_COUNTED = _CountedCharacters()


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
    Samples that are all exactly k / 32768 for 16-bit k are measured as
    `measure_pcm16(k)` (the same values, up to float rounding, and bit for bit what
    the quality step stored for them).

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
    pcm = _exact_pcm16(x)
    if pcm is not None:
        signal = Signal.of_pcm16(pcm, sample_rate_hz)
    else:
        signal = Signal.of_floats(x, sample_rate_hz)
    return _measures(signal, text, non_finite)


def measure_pcm16(pcm: np.ndarray, sample_rate_hz: int, text: str | None = None) -> Measures:
    """Measure one mono utterance of 16-bit PCM (int16 k; the audio is k / 32768).

    The same measures as `measure(pcm / 32768, ...)`, computed from the integers:
    energies and sums are exact, and no float copy of the audio is made but the
    float64 and float32 ones the measures work on. non_finite_samples is 0.

    Raises ValueError for a non-positive sample rate or samples that are not 1-D,
    TypeError for samples that are not int16.
    """
    if sample_rate_hz <= 0:
        raise ValueError(f"sample_rate_hz must be positive, got {sample_rate_hz}")
    pcm = np.asarray(pcm)
    if pcm.ndim != 1:
        raise ValueError(f"expected mono 1-D samples, got shape {pcm.shape}")
    return _measures(Signal.of_pcm16(pcm, sample_rate_hz), text, 0)


def _exact_pcm16(x: np.ndarray) -> np.ndarray | None:
    """The int16 k when every float32 sample is exactly k / 32768, else None."""
    if x.size == 0:
        return None
    head = x[:1024] * np.float32(PCM16_SCALE)
    if not np.array_equal(np.rint(head), head):  # most float audio is off the grid at once
        return None
    scaled = x * np.float32(PCM16_SCALE)  # exact: a power of two
    if scaled.min() < -32768.0 or scaled.max() > 32767.0:
        return None
    if not np.array_equal(np.rint(scaled), scaled):
        return None
    return scaled.astype(np.int16)


def _measures(signal: Signal, text: str | None, non_finite: int) -> Measures:
    duration_s = signal.n / signal.sample_rate_hz
    clipping_ratio, longest_clipped_run = clipping_of(signal)
    silence_ratio, leading_silence_s, trailing_silence_s = silence_of(signal)
    return Measures(
        duration_s=duration_s,
        wada_snr_db=wada_snr_db_of(signal),
        stnr_snr_db=stnr_snr_db_of(signal),
        clipping_ratio=clipping_ratio,
        longest_clipped_run=longest_clipped_run,
        silence_ratio=silence_ratio,
        leading_silence_s=leading_silence_s,
        trailing_silence_s=trailing_silence_s,
        rms_dbfs=rms_dbfs_of(signal),
        peak_dbfs=peak_dbfs_of(signal),
        dc_offset=dc_offset_of(signal),
        bandwidth_hz=effective_bandwidth_hz_of(signal),
        non_finite_samples=non_finite,
        chars_per_s=chars_per_second(text, duration_s),
    )
