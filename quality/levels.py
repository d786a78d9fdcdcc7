"""Sample-level measures of one utterance: levels, DC, clipping, silence, non-finite samples.

Samples are mono floats on the full-scale range [-1, 1]; dBFS here is relative to
a constant of amplitude 1 (so a full-scale sine has an RMS of -3.01 dBFS). Each
function builds a `quality.signal.Signal` of its samples and reads the measure
from it (`*_of` functions); `quality.measures.measure` builds one `Signal` for
all of them, with the same results (for `rms_dbfs`, which takes no rate, the same
at 16 kHz and up to float rounding at other rates: the mean square is summed
from 10 ms blocks).
"""

from __future__ import annotations

import numpy as np

from quality.signal import Signal

LEVEL_FLOOR_DBFS = -120.0
# One 16-bit LSB below full scale: what a clipped int16 or float export reaches.
CLIP_LEVEL = 1.0 - 1.0 / 32768.0
SILENCE_FRAME_S = 0.020
_ANY_RATE_HZ = 16000  # for the measures that do not depend on the rate


def _dbfs(amplitude: float) -> float:
    """20 log10(amplitude), floored at LEVEL_FLOOR_DBFS so that silence stays finite."""
    if amplitude <= 10.0 ** (LEVEL_FLOOR_DBFS / 20.0):
        return LEVEL_FLOOR_DBFS
    return float(20.0 * np.log10(amplitude))


def rms_dbfs(samples: np.ndarray) -> float:
    """RMS level in dBFS: 20 log10(sqrt(mean x^2)); -120.0 for silence or no samples.

    A 0.5-amplitude sine reads 20 log10(0.5 / sqrt 2) = -9.03 dBFS.
    """
    return rms_dbfs_of(Signal.of_floats(samples, _ANY_RATE_HZ))


def rms_dbfs_of(signal: Signal) -> float:
    """`rms_dbfs` of a `Signal` (the mean square from its block energies, in float64)."""
    if signal.n == 0:
        return LEVEL_FLOOR_DBFS
    mean_square = signal.sum_squares / signal.n / (signal.scale * signal.scale)
    return _dbfs(mean_square**0.5)


def peak_dbfs(samples: np.ndarray) -> float:
    """Peak level in dBFS: 20 log10(max |x|); -120.0 for silence or no samples."""
    return peak_dbfs_of(Signal.of_floats(samples, _ANY_RATE_HZ))


def peak_dbfs_of(signal: Signal) -> float:
    """`peak_dbfs` of a `Signal`."""
    if signal.n == 0:
        return LEVEL_FLOOR_DBFS
    return _dbfs(signal.peak / signal.scale)


def dc_offset(samples: np.ndarray) -> float:
    """DC offset: the mean sample value (full-scale units, -1 ... 1); 0.0 for no samples."""
    return dc_offset_of(Signal.of_floats(samples, _ANY_RATE_HZ))


def dc_offset_of(signal: Signal) -> float:
    """`dc_offset` of a `Signal`."""
    if signal.n == 0:
        return 0.0
    return signal.total / signal.n / signal.scale


def non_finite_count(samples: np.ndarray) -> int:
    """Number of NaN or infinite samples."""
    return int(np.count_nonzero(~np.isfinite(np.asarray(samples))))


def _longest_true_run(mask: np.ndarray) -> int:
    """Length of the longest run of consecutive True values in a 1-D boolean array."""
    if not mask.any():
        return 0
    edges = np.diff(np.concatenate([[0], mask.view(np.int8), [0]]))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    return int(np.max(ends - starts))


def clipping(samples: np.ndarray) -> tuple[float, int]:
    """(clipping_ratio, longest_clipped_run_samples).

    A sample is clipped when |x| >= 1 - 1/32768, i.e. within one 16-bit LSB of
    full scale. The ratio is clipped samples / all samples (0.0 for no samples);
    the run is the longest stretch of consecutive clipped samples, in samples.
    """
    return clipping_of(Signal.of_floats(samples, _ANY_RATE_HZ))


def clipping_of(signal: Signal) -> tuple[float, int]:
    """`clipping` of a `Signal` (no sample is looked at twice when the peak is below the level)."""
    if signal.n == 0:
        return 0.0, 0
    level = CLIP_LEVEL * signal.scale
    if signal.peak < level:
        return 0.0, 0
    clipped = signal.clipped(level)
    return float(np.count_nonzero(clipped)) / signal.n, _longest_true_run(clipped)


def silence(
    samples: np.ndarray, sample_rate_hz: int, threshold_dbfs: float = -50.0
) -> tuple[float, float, float]:
    """(silence_ratio, leading_silence_s, trailing_silence_s) from 20 ms frames.

    The signal is cut into consecutive 20 ms frames (the last one may be
    shorter); a frame is silent when its RMS level is below `threshold_dbfs`.
    silence_ratio is silent frames / all frames (dimensionless, 0 ... 1);
    leading and trailing silence are the seconds before the first and after the
    last non-silent frame (the whole duration when every frame is silent). An
    empty signal gives (1.0, 0.0, 0.0).
    """
    return silence_of(Signal.of_floats(samples, sample_rate_hz), threshold_dbfs)


def silence_of(signal: Signal, threshold_dbfs: float = -50.0) -> tuple[float, float, float]:
    """`silence` of a `Signal` (frame energies from its 10 ms block energies)."""
    n, rate = signal.n, signal.sample_rate_hz
    if n == 0:
        return 1.0, 0.0, 0.0
    frame = max(1, round(SILENCE_FRAME_S * rate))
    energy, lengths = signal.frame_energies(frame)
    mean_square = energy / lengths / (signal.scale * signal.scale)
    threshold_mean_square = 10.0 ** (threshold_dbfs / 10.0)
    silent = mean_square < threshold_mean_square
    duration_s = n / rate
    if silent.all():
        return 1.0, duration_s, duration_s
    voiced = np.flatnonzero(~silent)
    leading_s = voiced[0] * frame / rate
    trailing_s = (n - min(int(voiced[-1]) * frame + frame, n)) / rate
    return float(np.mean(silent)), float(leading_s), float(trailing_s)
