"""Plausibility of a unit's measure distributions (the `distribution` asset check).

A unit can pass every per-utterance rule and still be wrong as a whole: a
decoder that returns digital silence, a resampler that zeroes a band, or a
connector that pairs audio with the wrong offsets all leave a fingerprint in
the distribution. This module names those fingerprints.

>>> implausible_distribution([100.0] * 9 + [12.0], [2.0, 3.0] * 5)
['9 of 10 WADA-SNR values sit at the estimator ceiling (100 dB)']
"""

from __future__ import annotations

import math
from collections.abc import Sequence

WADA_CEILING_DB = 100.0
WADA_FLOOR_DB = -20.0
MIN_VALUES = 5  # fewer values than this say nothing about a distribution
MAX_SHARE_AT_BOUND = 0.8


def _finite(values: Sequence[float | None]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def implausible_distribution(
    snr_db: Sequence[float | None], durations_s: Sequence[float | None]
) -> list[str]:
    """Reasons why a unit's SNR or duration distribution is implausible (empty = plausible).

    Flags: most WADA-SNR values at the estimator's ceiling or floor (the
    estimate saturated: digital silence, constant signals, or the noise is
    everything); every duration identical (a cut by a fixed window rather
    than by the corpus's offsets).
    """
    reasons: list[str] = []
    snr = _finite(snr_db)
    if len(snr) >= MIN_VALUES:
        at_ceiling = sum(v >= WADA_CEILING_DB - 0.5 for v in snr)
        at_floor = sum(v <= WADA_FLOOR_DB + 0.5 for v in snr)
        if at_ceiling > MAX_SHARE_AT_BOUND * len(snr):
            reasons.append(
                f"{at_ceiling} of {len(snr)} WADA-SNR values sit at the estimator ceiling "
                f"({WADA_CEILING_DB:.0f} dB)"
            )
        if at_floor > MAX_SHARE_AT_BOUND * len(snr):
            reasons.append(
                f"{at_floor} of {len(snr)} WADA-SNR values sit at the estimator floor "
                f"({WADA_FLOOR_DB:.0f} dB)"
            )
    durations = _finite(durations_s)
    if len(durations) >= MIN_VALUES and max(durations) - min(durations) < 1e-6:
        reasons.append(f"all {len(durations)} durations are {durations[0]:.3f} s")
    return reasons
