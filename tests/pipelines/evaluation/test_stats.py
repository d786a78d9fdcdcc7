"""Bootstrap intervals of corpus error rates, single and paired, on synthetic cases whose
answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.evaluation.stats import bootstrap_error_rate, error_rate, paired_bootstrap


def test_the_corpus_rate_is_total_errors_over_total_units() -> None:
    # Not the mean of per-utterance rates (0.5 and 0.0 → 0.25): 1 error in 12 words.
    assert error_rate([1, 0], [2, 10]) == pytest.approx(1 / 12)
    assert error_rate([3], [0]) is None


def test_a_constant_difference_has_a_zero_width_interval() -> None:
    # B makes exactly one error fewer on every 10-word utterance: whatever the resample,
    # B − A is −10 %; the interval is that point and B is better in every resample.
    units = np.full(40, 10)
    errors_a = np.random.default_rng(1).integers(1, 6, size=40)
    d = paired_bootstrap(errors_a, errors_a - 1, units, samples=500)
    assert d.difference == pytest.approx(-0.1)
    assert d.low == pytest.approx(-0.1) and d.high == pytest.approx(-0.1)
    assert d.p_b_not_better == 0.0 and d.verdict == "better"


def test_identical_systems_show_no_change() -> None:
    errors = np.random.default_rng(2).integers(0, 5, size=100)
    d = paired_bootstrap(errors, errors, np.full(100, 8), samples=300)
    assert (d.difference, d.low, d.high) == (0.0, 0.0, 0.0)
    assert not d.significant and d.verdict == "no significant change"


def test_the_paired_interval_matches_the_normal_approximation() -> None:
    # Equal reference lengths: the rate difference is the mean per-utterance difference
    # over the length, whose bootstrap spread is sd / sqrt(n) (central limit theorem).
    rng = np.random.default_rng(3)
    n, length = 2000, 10
    errors_a = rng.binomial(length, 0.30, size=n)
    errors_b = rng.binomial(length, 0.28, size=n)
    d = paired_bootstrap(errors_a, errors_b, np.full(n, length), samples=2000, seed=7)
    per_utt = (errors_b - errors_a) / length
    half_width = 1.96 * per_utt.std(ddof=1) / np.sqrt(n)
    assert d.difference == pytest.approx(per_utt.mean())
    assert d.low == pytest.approx(per_utt.mean() - half_width, abs=0.15 * half_width)
    assert d.high == pytest.approx(per_utt.mean() + half_width, abs=0.15 * half_width)


def test_the_single_interval_covers_the_rate_and_matches_the_binomial_spread() -> None:
    rng = np.random.default_rng(4)
    n, length, p = 3000, 10, 0.2
    errors = rng.binomial(length, p, size=n)
    interval = bootstrap_error_rate(errors, np.full(n, length), samples=2000)
    rate = errors.sum() / (n * length)
    half_width = 1.96 * np.sqrt(rate * (1 - rate) / (n * length))
    assert interval.rate == pytest.approx(rate)
    assert interval.low == pytest.approx(rate - half_width, abs=0.15 * half_width)
    assert interval.high == pytest.approx(rate + half_width, abs=0.15 * half_width)
    assert (interval.n_utterances, interval.n_ref_units) == (n, n * length)


def test_the_same_seed_gives_the_same_interval_and_bad_input_is_refused() -> None:
    errors, units = [1, 2, 0, 4], [5, 5, 6, 7]
    assert bootstrap_error_rate(errors, units, seed=5) == bootstrap_error_rate(
        errors, units, seed=5
    )
    with pytest.raises(ValueError, match="differ in length"):
        paired_bootstrap([1, 2], [1], [3, 3])
    assert bootstrap_error_rate([0], [0]).rate is None


def test_module_doctests() -> None:
    import doctest

    import pipelines.evaluation.stats

    failed, tried = doctest.testmod(pipelines.evaluation.stats)
    assert tried > 0 and failed == 0
