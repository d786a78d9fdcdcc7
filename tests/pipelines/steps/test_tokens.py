"""The tokens step's pure check: `code_rate` passes when every audio shard sample has codes,
exactly `expected_code_count(n_samples)` of them, and fails on a wrong count or a
sample without codes."""

from __future__ import annotations

from pathlib import Path

from inference.glm4voice import expected_code_count
from pipelines.steps.tokens import TokenizedSample, TokensSummary, check_code_rate
from schemas import CodeIndexRow


def _row(utterance_id: str, n_codes: int) -> CodeIndexRow:
    return CodeIndexRow(
        key=utterance_id.replace("/", "__"),
        utterance_id=utterance_id,
        source="s",
        unit="s.all.00000",
        shard="codes/x/s/s.all.00000/codes-000000.tar",
        shard_sha256="0" * 64,
        shard_bytes=10240,
        codes_offset=512,
        codes_size=2 * n_codes + 128,
        json_offset=2048,
        json_size=100,
        duration_s=1.0,
        n_codes=n_codes,
        audio_shard="shards/s/s.all.00000/audio-000000.tar",
        tokenizer_sha256="f" * 64,
        tokenizer_is_demo=True,
    )


def _summary(rows: list[tuple[str, int, int]], n_audio_samples: int) -> TokensSummary:
    return TokensSummary(
        unit="s.all.00000",
        folder=Path("codes"),
        index_sha256="0" * 64,
        audio_index_sha256="1" * 64,
        rows=[_row(u, c) for u, _, c in rows],
        samples=[TokenizedSample(u, n, c) for u, n, c in rows],
        n_audio_samples=n_audio_samples,
        audio_s=0.0,
        tokenizer_sha256="f" * 64,
        tokenizer_is_demo=True,
    )


def _right(utterance_id: str, n_samples: int) -> tuple[str, int, int]:
    return utterance_id, n_samples, expected_code_count(n_samples)


def test_code_rate_passes_when_every_row_has_its_expected_count() -> None:
    outcome = check_code_rate(_summary([_right("s/a", 16000), _right("s/b", 48000)], 2))
    assert outcome.passed
    assert outcome.metadata == {
        "samples": 2,
        "audio_samples": 2,
        "wrong_count": 0,
        "examples": [],
    }


def test_code_rate_fails_on_a_wrong_count() -> None:
    wrong = ("s/b", 48000, expected_code_count(48000) + 1)
    outcome = check_code_rate(_summary([_right("s/a", 16000), wrong], 2))
    assert not outcome.passed
    assert outcome.metadata["wrong_count"] == 1 and outcome.metadata["examples"] == ["s/b"]


def test_code_rate_fails_when_an_audio_sample_has_no_codes() -> None:
    outcome = check_code_rate(_summary([_right("s/a", 16000)], 2))
    assert not outcome.passed and outcome.metadata["wrong_count"] == 0


def test_code_rate_passes_on_an_empty_unit() -> None:
    assert check_code_rate(_summary([], 0)).passed
