"""`trainer.data.mixture`: the mixture rule against upstream's modulo-N definition, across
ranks, the endless training stream and the evaluation examples."""

from __future__ import annotations

from collections import Counter

import pytest
from tiny_release import TinyRelease
from transformers import PreTrainedTokenizerFast

from trainer.data.mixture import (
    MixtureEntry,
    eval_examples,
    mixture_counts,
    mixture_examples,
    training_stream,
)
from trainer.data.release_split import load_release_split
from trainer.data.stream import DataCounts
from trainer.data.tasks import TASKS, ChatEncoder
from trainer.text_tokenizer import SpeechVocab


@pytest.mark.parametrize("n_items", [1, 4, 7, 10])
@pytest.mark.parametrize("ratio", [0, 0.5, 1, 2.5])
@pytest.mark.parametrize("num", [None, 3])
def test_mixture_counts_match_upstreams_modulo_rule(
    n_items: int, ratio: float, num: int | None
) -> None:
    counts = mixture_counts(n_items, ratio, num)
    used = min(int(n_items * ratio), 999_999_999 if num is None else num)
    assert counts.used == used
    upstream = Counter(j % n_items for j in range(used))  # upstream: [x % N for x in range(used)]
    assert [counts.copies(i) for i in range(n_items)] == [upstream[i] for i in range(n_items)]


def test_mixture_counts_by_hand() -> None:
    assert [mixture_counts(4, 2.5).copies(i) for i in range(4)] == [3, 3, 2, 2]
    assert [mixture_counts(4, 0.5).copies(i) for i in range(4)] == [1, 1, 0, 0]
    assert [mixture_counts(4, 1).copies(i) for i in range(4)] == [1, 1, 1, 1]
    assert mixture_counts(4, 0).used == 0 and mixture_counts(0, 2.0).used == 0
    with pytest.raises(ValueError):
        MixtureEntry("translate")


def test_mixture_examples_apply_the_rule_across_ranks(
    tiny_release: TinyRelease, chat: ChatEncoder
) -> None:
    split = load_release_split(tiny_release.lake_root, tiny_release.name, "train")
    mixture = [
        MixtureEntry("asr"),
        MixtureEntry("tts", "tiny_zh", 2.5),
        MixtureEntry("interleave", "tiny_en", 0.5),
        MixtureEntry("asr", "tiny_zh", 0),
    ]
    expected: Counter[tuple[str, str]] = Counter()
    with_text = tiny_release.expected_keys("train")
    for entry in mixture:
        keys = split.keys(entry.source)  # sorted; the item without text counts in N
        rule = mixture_counts(len(keys), entry.ratio)
        for index, key in enumerate(keys):
            if key in with_text:
                expected[(entry.task, key)] += rule.copies(index)
    seen: Counter[tuple[str, str]] = Counter()
    for rank in range(2):
        for example in mixture_examples(split, chat, mixture, epoch=0, rank=rank, world_size=2):
            seen[(example.task, example.key)] += 1
    assert seen == +expected
    assert sum(n for (task, _), n in seen.items() if task == "tts") == int(8 * 2.5)


def test_training_stream_is_endless_and_packed(
    tiny_release: TinyRelease, tokenizer_and_vocab: tuple[PreTrainedTokenizerFast, SpeechVocab]
) -> None:
    tokenizer, vocab = tokenizer_and_vocab
    split = load_release_split(tiny_release.lake_root, tiny_release.name, "train")
    counts = DataCounts()
    stream = training_stream(
        split, tokenizer, vocab, [MixtureEntry("asr"), MixtureEntry("tts")], 1024, counts=counts
    )
    sequences = []
    while counts.samples_read <= 2 * split.n_utterances:  # on into the third epoch
        sequences.append(next(stream))
        assert len(sequences) < 100
    keys = {k for s in sequences for k in s.keys}
    assert keys <= tiny_release.expected_keys("train")
    for sequence in sequences:
        assert sequence.input_ids.shape == (1024,)
        assert sequence.position_ids.tolist().count(0) == sequence.n_samples + (
            sequence.n_real_tokens < 1024
        )
        assert (sequence.input_ids[sequence.n_real_tokens :] == vocab.pad).all()
    with pytest.raises(ValueError, match="uses no utterance"):
        next(training_stream(split, tokenizer, vocab, [MixtureEntry("asr", ratio=0)], 64))
    # 41 readers over 16 train samples: the last rank gets none and says so.
    starved = training_stream(
        split, tokenizer, vocab, [MixtureEntry("asr")], 1024, rank=40, world_size=41
    )
    with pytest.raises(RuntimeError, match="no training example"):
        next(starved)


def test_eval_examples_are_deterministic(
    tiny_release: TinyRelease, tokenizer_and_vocab: tuple[PreTrainedTokenizerFast, SpeechVocab]
) -> None:
    tokenizer, vocab = tokenizer_and_vocab
    split = load_release_split(tiny_release.lake_root, tiny_release.name, "dev")
    first = eval_examples(split, tokenizer, vocab, ["asr", "interleave"])
    again = eval_examples(split, tokenizer, vocab, ["asr", "interleave"])
    assert first == again
    keys = sorted(
        tiny_release.expected_keys("dev"), key=lambda k: (str(split.code_shard_by_key[k]), k)
    )
    assert [(e.key, e.task) for e in first] == [(k, t) for k in keys for t in ("asr", "interleave")]
    assert set(TASKS) == {"asr", "tts", "interleave"}
