"""Blind signal-to-noise estimates of one utterance: WADA-SNR and a NIST-STNR-style estimate.

Neither needs a model or a clean reference. Both take mono float samples in
[-1, 1] that are finite (`quality.measures.measure` replaces non-finite samples
first) and return decibels, or None when the estimate is undefined.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

WADA_TABLE_PATH = Path(__file__).resolve().parent / "data" / "wada_snr_table.json"
WADA_SNR_MIN_DB = -20.0
WADA_SNR_MAX_DB = 100.0
# Kim & Stern floor |z| so that ln|z| stays finite; relative to the peak.
_WADA_FLOOR = 1e-10

STNR_HOP_S = 0.010
STNR_POWER_FLOOR_DB = -120.0
_STNR_BIN_DB = 0.5
# Hann smoothing kernel of 9 bins (4.5 dB wide, ~2 dB at half height): merges the
# sampling ripple of a few hundred frames without merging a noise mode with speech.
_STNR_SMOOTH_BINS = 9
_STNR_PEAK_SHARE = 0.1
_STNR_SPEECH_PERCENTILE = 95.0


@lru_cache(maxsize=1)
def wada_table() -> tuple[np.ndarray, np.ndarray]:
    """The stored WADA table: (snr_db grid, G values), G strictly increasing.

    Built by `quality/wada_table.py` (numerical integration of the Gamma(0.4) +
    Gaussian model, -20 ... 100 dB in 1 dB steps).
    """
    table = json.loads(WADA_TABLE_PATH.read_text(encoding="utf-8"))
    snr_db = np.asarray(table["snr_db"], dtype=np.float64)
    g = np.asarray(table["g"], dtype=np.float64)
    if snr_db.shape != g.shape or not np.all(np.diff(g) > 0):
        raise ValueError(f"{WADA_TABLE_PATH}: G must be strictly increasing over the SNR grid")
    return snr_db, g


def wada_statistic(samples: np.ndarray) -> float | None:
    """G = ln(mean|z|) - mean(ln|z|) over the non-zero samples (natural log, dimensionless).

    z is normalised by its peak and |z| floored at 1e-10 (Kim & Stern). Exact
    digital zeros (padding, muted stretches) are left out: they carry no noise, so
    the model cannot explain them and they would push G (and the SNR) to the
    ceiling. None when no sample is non-zero.
    """
    magnitude = np.abs(np.asarray(samples))
    magnitude = magnitude[magnitude > 0]
    if magnitude.size == 0:
        return None
    magnitude = np.maximum(magnitude / magnitude.max(), _WADA_FLOOR)
    mean_abs = float(np.mean(magnitude, dtype=np.float64))
    mean_log_abs = float(np.mean(np.log(magnitude), dtype=np.float64))
    return float(np.log(mean_abs) - mean_log_abs)


def wada_snr_db(samples: np.ndarray) -> float | None:
    """WADA-SNR (Kim & Stern, Interspeech 2008) of one utterance, in dB.

    Assumes clean speech with Gamma(alpha = 0.4) distributed amplitudes plus
    independent Gaussian noise. The statistic G (`wada_statistic`) is mapped to
    an SNR by linear interpolation in the stored table G(SNR) and clamped to
    [-20, 100] dB. The SNR is speech power over noise power across the whole
    utterance. Values above ~30 dB are reported but imprecise: G flattens there.

    Returns None when the samples hold no non-zero value (empty or all digital silence).
    """
    g = wada_statistic(samples)
    if g is None:
        return None
    table_snr_db, table_g = wada_table()
    # np.interp clamps to the end values, which is the [-20, 100] dB clamp.
    return float(np.interp(g, table_g, table_snr_db))


def block_energies(samples: np.ndarray, block: int) -> np.ndarray:
    """Sum of squares of each consecutive `block`-sample block (squared full-scale units).

    A trailing partial block is dropped. Float32 products summed per block: enough
    for levels in dB, and several times faster than a float64 running sum.
    """
    x = np.asarray(samples, dtype=np.float32)
    full = x[: x.size // block * block].reshape(-1, block)
    return np.einsum("ij,ij->i", full, full).astype(np.float64)


def frame_powers_db(samples: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    """Mean power of each STNR frame in dBFS (10 log10 mean x^2), floored at -120 dB.

    Frames are two hops long and start every hop, hop = round(10 ms x rate):
    20 ms frames every 10 ms. A trailing partial frame is dropped; empty when the
    signal is shorter than one frame.
    """
    hop = max(1, round(STNR_HOP_S * sample_rate_hz))
    half = block_energies(samples, hop)
    if half.size < 2:
        return np.empty(0)
    power = (half[:-1] + half[1:]) / (2 * hop)
    floor = 10.0 ** (STNR_POWER_FLOOR_DB / 10.0)
    return 10.0 * np.log10(np.maximum(power, floor))


def _smoothed_histogram(values_db: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts of `values_db` in 0.5 dB bins, Hann-smoothed; returns (bin centres dB, counts)."""
    lo = np.floor(values_db.min()) - _STNR_SMOOTH_BINS * _STNR_BIN_DB
    hi = np.ceil(values_db.max()) + _STNR_SMOOTH_BINS * _STNR_BIN_DB
    edges = np.arange(lo, hi + _STNR_BIN_DB, _STNR_BIN_DB)
    counts, _ = np.histogram(values_db, bins=edges)
    kernel = np.hanning(_STNR_SMOOTH_BINS + 2)[1:-1]
    smoothed = np.convolve(counts.astype(np.float64), kernel / kernel.sum(), mode="same")
    return (edges[:-1] + edges[1:]) / 2.0, smoothed


