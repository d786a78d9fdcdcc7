"""The distribution check flags saturated SNR estimates and fixed-length cuts."""

from __future__ import annotations

from quality.distribution import implausible_distribution


def test_a_varied_unit_is_plausible() -> None:
    assert (
        implausible_distribution([12.0, 25.0, 30.5, 8.0, 19.0, None], [2.1, 3.4, 5.0, 2.2, 7.9])
        == []
    )


def test_ceiling_floor_and_constant_durations_are_flagged() -> None:
    reasons = implausible_distribution([100.0] * 6, [4.0] * 6)
    assert len(reasons) == 2
    assert "ceiling" in reasons[0] and "all 6 durations are 4.000 s" in reasons[1]
    assert "floor" in implausible_distribution([-20.0] * 5, [1.0, 2.0, 3.0, 4.0, 5.0])[0]


def test_too_few_values_say_nothing() -> None:
    assert implausible_distribution([100.0] * 4, [4.0] * 4) == []
