"""`trainer.data.stream`: streaming a split's code shards through webdataset (and never an
audio shard: with the audio shards deleted, training data streams the same samples), the
shuffle by seed and epoch, and the rank/worker split (disjoint and complete)."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tiny_release import TinyRelease, build_tiny_release
from transformers import PreTrainedTokenizerFast

import trainer.data.stream as streaming
from trainer.data.mixture import MixtureEntry, eval_examples, training_stream
from trainer.data.release_split import load_release_split
from trainer.data.stream import DataCounts, SpeechSample, iter_release_samples
from trainer.text_tokenizer import SpeechVocab


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
    assert sorted(opened) == [str(p) for p in split.code_shards]
    audio = {str(p.resolve()) for p in tiny_release.audio_shards()}
    assert opened and not audio & set(opened)
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
    assert 4 <= split.n_code_shards < 12
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


def _as_tuple(sample: SpeechSample) -> tuple:
    return (
        sample.key,
        sample.utterance_id,
        sample.source,
        sample.text,
        sample.language,
        sample.codes.tolist(),
    )


def test_training_streams_code_shards_only(
    tmp_path: Path, tokenizer_and_vocab: tuple[PreTrainedTokenizerFast, SpeechVocab]
) -> None:
    """The real thing: delete every audio shard (and the audio indexes) of a release, and
    the training data (samples of every split, packed training sequences, evaluation
    examples) is what it was with the audio present."""
    tiny = build_tiny_release(tmp_path)
    tokenizer, vocab = tokenizer_and_vocab
    mixture = [MixtureEntry("asr"), MixtureEntry("tts"), MixtureEntry("interleave")]

    def everything() -> tuple:
        splits = {n: load_release_split(tiny.lake_root, tiny.name, n) for n in ("train", "dev")}
        samples = {
            name: [_as_tuple(s) for s in iter_release_samples(split, seed=3, shuffle_buffer=4)]
            for name, split in splits.items()
        }
        stream = training_stream(splits["train"], tokenizer, vocab, mixture, 256, seed=3)
        sequences = [(s.input_ids.tolist(), s.labels.tolist()) for s in itertools.islice(stream, 6)]
        examples = [e.input_ids for e in eval_examples(splits["dev"], tokenizer, vocab, ["asr"])]
        return samples, sequences, examples

    with_audio = everything()
    assert len(with_audio[0]["train"]) == len(tiny.expected_keys("train"))
    audio_shards = tiny.audio_shards()
    assert audio_shards and all(p.is_file() for p in audio_shards)
    shutil.rmtree(tiny.lake_root / "shards")  # every audio shard and audio index.parquet
    assert not any(p.exists() for p in audio_shards)
    assert everything() == with_audio
