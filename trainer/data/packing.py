"""Packing: examples into fixed-length sequences whose positions restart at 0 per sample.

The model resets attention where positions restart and keeps targets inside a sample
from them. A difference from upstream, on purpose: the padding of a packed sequence
gets positions 0, 1, … (its own "sample") where upstream continues the last sample's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch

from trainer.data.stream import DataCounts
from trainer.data.tasks import Example
from trainer.model import IGNORE_INDEX


@dataclass(frozen=True)
class PackedSequence:
    """Examples packed into one sequence of fixed length.

    ``input_ids``, ``labels`` and ``position_ids`` are 1-D int64 tensors of the sequence
    length; positions restart at 0 for every example and for the padding at the end
    (pad id, labels -100), so each forms its own packed "sample".
    """

    input_ids: torch.Tensor
    labels: torch.Tensor
    position_ids: torch.Tensor
    n_samples: int
    n_real_tokens: int
    keys: tuple[str, ...]


def _pack(examples: list[Example], seq_len: int, pad_id: int) -> PackedSequence:
    """Concatenate examples and pad to `seq_len`."""
    input_ids = [t for e in examples for t in e.input_ids]
    labels = [t for e in examples for t in e.labels]
    positions = [p for e in examples for p in range(len(e.input_ids))]
    n_real = len(input_ids)
    n_pad = seq_len - n_real
    input_ids += [pad_id] * n_pad
    labels += [IGNORE_INDEX] * n_pad
    positions += range(n_pad)
    return PackedSequence(
        input_ids=torch.tensor(input_ids, dtype=torch.long),
        labels=torch.tensor(labels, dtype=torch.long),
        position_ids=torch.tensor(positions, dtype=torch.long),
        n_samples=len(examples),
        n_real_tokens=n_real,
        keys=tuple(e.key for e in examples),
    )


def pack_examples(
    examples: Iterable[Example],
    seq_len: int,
    *,
    pad_id: int,
    per_group: bool = False,
    counts: DataCounts | None = None,
) -> Iterator[PackedSequence]:
    """Pack examples greedily, in order, into sequences of exactly `seq_len` tokens.

    As upstream: an example joins the open sequence if it still fits, otherwise the open
    sequence is padded and emitted and the example opens the next one; an example
    longer than `seq_len` is dropped (upstream skips it; counted in
    ``counts.dropped_too_long``), so no example is ever split or truncated. With
    ``per_group`` each (task, source) packs into sequences of its own, as upstream packs
    each dataset file separately. Open sequences are emitted when the input ends.
    """
    if seq_len < 1:
        raise ValueError(f"seq_len must be positive, got {seq_len}")
    counts = counts if counts is not None else DataCounts()
    open_sequences: dict[tuple[str, str | None] | None, list[Example]] = {}
    open_tokens: dict[tuple[str, str | None] | None, int] = {}
    for example in examples:
        length = len(example.input_ids)
        if length > seq_len:
            counts.dropped_too_long += 1
            continue
        group = (example.task, example.source) if per_group else None
        if open_tokens.get(group, 0) + length > seq_len:
            counts.sequences += 1
            yield _pack(open_sequences[group], seq_len, pad_id)
            open_sequences[group], open_tokens[group] = [], 0
        open_sequences.setdefault(group, []).append(example)
        open_tokens[group] = open_tokens.get(group, 0) + length
    for pending in open_sequences.values():
        if pending:
            counts.sequences += 1
            yield _pack(pending, seq_len, pad_id)
