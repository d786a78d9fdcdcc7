"""The tokens step's pure check: `code_rate` passes when every accepted utterance has a row
with exactly `expected_code_count(n_samples)` codes, and fails on a wrong count or a
missing row."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from inference.glm4voice import expected_code_count
from pipelines.steps.tokens import TokensSummary, check_code_rate


def _summary(rows: list[tuple[str, int, int]], n_accepted: int) -> TokensSummary:
    frame = pl.DataFrame(
        {
            "utterance_id": [u for u, _, _ in rows],
            "n_samples": [n for _, n, _ in rows],
            "n_codes": [c for _, _, c in rows],
        },
        schema={"utterance_id": pl.String, "n_samples": pl.Int64, "n_codes": pl.Int64},
    )
    return TokensSummary(
        unit="s.all.00000",
        path=Path("tokens.parquet"),
        sha256="0" * 64,
        frame=frame,
        n_accepted=n_accepted,
        audio_s=0.0,
        tokenizer_sha256="f" * 64,
        tokenizer_is_demo=True,
    )


def _right(utterance_id: str, n_samples: int) -> tuple[str, int, int]:
    return utterance_id, n_samples, expected_code_count(n_samples)


def test_code_rate_passes_when_every_row_has_its_expected_count() -> None:
    outcome = check_code_rate(_summary([_right("s/a", 16000), _right("s/b", 48000)], 2))
    assert outcome.passed
    assert outcome.metadata == {"rows": 2, "accepted": 2, "wrong_count": 0, "examples": []}


def test_code_rate_fails_on_a_wrong_count() -> None:
    wrong = ("s/b", 48000, expected_code_count(48000) + 1)
    outcome = check_code_rate(_summary([_right("s/a", 16000), wrong], 2))
    assert not outcome.passed
    assert outcome.metadata["wrong_count"] == 1 and outcome.metadata["examples"] == ["s/b"]


def test_code_rate_fails_when_an_accepted_utterance_has_no_row() -> None:
    outcome = check_code_rate(_summary([_right("s/a", 16000)], 2))
    assert not outcome.passed and outcome.metadata["wrong_count"] == 0


def test_code_rate_passes_on_an_empty_unit() -> None:
    assert check_code_rate(_summary([], 0)).passed
