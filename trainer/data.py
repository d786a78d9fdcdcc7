"""Training data from a release: stream its shards, build VITA-Audio chat examples, pack them.

Pipeline (each step is a function of its own):

1. `load_release_split` reads ``<lake>/releases/<name>/release.json`` and
   ``utterances.parquet`` and resolves the shards holding a split's utterances.
2. `iter_release_samples` streams those shards with ``webdataset`` (members read from
   the tar stream, nothing extracted; the FLAC member is skipped unread), split across
   ranks and dataloader workers, shuffled by seed and epoch.
3. `TASKS` turn a sample into an `Example` (token ids and labels) in upstream's ChatML
   layout (``vita_audio/data/dataset_qwen2.py``): ASR, TTS and the interleaved
   spoken-response task, assistant audio interleaved with its text as upstream's
   ``text_audio_interval`` does (``vita_audio/data/processor/audio_processor.py``).
4. `pack_examples` packs examples into fixed-length sequences whose positions restart at
   0 per sample (the model resets attention and keeps targets inside a sample from them).
5. `training_stream` runs 2–4 endlessly over epochs with a mixture (upstream's
   ``used = min(int(N * ratio), num)`` rule, ``vita_audio/data/dataset_base.py``);
   `eval_examples` gives a split's examples in a fixed order.

Differences from upstream, on purpose: transcripts are encoded with special tokens split
(a transcript holding the text ``<|im_end|>`` stays text, and one holding
``<|audio_N|>`` is skipped and counted), and the padding of a packed sequence gets
positions 0, 1, … (its own "sample") where upstream continues the last sample's.
"""

from __future__ import annotations

import io
import itertools
import random
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Protocol, TypeVar

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
import webdataset as wds
from transformers import PreTrainedTokenizerFast
from webdataset.tariterators import group_by_keys, tar_file_expander

from schemas.release import RELEASE_NAME_PATTERN, Release
from schemas.shards import ShardSampleMeta
from trainer.model import IGNORE_INDEX
from trainer.text_tokenizer import SpeechVocab

SPLITS: tuple[str, ...] = ("train", "dev", "test")
RELEASES_DIR = "releases"
RELEASE_FILE = "release.json"  # the release contract's file names (schemas/release.py)
UTTERANCES_FILE = "utterances.parquet"

ASR_PROMPT = "Convert the speech to text."
TTS_PROMPT = "Convert the text to speech."
DEFAULT_INTERLEAVE_RATIO: tuple[int, ...] = (1, 10, 4, 10)
"""Upstream's default text/audio interval: 1 text token, an audio chunk, then 4 text
tokens and an audio chunk, repeating. An audio number counts its chunk's two markers."""

UPSTREAM_DEFAULT_NUM = 999_999_999
"""Upstream's cap on a dataset's used items when its config gives no ``num``."""

T = TypeVar("T")


# ---------------------------------------------------------------------------
# Release splits


@dataclass(frozen=True)
class ReleaseSplit:
    """One split of a release: the shards to read and the utterance keys to keep.

    Attributes:
        lake_root: the lake root the shard paths were resolved under.
        release: the release's ``release.json``.
        split: ``train``, ``dev`` or ``test``.
        shards: absolute paths of the shards holding at least one utterance of the
            split, sorted.
        source_by_key: the split's utterance keys (WebDataset keys) and their source.
        shard_by_key: the shard (absolute path) each key lies in.
    """

    lake_root: Path
    release: Release
    split: str
    shards: tuple[Path, ...]
    source_by_key: Mapping[str, str] = field(repr=False)
    shard_by_key: Mapping[str, Path] = field(repr=False)

    @property
    def n_utterances(self) -> int:
        """Utterances in the split (dropped duplicates are in no split)."""
        return len(self.source_by_key)

    @property
    def n_shards(self) -> int:
        """Shards holding at least one utterance of the split."""
        return len(self.shards)

    def keys(self, source: str | None = None) -> list[str]:
        """The split's keys, sorted; only those of `source` when given."""
        return sorted(k for k, s in self.source_by_key.items() if source is None or s == source)

    def n_by_source(self) -> dict[str, int]:
        """Utterances per source."""
        return dict(sorted(Counter(self.source_by_key.values()).items()))


def _resolve_shard(lake_root: Path, shard: str, release_file: Path) -> Path:
    """The absolute path of a lake-relative shard path; ValueError if it leaves the lake."""
    relative = PurePosixPath(shard)
    if not shard or "\\" in shard or relative.is_absolute() or ".." in relative.parts:
        raise ValueError(f"{release_file}: shard path {shard!r} is not inside the lake root")
    root = lake_root.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise ValueError(
            f"{release_file}: shard path {shard!r} resolves to {path}, outside the lake root {root}"
        )
    return path


