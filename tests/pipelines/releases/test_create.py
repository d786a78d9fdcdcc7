"""Release selection rules: exact duplicates dropped by PCM hash, splits by speaker, each
utterance with its audio shard and its code shard."""

from __future__ import annotations

import polars as pl

from pipelines.releases.create import _split_rows, assign_split
from schemas import ReleaseSpec
from schemas.release import ReleaseUtterance


def _frame() -> pl.DataFrame:
    rows = []
    for i in range(200):
        rows.append(
            {
                "utterance_id": f"a/{i:03d}",
                "key": f"a__{i:03d}",
                "shard": "shards/a/a.x.00000/audio-000000.tar",
                "codes_shard": "codes/0123456789abcdef/a/a.x.00000/codes-000000.tar",
                "source": "a",
                "unit": "a.x.00000",
                "language": "en",
                "speaker": f"spk{i % 60}",
                "duration_s": 2.0,
                "pcm_sha256": f"h{i}",
                "policy_version": "p",
                "tokenizer_sha256": "t",
                "tokenizer_is_demo": True,
            }
        )
    # The same audio in another source (e.g. a corpus copied into a custom folder).
    rows.append(
        {**rows[5], "utterance_id": "b/copy", "key": "b__copy", "source": "b", "speaker": None}
    )
    rows.append({**rows[7], "utterance_id": "0/first", "key": "0__first", "source": "0"})
    return pl.DataFrame(rows).sort("utterance_id")


def test_dedup_keeps_the_first_id_and_records_the_others() -> None:
    out = {r["utterance_id"]: r for r in _split_rows(_frame(), ReleaseSpec(name="r", dedup=True))}
    assert out["b/copy"]["duplicate_of"] == "a/005" and out["b/copy"]["split"] is None
    # "0/first" sorts before "a/007": it is kept and the original becomes its duplicate.
    assert out["a/007"]["duplicate_of"] == "0/first" and out["0/first"]["split"] is not None
    kept = [r for r in out.values() if r["duplicate_of"] is None]
    assert len(kept) == 200
    no_dedup = _split_rows(_frame(), ReleaseSpec(name="r"))
    assert all(r["duplicate_of"] is None for r in no_dedup) and len(no_dedup) == 202


def test_each_row_keeps_its_audio_shard_and_its_code_shard() -> None:
    frame = _frame()
    rows = _split_rows(frame, ReleaseSpec(name="r", dedup=True))
    assert [r["utterance_id"] for r in rows] == frame["utterance_id"].to_list()
    for row, selected in zip(rows, frame.to_dicts(), strict=True):
        assert (row["key"], row["shard"], row["codes_shard"]) == (
            selected["key"],
            selected["shard"],
            selected["codes_shard"],
        )
    # Every field of a release row, and nothing else.
    assert set(rows[0]) == set(ReleaseUtterance.model_fields)


def test_speakers_never_straddle_splits_and_splits_are_stable() -> None:
    spec = ReleaseSpec(name="r", dev=0.2, test=0.2)
    first = _split_rows(_frame(), spec)
    assert first == _split_rows(_frame(), spec)
    splits_of: dict[tuple[str, str], set[str]] = {}
    for row in first:
        if row["speaker"] is not None:
            splits_of.setdefault((row["source"], row["speaker"]), set()).add(row["split"])
    assert all(len(s) == 1 for s in splits_of.values())
    assert {r["split"] for r in first} == {"train", "dev", "test"}


def test_split_shares_follow_the_fractions() -> None:
    counts = {"train": 0, "dev": 0, "test": 0}
    for i in range(20_000):
        counts[assign_split(f"speaker-{i}", dev=0.1, test=0.05)] += 1
    assert abs(counts["dev"] / 20_000 - 0.1) < 0.01
    assert abs(counts["test"] / 20_000 - 0.05) < 0.01