def stnr_snr_db(samples: np.ndarray, sample_rate_hz: int) -> float | None:
    """NIST-STNR-style SNR of one utterance in dB, from the histogram of frame powers.

    1. Frame power in dBFS over 20 ms frames every 10 ms (`frame_powers_db`,
       digital silence floored at -120 dB).
    2. Histogram in 0.5 dB bins, smoothed with a 4.5 dB wide Hann kernel.
    3. Noise level: the lowest-power local maximum of the smoothed histogram that
       is at least 1/10 of the highest one (refined by a parabola through the
       peak bin and its neighbours).
    4. Trough: the first local minimum after the noise peak.
    5. Speech level: the 95th percentile of the frame powers above the trough.
    6. SNR = speech level - noise level.

    This is a peak-speech-to-noise-floor ratio, so it reads higher than an
    energy SNR over the whole utterance. It needs pauses: without them the
    "noise" peak is the speech mode itself, and the result is either None or a
    small meaningless number.

    Returns None when the signal is shorter than one 20 ms frame, when every
    frame is at the -120 dB floor (digital silence), or when no frame lies
    above the trough (a single mode: no pauses, or nothing but noise).
    """
    powers_db = frame_powers_db(samples, sample_rate_hz)
    if powers_db.size == 0 or np.all(powers_db <= STNR_POWER_FLOOR_DB):
        return None
    centres_db, hist = _smoothed_histogram(powers_db)
    interior = hist[1:-1]
    is_peak = (interior > hist[:-2]) & (interior >= hist[2:])
    peaks = np.flatnonzero(is_peak) + 1
    qualified = peaks[hist[peaks] >= _STNR_PEAK_SHARE * hist.max()]
    noise_bin = int(qualified[0])
    noise_db = _parabolic_peak(centres_db, hist, noise_bin)
    # First bin after the noise peak where the histogram stops falling: the trough.
    # (a tolerance keeps convolution rounding in the empty tail from posing as a rise).
    rising = np.flatnonzero(np.diff(hist[noise_bin:]) > 1e-9 * hist.max())
    if rising.size == 0:
        return None
    trough_db = centres_db[noise_bin + int(rising[0])]
    speech_frames_db = powers_db[powers_db > trough_db]
    if speech_frames_db.size == 0:
        return None
    speech_db = float(np.percentile(speech_frames_db, _STNR_SPEECH_PERCENTILE))
    return speech_db - noise_db


def _parabolic_peak(centres_db: np.ndarray, hist: np.ndarray, peak: int) -> float:
    """Sub-bin position (dB) of a histogram peak from a parabola through it and its neighbours."""
    left, mid, right = hist[peak - 1], hist[peak], hist[peak + 1]
    curvature = left - 2.0 * mid + right
    if curvature >= 0:
        return float(centres_db[peak])
    offset = 0.5 * (left - right) / curvature
    return float(centres_db[peak] + offset * (centres_db[1] - centres_db[0]))