def load_release_split(lake_root: Path, release: str, split: str) -> ReleaseSplit:
    """Read release `release` of the lake at `lake_root` and select `split`.

    FileNotFoundError naming the file when the release (or its utterances file) does
    not exist; ValueError for an unknown split, an invalid release name, a shard path
    that leaves the lake root, an utterance in a shard the release does not list, or
    a key that appears twice in the split.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if not re.fullmatch(RELEASE_NAME_PATTERN, release):
        raise ValueError(f"invalid release name {release!r}")
    lake_root = Path(lake_root)
    folder = lake_root / RELEASES_DIR / release
    release_file = folder / RELEASE_FILE
    if not release_file.is_file():
        raise FileNotFoundError(f"no release {release!r}: {release_file} does not exist")
    description = Release.model_validate_json(release_file.read_text(encoding="utf-8"))
    utterances_file = folder / UTTERANCES_FILE
    if not utterances_file.is_file():
        raise FileNotFoundError(f"release {release!r} has no {utterances_file}")
    shard_paths = {
        s.shard: _resolve_shard(lake_root, s.shard, release_file) for s in description.shards
    }

    table = pq.read_table(utterances_file, columns=["key", "shard", "source", "split"])
    table = table.filter(pc.equal(table["split"], split))
    columns = table.to_pydict()
    source_by_key: dict[str, str] = {}
    shard_by_key: dict[str, Path] = {}
    for key, shard, source in zip(columns["key"], columns["shard"], columns["source"], strict=True):
        if shard not in shard_paths:
            raise ValueError(f"{utterances_file}: {key!r} lies in {shard!r}, not in {release_file}")
        if key in source_by_key:
            raise ValueError(f"{utterances_file}: key {key!r} appears twice in split {split!r}")
        source_by_key[key] = source
        shard_by_key[key] = shard_paths[shard]
    return ReleaseSplit(
        lake_root=lake_root,
        release=description,
        split=split,
        shards=tuple(sorted(set(shard_by_key.values()))),
        source_by_key=source_by_key,
        shard_by_key=shard_by_key,
    )


# ---------------------------------------------------------------------------
# Streaming samples


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


def _worker() -> tuple[int, int]:
    """(worker id, number of workers) of the current torch DataLoader worker, (0, 1) outside."""
    info = torch.utils.data.get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def _skip_flac(member_name: str) -> bool:
    """webdataset member filter: training needs the codes and metadata, not the audio."""
    return not member_name.endswith(".flac")


def _decode_codes(data: bytes, where: str) -> np.ndarray:
    """A ``.codes.npy`` payload as 1-D uint16 codes (no pickle)."""
    codes = np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
    if codes.ndim != 1 or codes.dtype.kind != "u" or codes.dtype.itemsize != 2:
        raise ValueError(f"{where}: codes must be 1-D uint16, got {codes.dtype} {codes.shape}")
    return codes.astype(np.uint16)


def _to_sample(raw: dict, counts: DataCounts) -> SpeechSample | None:
    """Decode a webdataset sample dict; None (counted) when it has no text or no codes."""
    where = f"{raw['__url__']}: {raw['__key__']}"
    if "json" not in raw:
        raise ValueError(f"{where} has no .json member")
    meta = ShardSampleMeta.model_validate_json(raw["json"])
    if meta.text is None or not meta.text.strip():
        counts.skipped_no_text += 1
        return None
    payload = raw.get("codes.npy")
    codes = _decode_codes(payload, where) if payload else np.zeros(0, dtype=np.uint16)
    if codes.size == 0:
        counts.skipped_no_codes += 1
        return None
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
    """Stream this reader's share of a split's samples through webdataset.

    Readers are the ``world_size`` ranks times the DataLoader workers of each. The shard
    list is shuffled with ``seed`` and ``epoch`` (the same order on every reader). With
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
    worker_id, num_workers = _worker()
    readers = world_size * num_workers
    reader = rank * num_workers + worker_id
    shards = list(split.shards)
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
        partial(tar_file_expander, select_files=_skip_flac),
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
    """Whether a webdataset sample is one of the split's utterances (key and shard match)."""
    shard = split.shard_by_key.get(raw["__key__"])
    return shard is not None and str(shard) == raw["__url__"]


def _counted(samples: Iterable[dict], counts: DataCounts) -> Iterator[dict]:
    """Pass samples on, counting them as read."""
    for raw in samples:
        counts.samples_read += 1
        yield raw


# ---------------------------------------------------------------------------
# Chat examples


class UnsafeTextError(ValueError):
    """A transcript encodes to speech token ids (it holds ``<|audio_N|>`` as text)."""


