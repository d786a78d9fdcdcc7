"""Judge one measured utterance under a `QualityPolicy`: which rules fail, by how much.

Every rule compares one measured (or corpus-declared) quantity with one
threshold, so a rejection can always say what was measured and what the limit
was. Rules are checked in a fixed order; the first failure is "the rule that
fired", and all failures are kept for audits.

>>> from schemas.quality import QualityPolicy
>>> failures = judge(QualityPolicy(), "s", "en", {"duration_s": 0.2, "wada_snr_db": 20.0})
>>> [(f.rule, f.value, f.threshold) for f in failures]
[('min_duration_s', 0.2, 0.5)]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from schemas.quality import QualityPolicy


@dataclass(frozen=True)
class RuleFailure:
    """One failed rule: its name, the measured value and the threshold it crossed."""

    rule: str
    value: float | None
    threshold: float | None
    message: str


@dataclass(frozen=True)
class EffectiveRules:
    """The policy as it applies to one source (source overrides merged in)."""

    min_duration_s: float
    max_duration_s: float
    min_snr_db: float | None
    min_dnsmos: float | None
    min_confidence: float | None
    keep_subsets: frozenset[str] | None


def effective_rules(policy: QualityPolicy, source: str) -> EffectiveRules:
    """Merge the per-source rules of `source` over the project-wide ones."""
    override = policy.sources.get(source)

    def pick(name: str) -> Any:
        value = getattr(override, name) if override is not None else None
        return value if value is not None else getattr(policy, name)

    keep = pick("keep_subsets")
    return EffectiveRules(
        min_duration_s=pick("min_duration_s"),
        max_duration_s=pick("max_duration_s"),
        min_snr_db=pick("min_snr_db"),
        min_dnsmos=pick("min_dnsmos"),
        min_confidence=pick("min_confidence"),
        keep_subsets=frozenset(keep) if keep is not None else None,
    )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def judge(
    policy: QualityPolicy,
    source: str,
    language: str | None,
    measures: Mapping[str, Any],
    declared_duration_s: float | None = None,
    extra: Mapping[str, Any] | None = None,
    subsets: list[str] | None = None,
) -> list[RuleFailure]:
    """Every rule `measures` fail under `policy` for `source`, in rule order (empty = accept).

    `measures` maps the `QualityRecord` measure names (`duration_s`,
    `wada_snr_db`, ...) to values; a missing or None measure skips its rule,
    except `wada_snr_db`, which is None only for audio with no non-zero
    sample and then fails `min_snr_db`. `extra` holds corpus-declared scores
    (`dnsmos`, `confidence`).
    """
    rules = effective_rules(policy, source)
    extra = extra or {}
    failures: list[RuleFailure] = []

    def fail(rule: str, value: float | None, threshold: float | None, message: str) -> None:
        failures.append(RuleFailure(rule, value, threshold, message))

    non_finite = _number(measures.get("non_finite_samples"))
    if non_finite:
        fail("max_non_finite_samples", non_finite, 0.0, f"{int(non_finite)} NaN/inf samples")
    duration_s = _number(measures.get("duration_s"))
    if duration_s is not None:
        if duration_s < rules.min_duration_s:
            fail(
                "min_duration_s",
                duration_s,
                rules.min_duration_s,
                f"{duration_s:.3f} s is shorter than {rules.min_duration_s} s",
            )
        if duration_s > rules.max_duration_s:
            fail(
                "max_duration_s",
                duration_s,
                rules.max_duration_s,
                f"{duration_s:.3f} s is longer than {rules.max_duration_s} s",
            )
        if declared_duration_s is not None:
            mismatch_s = abs(duration_s - declared_duration_s)
            if mismatch_s > policy.max_duration_mismatch_s:
                fail(
                    "max_duration_mismatch_s",
                    round(mismatch_s, 6),
                    policy.max_duration_mismatch_s,
                    f"measured {duration_s:.3f} s but declared {declared_duration_s:.3f} s",
                )
    if rules.min_snr_db is not None and "wada_snr_db" in measures:
        snr_db = _number(measures.get("wada_snr_db"))
        if snr_db is None or snr_db < rules.min_snr_db:
            fail(
                "min_snr_db",
                snr_db,
                rules.min_snr_db,
                "no signal to estimate SNR from"
                if snr_db is None
                else f"WADA-SNR {snr_db:.1f} dB is below {rules.min_snr_db} dB",
            )
    clipping_ratio = _number(measures.get("clipping_ratio"))
    if clipping_ratio is not None and clipping_ratio > policy.max_clipping_ratio:
        fail(
            "max_clipping_ratio",
            clipping_ratio,
            policy.max_clipping_ratio,
            f"{clipping_ratio:.2%} of samples are clipped",
        )
    silence_ratio = _number(measures.get("silence_ratio"))
    if silence_ratio is not None and silence_ratio > policy.max_silence_ratio:
        fail(
            "max_silence_ratio",
            silence_ratio,
            policy.max_silence_ratio,
            f"{silence_ratio:.0%} of frames are silent",
        )
    bandwidth_hz = _number(measures.get("bandwidth_hz"))
    if (
        policy.min_bandwidth_hz is not None
        and bandwidth_hz is not None
        and bandwidth_hz < policy.min_bandwidth_hz
    ):
        fail(
            "min_bandwidth_hz",
            bandwidth_hz,
            policy.min_bandwidth_hz,
            f"energy ends at {bandwidth_hz:.0f} Hz",
        )
    chars_per_s = _number(measures.get("chars_per_s"))
    if chars_per_s is not None:
        allowed = policy.chars_per_s_range(language)
        if chars_per_s < allowed.min:
            fail(
                "min_chars_per_s",
                chars_per_s,
                allowed.min,
                f"{chars_per_s:.1f} characters/s: too few for the audio (language "
                f"{language or 'unknown'})",
            )
        elif chars_per_s > allowed.max:
            fail(
                "max_chars_per_s",
                chars_per_s,
                allowed.max,
                f"{chars_per_s:.1f} characters/s: too many for the audio (language "
                f"{language or 'unknown'})",
            )
    dnsmos = _number(extra.get("dnsmos"))
    if rules.min_dnsmos is not None and dnsmos is not None and dnsmos < rules.min_dnsmos:
        fail(
            "min_dnsmos",
            dnsmos,
            rules.min_dnsmos,
            f"declared DNSMOS {dnsmos:.2f} is below {rules.min_dnsmos}",
        )
    confidence = _number(extra.get("confidence"))
    if (
        rules.min_confidence is not None
        and confidence is not None
        and confidence < rules.min_confidence
    ):
        fail(
            "min_confidence",
            confidence,
            rules.min_confidence,
            f"label confidence {confidence:.2f} is below {rules.min_confidence}",
        )
    if rules.keep_subsets is not None and not rules.keep_subsets & set(subsets or []):
        fail(
            "keep_subsets",
            None,
            None,
            f"subsets {sorted(subsets or [])} share none of {sorted(rules.keep_subsets)}",
        )
    return failures
