"""Corpus error rates and their bootstrap confidence intervals, single and paired.

A corpus error rate is total errors over total reference units (words or characters),
not the mean of per-utterance rates: a long utterance weighs as many units as it has.
Intervals resample utterances with replacement (the utterance is the unit of sampling,
because errors within an utterance are not independent), `samples` times with a fixed
seed, and take the percentile interval. The paired bootstrap (Koehn 2004; Bisani & Ney
2004) resamples the same utterance indices for both systems, so what varies between
them is the systems, not the test sentences.

>>> import numpy as np
>>> units = np.full(50, 10)
>>> diff = paired_bootstrap(np.full(50, 2), np.full(50, 1), units, samples=200)
>>> (diff.rate_a, diff.rate_b, diff.difference, diff.low, diff.high)
(0.2, 0.1, -0.1, -0.1, -0.1)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
"""Coverage of every interval voxlake reports."""

_CHUNK_CELLS = 4_000_000
"""Resampled indices drawn at once (samples × utterances), bounding the memory used."""


def error_rate(
    errors: Sequence[int] | np.ndarray, units: Sequence[int] | np.ndarray
) -> float | None:
    """Total errors over total reference units; None without reference units."""
    total = int(np.sum(units))
    return int(np.sum(errors)) / total if total else None


def _resampled_sums(columns: list[np.ndarray], samples: int, seed: int) -> list[np.ndarray]:
    """Per column, its sum over each of `samples` resamples of the rows (same rows for all)."""
    n = len(columns[0])
    rng = np.random.default_rng(seed)
    sums: list[list[np.ndarray]] = [[] for _ in columns]
    per_chunk = max(1, _CHUNK_CELLS // max(n, 1))
    done = 0
    while done < samples:
        size = min(per_chunk, samples - done)
        rows = rng.integers(0, n, size=(size, n))
        for out, column in zip(sums, columns, strict=True):
            out.append(column[rows].sum(axis=1))
        done += size
    return [np.concatenate(parts).astype(np.float64) for parts in sums]


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class RateInterval:
    """A corpus error rate and its bootstrap percentile interval."""

    rate: float | None
    low: float | None
    high: float | None
    n_utterances: int
    n_ref_units: int
    n_errors: int


def bootstrap_error_rate(
    errors: Sequence[int] | np.ndarray,
    units: Sequence[int] | np.ndarray,
    *,
    samples: int = 1000,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> RateInterval:
    """The corpus error rate of per-utterance `errors` over `units`, with its interval.

    Rate and bounds are None when there are no reference units; a resample whose
    utterances hold no reference units is left out of the percentiles.
    """
    e = np.asarray(errors, dtype=np.int64)
    u = np.asarray(units, dtype=np.int64)
    if e.shape != u.shape:
        raise ValueError(f"{e.size} error counts but {u.size} unit counts")
    rate = error_rate(e, u)
    if rate is None:
        return RateInterval(None, None, None, int(e.size), 0, int(e.sum()))
    sum_e, sum_u = _resampled_sums([e, u], samples, seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = np.where(sum_u > 0, sum_e / sum_u, np.nan)
    low, high = _percentiles(rates, confidence)
    return RateInterval(rate, low, high, int(e.size), int(u.sum()), int(e.sum()))


@dataclass(frozen=True)
class PairedDifference:
    """Two systems' error rates on the same utterances and their difference (B − A).

    Attributes:
        difference: rate_b − rate_a; negative when B makes fewer errors.
        low, high: the paired bootstrap percentile interval of the difference.
        p_b_not_better: share of resamples in which B's rate is not below A's (a
            one-sided bootstrap p-value for "B is better").
    """

    rate_a: float | None
    rate_b: float | None
    difference: float | None
    low: float | None
    high: float | None
    p_b_not_better: float | None
    n_utterances: int
    n_ref_units: int

    @property
    def significant(self) -> bool:
        """Whether the interval excludes zero (the difference is unlikely to be noise)."""
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)

    @property
    def verdict(self) -> str:
        """`better`, `worse` or `no significant change`, said of B against A."""
        if not self.significant or self.difference is None:
            return "no significant change"
        return "better" if self.difference < 0 else "worse"


def paired_bootstrap(
    errors_a: Sequence[int] | np.ndarray,
    errors_b: Sequence[int] | np.ndarray,
    units: Sequence[int] | np.ndarray,
    *,
    samples: int = 1000,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> PairedDifference:
    """Paired bootstrap of the error-rate difference of B against A on the same utterances.

    `errors_a[i]`, `errors_b[i]` and `units[i]` are the two systems' errors and the
    reference units of utterance i.
    """
    a = np.asarray(errors_a, dtype=np.int64)
    b = np.asarray(errors_b, dtype=np.int64)
    u = np.asarray(units, dtype=np.int64)
    if not a.shape == b.shape == u.shape:
        raise ValueError(f"paired counts differ in length: {a.size}, {b.size}, {u.size}")
    rate_a, rate_b = error_rate(a, u), error_rate(b, u)
    if rate_a is None or rate_b is None:
        return PairedDifference(None, None, None, None, None, None, int(u.size), 0)
    sum_a, sum_b, sum_u = _resampled_sums([a, b, u], samples, seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        diffs = np.where(sum_u > 0, (sum_b - sum_a) / sum_u, np.nan)
    low, high = _percentiles(diffs, confidence)
    kept = diffs[~np.isnan(diffs)]
    p_not_better = float(np.mean(kept >= 0)) if kept.size else None
    return PairedDifference(
        rate_a=rate_a,
        rate_b=rate_b,
        difference=rate_b - rate_a,
        low=low,
        high=high,
        p_b_not_better=p_not_better,
        n_utterances=int(u.size),
        n_ref_units=int(u.sum()),
    )