@dataclass(frozen=True)
class Example:
    """One training example: token ids, labels aligned with them (not shifted; -100 =
    untrained), the task that built it, the sample key and its source."""

    input_ids: list[int]
    labels: list[int]
    task: str
    key: str
    source: str | None = None

    def __post_init__(self) -> None:
        if len(self.input_ids) != len(self.labels):
            raise ValueError(
                f"{self.key}: {len(self.input_ids)} input ids but {len(self.labels)} labels"
            )


class ChatEncoder:
    """Builds ChatML turns token by token, as upstream's ``preprocess`` does.

    A turn is ``<|im_start|>`` + ids of the role + ids of ``\\n`` + content +
    ``<|im_end|>`` + ids of ``\\n`` (the chat template is not used, so a tokenizer's
    default system prompt is never injected). System and user turns are untrained; an
    assistant turn trains its content, ``<|im_end|>`` and the newline after it (upstream
    trains that newline too), not its header.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerFast, vocab: SpeechVocab) -> None:
        self.tokenizer = tokenizer
        self.vocab = vocab
        self.newline = self.text("\n")
        self._headers = {
            role: [vocab.im_start, *self.text(role), *self.newline]
            for role in ("system", "user", "assistant")
        }

    def text(self, text: str) -> list[int]:
        """Token ids of plain text; special-token strings in it stay text.

        UnsafeTextError if the text holds speech token strings (``<|audio_N|>``), which
        the tokenizer would turn into audio ids.
        """
        ids = self.tokenizer(text, add_special_tokens=False, split_special_tokens=True).input_ids
        if any(self.vocab.is_audio(token_id) for token_id in ids):
            raise UnsafeTextError(f"text holds speech token strings: {text[:80]!r}")
        return ids

    def audio(self, codes: Sequence[int] | np.ndarray) -> list[int]:
        """What ``<|audio|>`` becomes: begin-of-audio, the codes' ids, end-of-audio."""
        return [self.vocab.begin_of_audio, *self.vocab.audio_ids(codes), self.vocab.end_of_audio]

    def turn(self, role: str, content: list[int], *, trained: bool) -> tuple[list[int], list[int]]:
        """(input ids, labels) of one turn."""
        header = self._headers[role]
        tail = [self.vocab.im_end, *self.newline]
        ids = [*header, *content, *tail]
        if not trained:
            return ids, [IGNORE_INDEX] * len(ids)
        return ids, [IGNORE_INDEX] * len(header) + content + tail


def _check_ratio(ratio: Sequence[int]) -> None:
    """ValueError unless `ratio` alternates text and audio numbers that make progress."""
    if len(ratio) < 2 or len(ratio) % 2:
        raise ValueError(f"interleave ratio needs (text, audio) pairs, got {list(ratio)}")
    if any(n < 1 for n in ratio[0::2]) or any(n < 3 for n in ratio[1::2]):
        raise ValueError(
            f"interleave ratio {list(ratio)}: text numbers must be >= 1 and audio numbers >= 3 "
            "(an audio number counts its chunk's two markers)"
        )


def _chunks(items: list[int], sizes: Sequence[int]) -> list[list[int]]:
    """Cut `items` into chunks of sizes[0], sizes[1], …, then sizes[-1] repeatedly."""
    chunks: list[list[int]] = []
    start = 0
    while start < len(items):
        size = sizes[min(len(chunks), len(sizes) - 1)]
        chunks.append(items[start : start + size])
        start += size
    return chunks


def interleave_text_audio(
    text_ids: list[int],
    audio_ids: list[int],
    *,
    begin_of_audio: int,
    end_of_audio: int,
    ratio: Sequence[int] = DEFAULT_INTERLEAVE_RATIO,
) -> list[int]:
    """Interleave an assistant's text and audio as upstream's ``text_audio_interval``.

    ``ratio`` alternates text and audio numbers (default ``(1, 10, 4, 10)``). The text is
    cut into chunks of the text numbers in turn (then the last number repeatedly), the
    audio into chunks of the audio numbers minus 2 (the ``<|begin_of_audio|>`` and
    ``<|end_of_audio|>`` each chunk gets count in its number). With n = the smaller
    chunk count, the first n − 1 pairs stay as cut and all remaining text and all
    remaining audio form the n-th pair. Each pair is laid out as ``text chunk,
    <|begin_of_audio|>, audio chunk, <|end_of_audio|>``. Without text the result is
    ``<|begin_of_audio|>`` + audio + ``<|end_of_audio|>``.
    """
    _check_ratio(ratio)
    if not audio_ids:
        raise ValueError("interleaving needs at least one audio token")
    if not text_ids:
        return [begin_of_audio, *audio_ids, end_of_audio]
    text_chunks = _chunks(text_ids, ratio[0::2])
    audio_chunks = _chunks(audio_ids, [n - 2 for n in ratio[1::2]])
    n = min(len(text_chunks), len(audio_chunks))
    text_chunks = [*text_chunks[: n - 1], [t for c in text_chunks[n - 1 :] for t in c]]
    audio_chunks = [*audio_chunks[: n - 1], [a for c in audio_chunks[n - 1 :] for a in c]]
    out: list[int] = []
    for text_chunk, audio_chunk in zip(text_chunks, audio_chunks, strict=True):
        out += [*text_chunk, begin_of_audio, *audio_chunk, end_of_audio]
    return out


