"""The shards step's pure check: `complete` passes when every tokenized utterance is in
exactly one shard, and fails (naming the ids) when one is missing or repeated."""

from __future__ import annotations

from pathlib import Path

from pipelines.steps.shards import ShardsSummary, check_complete
from schemas import ShardIndexRow


def _row(utterance_id: str, shard: str = "shards/s/u/shard-000000.tar") -> ShardIndexRow:
    return ShardIndexRow(
        key=utterance_id.replace("/", "_"),
        utterance_id=utterance_id,
        source="s",
        unit="s.all.00000",
        shard=shard,
        shard_sha256="0" * 64,
        shard_bytes=10240,
        flac_offset=512,
        flac_size=100,
        codes_offset=1024,
        codes_size=50,
        json_offset=1536,
        json_size=80,
        duration_s=1.0,
        n_codes=13,
    )


def _summary(ids: list[str], n_expected: int) -> ShardsSummary:
    return ShardsSummary(
        unit="s.all.00000",
        folder=Path("shards/s/s.all.00000"),
        rows=[_row(u) for u in ids],
        n_expected=n_expected,
        index_sha256="0" * 64,
    )


def test_complete_passes_when_every_tokenized_utterance_is_in_one_shard() -> None:
    outcome = check_complete(_summary(["s/a", "s/b"], 2), ["s/a", "s/b"])
    assert outcome.passed
    assert outcome.metadata == {
        "accepted_with_codes": 2,
        "in_shards": 2,
        "missing": [],
        "repeated": [],
    }


def test_complete_fails_when_an_utterance_is_missing() -> None:
    outcome = check_complete(_summary(["s/a"], 2), ["s/a", "s/b"])
    assert not outcome.passed and outcome.metadata["missing"] == ["s/b"]


def test_complete_fails_when_an_utterance_is_in_two_shards() -> None:
    outcome = check_complete(_summary(["s/a", "s/a", "s/b"], 2), ["s/a", "s/b"])
    assert not outcome.passed and outcome.metadata["repeated"] == ["s/a"]
