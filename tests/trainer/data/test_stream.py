"""`trainer.data.stream`: streaming a split through webdataset, the shuffle by seed and
epoch, and the rank/worker split (disjoint and complete)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pytest
from tiny_release import TinyRelease

import trainer.data.stream as streaming
from trainer.data.release_split import load_release_split
from trainer.data.stream import DataCounts, iter_release_samples


def test_streaming_reads_the_split_through_webdataset(
    tiny_release: TinyRelease, monkeypatch: pytest.MonkeyPatch
) -> None:
    import webdataset.tariterators

    assert streaming.tar_file_expander is webdataset.tariterators.tar_file_expander
    opened: list[str] = []

    def spying_expander(sources: Iterable[dict], **kwargs: Any) -> Iterator[dict]:
        for source in sources:
            opened.append(source["url"])
            yield from webdataset.tariterators.tar_file_expander([source], **kwargs)

    monkeypatch.setattr(streaming, "tar_file_expander", spying_expander)
    split = load_release_split(tiny_release.lake_root, tiny_release.name, "train")
    counts = DataCounts()
    samples = list(iter_release_samples(split, counts=counts))
    assert sorted(opened) == [str(p) for p in split.shards]
    assert {s.key for s in samples} == tiny_release.expected_keys("train")
    assert len(samples) == len({s.key for s in samples})
    assert (counts.samples_read, counts.skipped_no_text, counts.samples_yielded) == (16, 1, 15)
    by_key = tiny_release.by_key
    for sample in samples:
        expected = by_key[sample.key]
        assert sample.text == expected.text and sample.source == expected.source
        assert sample.codes.dtype == np.uint16
        np.testing.assert_array_equal(sample.codes, expected.codes)
        assert sample.utterance_id == expected.utterance_id


def test_shuffle_follows_seed_and_epoch(tiny_release: TinyRelease) -> None:
    split = load_release_split(tiny_release.lake_root, tiny_release.name, "train")

    def order(seed: int, epoch: int) -> list[str]:
        stream = iter_release_samples(split, seed=seed, epoch=epoch, shuffle_buffer=8)
        return [s.key for s in stream]

    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(0, 1)
    assert sorted(order(0, 1)) == sorted(order(3, 5)) == sorted(tiny_release.expected_keys("train"))


@pytest.mark.parametrize(("world_size", "workers"), [(2, 1), (2, 2), (12, 1)])
def test_ranks_and_workers_split_the_samples(
    tiny_release: TinyRelease, monkeypatch: pytest.MonkeyPatch, world_size: int, workers: int
) -> None:
    # 8 train shards: 2 and 2x2 readers split by shard, 12 readers by sample index.
    split = load_release_split(tiny_release.lake_root, tiny_release.name, "train")
    assert 4 <= split.n_shards < 12
    seen: list[str] = []
    for rank in range(world_size):
        for worker in range(workers):
            monkeypatch.setattr(streaming, "dataloader_worker", lambda w=worker: (w, workers))
            counts = DataCounts()
            keys = [
                s.key
                for s in iter_release_samples(
                    split, rank=rank, world_size=world_size, seed=1, epoch=2, counts=counts
                )
            ]
            assert counts.samples_read > 0  # even 12 readers over 8 shards all get data
            seen += keys
    assert sorted(seen) == sorted(tiny_release.expected_keys("train"))  # disjoint, complete