class TaskBuilder(Protocol):
    """Builds one example of a task from a sample."""

    def __call__(
        self,
        sample: SpeechSample,
        chat: ChatEncoder,
        *,
        system_message: str | None = None,
        interleave_ratio: Sequence[int] = DEFAULT_INTERLEAVE_RATIO,
    ) -> Example: ...


def _example(
    task: str,
    sample: SpeechSample,
    chat: ChatEncoder,
    system_message: str | None,
    user: list[int],
    assistant: list[int],
) -> Example:
    """Join the (optional system,) user and assistant turns of one example."""
    turns = []
    if system_message:
        turns.append(chat.turn("system", chat.text(system_message), trained=False))
    turns.append(chat.turn("user", user, trained=False))
    turns.append(chat.turn("assistant", assistant, trained=True))
    input_ids = [t for ids, _ in turns for t in ids]
    labels = [t for _, labels in turns for t in labels]
    return Example(input_ids, labels, task, sample.key, sample.source)


def asr_example(
    sample: SpeechSample,
    chat: ChatEncoder,
    *,
    system_message: str | None = None,
    interleave_ratio: Sequence[int] = DEFAULT_INTERLEAVE_RATIO,
) -> Example:
    """ASR: user ``Convert the speech to text.\\n<|audio|>``, assistant the transcript.

    The assistant turn is text only, so upstream's interleaving leaves it unchanged.
    """
    user = chat.text(f"{ASR_PROMPT}\n") + chat.audio(sample.codes)
    return _example("asr", sample, chat, system_message, user, chat.text(sample.text.strip()))


def tts_example(
    sample: SpeechSample,
    chat: ChatEncoder,
    *,
    system_message: str | None = None,
    interleave_ratio: Sequence[int] = DEFAULT_INTERLEAVE_RATIO,
) -> Example:
    """TTS: user ``Convert the text to speech.\\n{text}``, assistant ``<|audio|>``.

    As upstream's ``preprocess`` does, the text is put in front of the assistant's audio
    (no newline between) and the two are interleaved by `interleave_ratio`.
    """
    text = sample.text.strip()
    user = chat.text(f"{TTS_PROMPT}\n{text}")
    assistant = interleave_text_audio(
        chat.text(text),
        chat.vocab.audio_ids(sample.codes),
        begin_of_audio=chat.vocab.begin_of_audio,
        end_of_audio=chat.vocab.end_of_audio,
        ratio=interleave_ratio,
    )
    return _example("tts", sample, chat, system_message, user, assistant)


def interleave_example(
    sample: SpeechSample,
    chat: ChatEncoder,
    *,
    system_message: str | None = None,
    interleave_ratio: Sequence[int] = DEFAULT_INTERLEAVE_RATIO,
) -> Example:
    """Spoken response in upstream's QA layout: user ``<|audio|>``, assistant ``text\\n<|audio|>``.

    With one utterance the user's audio and the assistant's audio are the same codes;
    the assistant's ``text\\n`` and audio are interleaved by `interleave_ratio`.
    """
    assistant = interleave_text_audio(
        chat.text(f"{sample.text.strip()}\n"),
        chat.vocab.audio_ids(sample.codes),
        begin_of_audio=chat.vocab.begin_of_audio,
        end_of_audio=chat.vocab.end_of_audio,
        ratio=interleave_ratio,
    )
    user = chat.audio(sample.codes)
    return _example("interleave", sample, chat, system_message, user, assistant)


TASKS: dict[str, TaskBuilder] = {
    "asr": asr_example,
    "tts": tts_example,
    "interleave": interleave_example,
}


# ---------------------------------------------------------------------------
# Packing


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


# ---------------------------------------------------------------------------
# Mixtures


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

    rng = random.Random(f"voxlake-examples/{seed}/{epoch}/{rank}/{_worker()[0]}")
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
    _check_ratio(interleave_ratio)
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
                    f"epoch {epoch} gave rank {rank} (worker {_worker()[0]}) no training "
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
