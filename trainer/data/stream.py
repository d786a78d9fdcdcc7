"""Streaming samples: a release split's code shards read through ``webdataset``, rank and
worker aware.

`iter_release_samples` reads the members of the split's code shards from the tar stream
(nothing extracted): per sample ``<key>.codes.npy`` (the GLM-4-Voice codes) and
``<key>.json`` (`CodeSampleMeta`: transcript, language, source). It never opens an audio
shard: training needs no audio, and a code shard is about 1 % of the size of its audio
shard (the codes are 25 bytes per second of speech). It splits the shards (or, with
fewer shards than readers, the samples) across ranks and dataloader workers, shuffles by
seed and epoch, and yields `SpeechSample`s, counting what it skips in `DataCounts`.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import webdataset as wds
from webdataset.tariterators import group_by_keys, tar_file_expander

from schemas.shards import CodeSampleMeta, ShardFormatError, decode_codes
from trainer.data.release_split import ReleaseSplit

T = TypeVar("T")


@dataclass(frozen=True)
class SpeechSample:
    """One utterance as training reads it: its transcript and its GLM-4-Voice codes."""

    key: str
    utterance_id: str
    source: str
    text: str
    language: str | None
    codes: np.ndarray  # 1-D uint16, 12.5 per second of audio


@dataclass
class DataCounts:
    """What a stream read, skipped and built (counted in the process that iterates it;
    with dataloader workers each worker keeps its own).

    Attributes:
        samples_read: samples of the split this reader got from its shards.
        skipped_no_text: samples without a transcript (None or blank).
        skipped_no_codes: samples without speech codes.
        samples_yielded: samples passed on.
        skipped_unsafe_text: samples whose transcript encodes to audio token ids.
        examples: examples built.
        dropped_too_long: examples longer than the sequence length (dropped, as upstream).
        sequences: packed sequences produced.
    """

    samples_read: int = 0
    skipped_no_text: int = 0
    skipped_no_codes: int = 0
    samples_yielded: int = 0
    skipped_unsafe_text: int = 0
    examples: int = 0
    dropped_too_long: int = 0
    sequences: int = 0


def dataloader_worker() -> tuple[int, int]:
    """(worker id, number of workers) of the current torch DataLoader worker, (0, 1) outside."""
    info = torch.utils.data.get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def _decode_codes(data: bytes, where: str) -> np.ndarray:
    """A ``.codes.npy`` payload as 1-D uint16 codes: the shard contract's codec, no pickle."""
    try:
        return decode_codes(data)
    except ShardFormatError as error:  # a ValueError, as before
        raise ShardFormatError(f"{where}: {error}") from error


def _to_sample(raw: dict, counts: DataCounts) -> SpeechSample | None:
    """Decode a webdataset sample dict; None (counted) when it has no text or no codes."""
    where = f"{raw['__url__']}: {raw['__key__']}"
    if "flac" in raw:
        raise ShardFormatError(f"{where} has a .flac member: training reads code shards only")
    if "json" not in raw:
        raise ShardFormatError(f"{where} has no .json member")
    meta = CodeSampleMeta.model_validate_json(raw["json"])
    if meta.text is None or not meta.text.strip():
        counts.skipped_no_text += 1
        return None
    payload = raw.get("codes.npy")
    codes = _decode_codes(payload, where) if payload else np.zeros(0, dtype=np.uint16)
    if codes.size == 0:
        counts.skipped_no_codes += 1
        return None
    if codes.size != meta.n_codes:
        raise ShardFormatError(f"{where}: {codes.size} codes, its .json says {meta.n_codes}")
    return SpeechSample(
        key=raw["__key__"],
        utterance_id=meta.utterance_id,
        source=meta.source,
        text=meta.text,
        language=meta.language,
        codes=codes,
    )


def buffer_shuffle(items: Iterable[T], buffer_size: int, rng: random.Random) -> Iterator[T]:
    """Shuffle a stream with a buffer of `buffer_size` items (no shuffle when below 2)."""
    if buffer_size < 2:
        yield from items
        return
    buffer: list[T] = []
    for item in items:
        buffer.append(item)
        if len(buffer) >= buffer_size:
            index = rng.randrange(len(buffer))
            buffer[index], buffer[-1] = buffer[-1], buffer[index]
            yield buffer.pop()
    rng.shuffle(buffer)
    yield from buffer


def iter_release_samples(
    split: ReleaseSplit,
    *,
    rank: int = 0,
    world_size: int = 1,
    seed: int = 0,
    epoch: int = 0,
    shuffle_buffer: int = 0,
    shuffle_shards: bool = True,
    counts: DataCounts | None = None,
) -> Iterator[SpeechSample]:
    """Stream this reader's share of a split's samples from its code shards through webdataset.

    Readers are the ``world_size`` ranks times the DataLoader workers of each. The code
    shard list is shuffled with ``seed`` and ``epoch`` (the same order on every reader). With
    at least one shard per reader, reader r reads shards ``r, r + readers, …``; with
    fewer shards every reader reads all of them and keeps the split's samples whose
    index (in that common order) is r modulo readers, so small releases still feed
    every rank. Either way the readers' samples are disjoint and together are the split.
    Samples of other splits are dropped; samples without text or codes are skipped and
    counted in `counts`. ``shuffle_buffer`` > 1 shuffles samples within a buffer.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank} world_size={world_size}")
    counts = counts if counts is not None else DataCounts()
    worker_id, num_workers = dataloader_worker()
    readers = world_size * num_workers
    reader = rank * num_workers + worker_id
    shards = list(split.code_shards)
    if shuffle_shards:
        random.Random(f"voxlake-shards/{seed}/{epoch}").shuffle(shards)
    by_shard = len(shards) >= readers
    mine = shards[reader::readers] if by_shard else shards
    if not mine:
        return

    def in_split(samples: Iterable[dict]) -> Iterator[dict]:
        for index, raw in enumerate(s for s in samples if _belongs(split, s)):
            if by_shard or index % readers == reader:
                yield raw

    pipeline = wds.DataPipeline(
        partial(_open_shards, mine),
        tar_file_expander,
        group_by_keys,
        in_split,
    )
    samples = (_to_sample(raw, counts) for raw in _counted(pipeline, counts))
    rng = random.Random(f"voxlake-samples/{seed}/{epoch}/{reader}")
    for sample in buffer_shuffle((s for s in samples if s is not None), shuffle_buffer, rng):
        counts.samples_yielded += 1
        yield sample


def _open_shards(paths: Iterable[Path]) -> Iterator[dict]:
    """webdataset's shard source, opening each shard only while its tar stream is read.

    (webdataset's own opener leaves the files for the garbage collector to close.)
    """
    for path in paths:
        with path.open("rb") as stream:
            yield {"url": str(path), "stream": stream}


def _belongs(split: ReleaseSplit, raw: dict) -> bool:
    """Whether a webdataset sample is one of the split's utterances (key and code shard match)."""
    shard = split.code_shard_by_key.get(raw["__key__"])
    return shard is not None and str(shard) == raw["__url__"]


def _counted(samples: Iterable[dict], counts: DataCounts) -> Iterator[dict]:
    """Pass samples on, counting them as read."""
    for raw in samples:
        counts.samples_read += 1
        yield raw
