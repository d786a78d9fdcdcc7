"""Mixtures: which samples each task uses how often, and the training and evaluation streams.

`mixture_counts` is upstream's ``used = min(int(N * ratio), num)`` rule
(``vita_audio/data/dataset_base.py``); `training_stream` runs streaming, task layouts
and packing endlessly over epochs under a mixture; `eval_examples` gives a split's
examples in a fixed order.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerFast

from trainer.data.packing import PackedSequence, pack_examples
from trainer.data.release_split import ReleaseSplit
from trainer.data.stream import DataCounts, buffer_shuffle, dataloader_worker, iter_release_samples
from trainer.data.tasks import (
    DEFAULT_INTERLEAVE_RATIO,
    TASKS,
    ChatEncoder,
    Example,
    UnsafeTextError,
    check_interleave_ratio,
)
from trainer.text_tokenizer import SpeechVocab

UPSTREAM_DEFAULT_NUM = 999_999_999
"""Upstream's cap on a dataset's used items when its config gives no ``num``."""


@dataclass(frozen=True)
class MixtureEntry:
    """One dataset of a mixture: a task over a source's utterances (all sources when
    ``source`` is None), used ``ratio`` times (upstream's ``ratio``), at most ``num``
    items (upstream's ``num``; None = upstream's default 999999999)."""

    task: str
    source: str | None = None
    ratio: float = 1.0
    num: int | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; known: {', '.join(TASKS)}")
        if self.ratio < 0:
            raise ValueError(f"mixture ratio must be >= 0, got {self.ratio}")
        if self.num is not None and self.num < 0:
            raise ValueError(f"mixture num must be >= 0, got {self.num}")


@dataclass(frozen=True)
class MixtureCounts:
    """How upstream's rule uses a dataset of ``n_items``: ``used`` indices j → item j mod N."""

    n_items: int
    used: int

    def copies(self, index: int) -> int:
        """How often item `index` (0-based, in the dataset's order) is used."""
        if not 0 <= index < self.n_items:
            raise IndexError(f"item {index} of {self.n_items}")
        return self.used // self.n_items + (index < self.used % self.n_items)


def mixture_counts(n_items: int, ratio: float, num: int | None = None) -> MixtureCounts:
    """Upstream's rule: ``used = min(int(N * ratio), num)``, indices ``j % N`` for j < used.

    Ratio 0 (or num 0, or no items) uses nothing, ratio 0.5 the first half, ratio 2.5
    every item twice and the first half a third time. ``num`` None is upstream's default.
    """
    if n_items < 0 or ratio < 0 or (num is not None and num < 0):
        raise ValueError(f"need n_items, ratio, num >= 0, got {n_items}, {ratio}, {num}")
    if n_items == 0 or ratio == 0:
        return MixtureCounts(n_items, 0)
    cap = UPSTREAM_DEFAULT_NUM if num is None else num
    return MixtureCounts(n_items, min(int(n_items * float(ratio)), cap))


@dataclass(frozen=True)
class _EntryPlan:
    """A mixture entry with its counts and each of its items' rank in sorted key order."""

    entry: MixtureEntry
    counts: MixtureCounts
    rank_by_key: Mapping[str, int]


def _plan_mixture(split: ReleaseSplit, mixture: Sequence[MixtureEntry]) -> list[_EntryPlan]:
    """The entries' items (the split's keys of their source, sorted) and their counts."""
    plans = []
    for entry in mixture:
        keys = split.keys(entry.source)
        counts = mixture_counts(len(keys), entry.ratio, entry.num)
        plans.append(_EntryPlan(entry, counts, {key: i for i, key in enumerate(keys)}))
    return plans


def mixture_examples(
    split: ReleaseSplit,
    chat: ChatEncoder,
    mixture: Sequence[MixtureEntry],
    *,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
    seed: int = 0,
    interleave_ratio: Sequence[int] = DEFAULT_INTERLEAVE_RATIO,
    system_message: str | None = None,
    shuffle_buffer: int = 1000,
    counts: DataCounts | None = None,
) -> Iterator[Example]:
    """One epoch of this reader's examples under `mixture`, shuffled within ``shuffle_buffer``.

    This reader's samples (`iter_release_samples`, shuffled by ``seed`` and ``epoch``) each
    get, per entry covering their source, the copies the rule gives them: item i of an
    entry's N items (the split's keys of its source, sorted; samples later skipped for
    lack of text still count in N) appears ``used // N + (i < used % N)`` times, which
    over all readers is upstream's ``[j % N for j in range(used)]``. The example shuffle
    spreads repeated copies and tasks apart.
    """
    counts = counts if counts is not None else DataCounts()
    plans = _plan_mixture(split, mixture)
    samples = iter_release_samples(
        split,
        rank=rank,
        world_size=world_size,
        seed=seed,
        epoch=epoch,
        shuffle_buffer=shuffle_buffer,
        counts=counts,
    )

    def examples() -> Iterator[Example]:
        for sample in samples:
            try:
                built = [
                    (
                        TASKS[plan.entry.task](
                            sample,
                            chat,
                            system_message=system_message,
                            interleave_ratio=interleave_ratio,
                        ),
                        copies,
                    )
                    for plan in plans
                    if (copies := _copies(plan, sample.key))
                ]
            except UnsafeTextError:
                counts.skipped_unsafe_text += 1
                continue
            for example, copies in built:
                counts.examples += copies
                yield from itertools.repeat(example, copies)

    rng = random.Random(f"voxlake-examples/{seed}/{epoch}/{rank}/{dataloader_worker()[0]}")
    yield from buffer_shuffle(examples(), shuffle_buffer, rng)


def _copies(plan: _EntryPlan, key: str) -> int:
    """How many copies of sample `key` an entry uses (0 when the entry does not cover it)."""
    index = plan.rank_by_key.get(key)
    return 0 if index is None or plan.counts.used == 0 else plan.counts.copies(index)


def training_stream(
    split: ReleaseSplit,
    tokenizer: PreTrainedTokenizerFast,
    vocab: SpeechVocab,
    mixture: Sequence[MixtureEntry],
    seq_len: int,
    *,
    rank: int = 0,
    world_size: int = 1,
    seed: int = 0,
    interleave_ratio: Sequence[int] = DEFAULT_INTERLEAVE_RATIO,
    system_message: str | None = None,
    shuffle_buffer: int = 1000,
    start_epoch: int = 0,
    counts: DataCounts | None = None,
) -> Iterator[PackedSequence]:
    """Packed training sequences for this rank, endlessly, epoch after epoch.

    Epoch e is `mixture_examples` with ``epoch=e`` (from ``start_epoch`` on; the epoch
    changes the shard, sample and example shuffles); the examples are packed into
    ``seq_len`` sequences per (task, source), as upstream packs each dataset on its own.
    ValueError if the mixture uses nothing; RuntimeError if an epoch gives this reader no
    example (rather than looping forever).
    """
    check_interleave_ratio(interleave_ratio)
    if not any(plan.counts.used for plan in _plan_mixture(split, mixture)):
        raise ValueError(f"the mixture uses no utterance of split {split.split!r}")
    counts = counts if counts is not None else DataCounts()
    chat = ChatEncoder(tokenizer, vocab)
    if system_message:
        chat.text(system_message)  # an unusable system message fails here, not per sample

    def examples() -> Iterator[Example]:
        for epoch in itertools.count(start_epoch):
            produced = 0
            for example in mixture_examples(
                split,
                chat,
                mixture,
                epoch=epoch,
                rank=rank,
                world_size=world_size,
                seed=seed,
                interleave_ratio=interleave_ratio,
                system_message=system_message,
                shuffle_buffer=shuffle_buffer,
                counts=counts,
            ):
                produced += 1
                yield example
            if produced == 0:
                raise RuntimeError(
                    f"epoch {epoch} gave rank {rank} (worker {dataloader_worker()[0]}) no training "
                    f"example from split {split.split!r} of release {split.release.name!r}"
                )

    yield from pack_examples(examples(), seq_len, pad_id=vocab.pad, per_group=True, counts=counts)


def eval_examples(
    split: ReleaseSplit,
    tokenizer: PreTrainedTokenizerFast,
    vocab: SpeechVocab,
    tasks: Sequence[str],
    *,
    system_message: str | None = None,
    interleave_ratio: Sequence[int] = DEFAULT_INTERLEAVE_RATIO,
    counts: DataCounts | None = None,
    max_samples: int | None = None,
) -> list[Example]:
    """Every sample's example for each of `tasks`, in a fixed order (shards sorted, samples in
    shard order, tasks in the given order); no shuffle, no split across ranks. With
    `max_samples`, reading stops after that many samples gave examples (a large held-out
    split is not read whole for a capped evaluation)."""
    unknown = [task for task in tasks if task not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {', '.join(unknown)}; known: {', '.join(TASKS)}")
    counts = counts if counts is not None else DataCounts()
    chat = ChatEncoder(tokenizer, vocab)
    out: list[Example] = []
    for sample in iter_release_samples(split, shuffle_shards=False, counts=counts):
        try:
            built = [
                TASKS[task](
                    sample, chat, system_message=system_message, interleave_ratio=interleave_ratio
                )
                for task in tasks
            ]
        except UnsafeTextError:
            counts.skipped_unsafe_text += 1
            continue
        counts.examples += len(built)
        out += built
        if max_samples is not None and len(out) >= max_samples * len(tasks):
            break
    return out
