"""The release step's pure parts: `shards_intact` fails on any audio or code shard problem
(listing at most 20), and an existing release matches a spec only with the same selection
and split."""

from __future__ import annotations

import datetime as dt

from pipelines.steps.release import MAX_PROBLEMS_SHOWN, check_shards_intact, matches_spec
from schemas import Release, ReleaseSpec


def test_shards_intact_passes_without_problems() -> None:
    outcome = check_shards_intact([])
    assert outcome.passed and outcome.metadata == {"problems": []}


def test_shards_intact_fails_and_lists_at_most_twenty_problems() -> None:
    problems = [
        f"release r1: {kind} shard {folder}/s/u/{prefix}-{i:06d}.tar is missing"
        for i in range(15)
        for kind, folder, prefix in (("audio", "shards", "audio"), ("code", "codes/ab", "codes"))
    ]
    outcome = check_shards_intact(problems)
    assert not outcome.passed and outcome.severity == "error"
    assert outcome.metadata["problems"] == problems[:MAX_PROBLEMS_SHOWN]


def _release(**fields: object) -> Release:
    values: dict[str, object] = {
        "name": "r1",
        "created_at": dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
        "where": "TRUE",
        "split_by": "speaker",
        "dev_fraction": 0.1,
        "test_fraction": 0.1,
        "dedup": True,
        "n_utterances": 0,
        "duration_s": 0.0,
        "n_duplicates_dropped": 0,
        "policy_versions": [],
        "tokenizer_sha256": [],
        "tokenizer_is_demo": True,
        "code_version": "test",
        "shards": [],
        "code_shards": [],
    }
    values.update(fields)
    return Release.model_validate(values)


def test_an_existing_release_matches_only_its_own_spec() -> None:
    spec = ReleaseSpec(name="r1", where="TRUE", dev=0.1, test=0.1, dedup=True)
    assert matches_spec(_release(), spec)
    assert not matches_spec(_release(where="source = 'libri'"), spec)
    assert not matches_spec(_release(dedup=False), spec)
