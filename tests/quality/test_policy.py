"""The quality policy: each rule fires with its value and threshold; bad policies are
errors naming the field; the version follows the content."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.project import ProjectError, load_project
from quality.policy import judge
from schemas import QualityPolicy

GOOD = {
    "duration_s": 3.0,
    "wada_snr_db": 25.0,
    "clipping_ratio": 0.0,
    "silence_ratio": 0.2,
    "bandwidth_hz": 6000.0,
    "non_finite_samples": 0,
    "chars_per_s": 12.0,
}


def _rules(failures: list) -> list[tuple[str, float | None, float | None]]:
    return [(f.rule, f.value, f.threshold) for f in failures]


def test_a_clean_utterance_passes() -> None:
    assert judge(QualityPolicy(), "s", "en", GOOD, declared_duration_s=3.1) == []


@pytest.mark.parametrize(
    ("change", "rule", "value", "threshold"),
    [
        ({"non_finite_samples": 16000}, "max_non_finite_samples", 16000.0, 0.0),
        ({"duration_s": 0.3, "chars_per_s": 10.0}, "min_duration_s", 0.3, 0.5),
        ({"duration_s": 31.0}, "max_duration_s", 31.0, 30.0),
        ({"wada_snr_db": 3.5}, "min_snr_db", 3.5, 5.0),
        ({"wada_snr_db": None}, "min_snr_db", None, 5.0),
        ({"clipping_ratio": 0.01}, "max_clipping_ratio", 0.01, 0.001),
        ({"silence_ratio": 0.9}, "max_silence_ratio", 0.9, 0.8),
        ({"chars_per_s": 40.0}, "max_chars_per_s", 40.0, 35.0),
        ({"chars_per_s": 1.0}, "min_chars_per_s", 1.0, 3.0),
    ],
)
def test_each_rule_reports_value_and_threshold(
    change: dict, rule: str, value: float | None, threshold: float
) -> None:
    failures = judge(QualityPolicy(), "s", "en", {**GOOD, **change})
    assert _rules(failures)[0] == (rule, value, threshold)
    assert failures[0].message


def test_duration_mismatch_and_bandwidth() -> None:
    policy = QualityPolicy(min_bandwidth_hz=3500.0)
    failures = judge(policy, "s", "en", {**GOOD, "bandwidth_hz": 3400.0}, declared_duration_s=4.0)
    assert _rules(failures) == [
        ("max_duration_mismatch_s", 1.0, 0.5),
        ("min_bandwidth_hz", 3400.0, 3500.0),
    ]


def test_chars_per_second_range_follows_the_language() -> None:
    fast_for_mandarin = {**GOOD, "chars_per_s": 14.0}
    assert judge(QualityPolicy(), "s", "en", fast_for_mandarin) == []
    assert _rules(judge(QualityPolicy(), "s", "zh", fast_for_mandarin)) == [
        ("max_chars_per_s", 14.0, 12.0)
    ]
    assert judge(QualityPolicy(), "s", "xx", {**GOOD, "chars_per_s": 1.5}) == []


def test_source_rules_override_and_add_declared_scores() -> None:
    policy = QualityPolicy.model_validate(
        {
            "sources": {
                "emilia": {"min_dnsmos": 3.0, "min_snr_db": 20.0},
                "wenet": {"min_confidence": 0.95, "keep_subsets": ["S", "DEV"]},
            }
        }
    )
    assert _rules(judge(policy, "emilia", "en", GOOD, extra={"dnsmos": 2.9})) == [
        ("min_dnsmos", 2.9, 3.0)
    ]
    assert _rules(judge(policy, "emilia", "en", {**GOOD, "wada_snr_db": 15.0})) == [
        ("min_snr_db", 15.0, 20.0)
    ]
    assert judge(policy, "other", "en", {**GOOD, "wada_snr_db": 15.0}) == []
    failures = judge(
        policy,
        "wenet",
        "zh",
        {**GOOD, "chars_per_s": 5.0},
        extra={"confidence": 0.8},
        subsets=["L", "M"],
    )
    assert _rules(failures) == [("min_confidence", 0.8, 0.95), ("keep_subsets", None, None)]
    assert (
        judge(
            policy,
            "wenet",
            "zh",
            {**GOOD, "chars_per_s": 5.0},
            extra={"confidence": 1.0},
            subsets=["L", "M", "S"],
        )
        == []
    )


def test_version_is_a_content_hash() -> None:
    assert QualityPolicy().version() == QualityPolicy().version()
    assert QualityPolicy(max_silence_ratio=0.7).version() != QualityPolicy().version()


@pytest.mark.parametrize(
    ("policy_yaml", "field", "problem"),
    [
        ("quality: {min_snr_db: high}", "quality.min_snr_db", "valid number"),
        ("quality: {min_duration_s: 5, max_duration_s: 2}", "quality", "must be below"),
        ("quality: {max_clipping_ratio: 2}", "quality.max_clipping_ratio", "less than or equal"),
        ("quality: {chars_per_s: {en: {min: 1, max: 9}}}", "quality.chars_per_s", "'default'"),
        (
            "quality: {chars_per_s: {default: {min: 9, max: 1}}}",
            "quality.chars_per_s.default",
            "must be below",
        ),
        ("quality: {sources: {nope: {min_dnsmos: 3}}}", "(top level)", "unknown sources: nope"),
        ("quality: {sources: {a: {min_dnsmoss: 3}}}", "quality.sources.a.min_dnsmoss", "Extra"),
        ("quality: {min_snr: 3}", "quality.min_snr", "Extra inputs"),
    ],
)
def test_invalid_policy_is_an_error_naming_the_field(
    tmp_path: Path, policy_yaml: str, field: str, problem: str
) -> None:
    (tmp_path / "voxlake.yaml").write_text(
        "sources:\n- {name: a, kind: emilia, path: x}\n" + policy_yaml + "\n"
    )
    with pytest.raises(ProjectError) as caught:
        load_project(tmp_path)
    lines = str(caught.value).splitlines()
    assert any(ln.strip().startswith(field) and problem in ln for ln in lines), lines
