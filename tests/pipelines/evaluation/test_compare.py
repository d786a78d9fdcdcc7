"""Comparison helpers: the breakdown buckets match the catalogue views', and naming an
evaluation that does not exist says what does."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.evaluation.compare import (
    ComparisonError,
    duration_bucket,
    resolve_evaluation,
    snr_bucket,
)
from pipelines.project import init_project
from schemas import ProjectConfig


def test_buckets_follow_the_catalogue_views() -> None:
    assert [snr_bucket(v) for v in (12.3, 15.0, -3.0, None)] == [
        "10–15 dB",
        "15–20 dB",
        "-5–0 dB",
        None,
    ]
    assert [duration_bucket(v) for v in (0.4, 2.0, 7.5, 45.0, None)] == [
        "0–2 s",
        "2–5 s",
        "5–10 s",
        "≥ 30 s",
        None,
    ]


def test_an_unknown_evaluation_is_a_clear_error(tmp_path: Path) -> None:
    project = init_project(tmp_path / "p", ProjectConfig())
    with pytest.raises(ComparisonError, match=r"no evaluation matches 'eval-x'.*none"):
        resolve_evaluation(project, "eval-x")
