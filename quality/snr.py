"""Blind signal-to-noise estimates of one utterance: WADA-SNR and a NIST-STNR-style estimate.

Neither needs a model or a clean reference. Both take mono float samples in
[-1, 1] that are finite (`quality.measures.measure` replaces non-finite samples
first) and return decibels, or None when the estimate is undefined. Each
function builds a `quality.signal.Signal` of its samples and reads the estimate
from it (the `*_of` functions); `quality.measures.measure` shares one `Signal`
among all the measures, with the same results.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from quality.signal import BLOCK_S, Signal

WADA_TABLE_PATH = Path(__file__).resolve().parent / "data" / "wada_snr_table.json"
WADA_SNR_MIN_DB = -20.0
WADA_SNR_MAX_DB = 100.0

STNR_HOP_S = BLOCK_S  # 10 ms: the hop is the `Signal`'s energy block
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
    ceiling. None when no sample is non-zero. Computed in float64 (one logarithm
    per 30 samples, of their product: `Signal.log_magnitude_stats`).
    """
    return wada_statistic_of(Signal.of_floats(samples, 1))


def wada_statistic_of(signal: Signal) -> float | None:
    """`wada_statistic` of a `Signal`."""
    stats = signal.log_magnitude_stats()
    if stats is None:
        return None
    _, mean_abs, mean_log_abs = stats
    return float(math.log(mean_abs) - mean_log_abs)


def wada_snr_db(samples: np.ndarray) -> float | None:
    """WADA-SNR (Kim & Stern, Interspeech 2008) of one utterance, in dB.

    Assumes clean speech with Gamma(alpha = 0.4) distributed amplitudes plus
    independent Gaussian noise. The statistic G (`wada_statistic`) is mapped to
    an SNR by linear interpolation in the stored table G(SNR) and clamped to
    [-20, 100] dB. The SNR is speech power over noise power across the whole
    utterance. Values above ~30 dB are reported but imprecise: G flattens there.

    Returns None when the samples hold no non-zero value (empty or all digital silence).
    """
    return wada_snr_db_of(Signal.of_floats(samples, 1))


def wada_snr_db_of(signal: Signal) -> float | None:
    """`wada_snr_db` of a `Signal`."""
    g = wada_statistic_of(signal)
    if g is None:
        return None
    table_snr_db, table_g = wada_table()
    # np.interp clamps to the end values, which is the [-20, 100] dB clamp.
    return float(np.interp(g, table_g, table_snr_db))


def block_energies(samples: np.ndarray, block: int) -> np.ndarray:
    """Sum of squares of each consecutive `block`-sample block (squared full-scale units).

    A trailing partial block is dropped. Products and sums in float64.
    """
    x = np.asarray(samples, dtype=np.float64)
    full = x[: x.size // block * block].reshape(-1, block)
    return np.einsum("ij,ij->i", full, full)


def frame_powers_db(samples: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    """Mean power of each STNR frame in dBFS (10 log10 mean x^2), floored at -120 dB.

    Frames are two hops long and start every hop, hop = round(10 ms x rate):
    20 ms frames every 10 ms. A trailing partial frame is dropped; empty when the
    signal is shorter than one frame.
    """
    return frame_powers_db_of(Signal.of_floats(samples, sample_rate_hz))


def frame_powers_db_of(signal: Signal) -> np.ndarray:
    """`frame_powers_db` of a `Signal` (from its 10 ms block energies: the hop is the block)."""
    half = signal.block_energies
    if half.size < 2:
        return np.empty(0)
    power = (half[:-1] + half[1:]) / (2 * signal.block * signal.scale * signal.scale)
    floor = 10.0 ** (STNR_POWER_FLOOR_DB / 10.0)
    return 10.0 * np.log10(np.maximum(power, floor))


def _smoothed_histogram(values_db: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts of `values_db` in 0.5 dB bins, Hann-smoothed; returns (bin centres dB, counts)."""
    lo = np.floor(values_db.min()) - _STNR_SMOOTH_BINS * _STNR_BIN_DB
    hi = np.ceil(values_db.max()) + _STNR_SMOOTH_BINS * _STNR_BIN_DB
    edges = np.arange(lo, hi + _STNR_BIN_DB, _STNR_BIN_DB)
    # np.histogram(values_db, bins=edges), counted directly: bin i holds
    # edges[i] <= v < edges[i + 1] (every value lies inside the edges).
    bins = np.searchsorted(edges, values_db, side="right") - 1
    counts = np.bincount(np.minimum(bins, edges.size - 2), minlength=edges.size - 1)
    smoothed = np.convolve(counts.astype(np.float64), _hann_kernel(), mode="same")
    return (edges[:-1] + edges[1:]) / 2.0, smoothed


@lru_cache(maxsize=1)
def _hann_kernel() -> np.ndarray:
    kernel = np.hanning(_STNR_SMOOTH_BINS + 2)[1:-1]
    return kernel / kernel.sum()


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
    return stnr_snr_db_of(Signal.of_floats(samples, sample_rate_hz))


def stnr_snr_db_of(signal: Signal) -> float | None:
    """`stnr_snr_db` of a `Signal`."""
    powers_db = frame_powers_db_of(signal)
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
    speech_db = percentile(speech_frames_db, _STNR_SPEECH_PERCENTILE)
    return speech_db - noise_db


def percentile(values: np.ndarray, q: float) -> float:
    """`float(np.percentile(values, q))` (linear interpolation) of a non-empty 1-D float64
    array without NaN, computed as NumPy does (virtual index (n - 1) q / 100, the two
    order statistics around it from one partition, NumPy's two-sided lerp), without its
    general machinery (a third of STNR's time on short utterances). The tests hold it
    to NumPy's result."""
    n = values.size
    virtual = (n - 1) * (q / 100)
    if virtual >= n - 1:
        return float(values.max())
    below = math.floor(virtual)
    gamma = virtual - below
    ordered = np.partition(values, (below, below + 1))
    low, high = float(ordered[below]), float(ordered[below + 1])
    diff = high - low
    return high - diff * (1 - gamma) if gamma >= 0.5 else low + diff * gamma


def _parabolic_peak(centres_db: np.ndarray, hist: np.ndarray, peak: int) -> float:
    """Sub-bin position (dB) of a histogram peak from a parabola through it and its neighbours."""
    left, mid, right = hist[peak - 1], hist[peak], hist[peak + 1]
    curvature = left - 2.0 * mid + right
    if curvature >= 0:
        return float(centres_db[peak])
    offset = 0.5 * (left - right) / curvature
    return float(centres_db[peak] + offset * (centres_db[1] - centres_db[0]))
