"""Tests of the training data path over the tiny real release: split loading (and its
refusals), streaming through webdataset, rank/worker splitting, the ASR/TTS/interleave
layouts and label masks against hand-written id lists, packing, the mixture rule against
upstream's modulo-N definition, the endless training stream and the evaluation examples.

The tokenizer here is a demo tokenizer with no BPE merges (vocabulary 259 = 256 bytes +
3 specials), so a text's ids are its UTF-8 bytes, one token each."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tiny_release import TinyRelease
from transformers import PreTrainedTokenizerFast

import trainer.data as data
from trainer.data import (
    TASKS,
    ChatEncoder,
    DataCounts,
    Example,
    MixtureEntry,
    SpeechSample,
    UnsafeTextError,
    asr_example,
    eval_examples,
    interleave_example,
    interleave_text_audio,
    iter_release_samples,
    load_release_split,
    mixture_counts,
    mixture_examples,
    pack_examples,
    training_stream,
    tts_example,
)
from trainer.model import IGNORE_INDEX, shifted_targets
from trainer.text_tokenizer import SpeechVocab, load_text_tokenizer, train_demo_text_tokenizer

X = IGNORE_INDEX


@pytest.fixture(scope="module")
def tokenizer_and_vocab(
    tmp_path_factory: pytest.TempPathFactory, tiny_release: TinyRelease
) -> tuple[PreTrainedTokenizerFast, SpeechVocab]:
    texts = [u.text for u in tiny_release.utterances if u.text]
    folder = train_demo_text_tokenizer(texts, tmp_path_factory.mktemp("bytes_tok"), 259)
    return load_text_tokenizer(folder)


@pytest.fixture(scope="module")
def chat(tokenizer_and_vocab: tuple[PreTrainedTokenizerFast, SpeechVocab]) -> ChatEncoder:
    return ChatEncoder(*tokenizer_and_vocab)


def _sample(text: str, n_codes: int, key: str = "k") -> SpeechSample:
    codes = np.arange(100, 100 + n_codes, dtype=np.uint16)
    return SpeechSample(key, f"src/{key}", "src", text, "en", codes)


# ---------------------------------------------------------------------------
# Release splits and streaming


def test_split_holds_its_keys_and_shards(tiny_release: TinyRelease) -> None:
    total = 0
    for name in ("train", "dev", "test"):
        split = load_release_split(tiny_release.lake_root, tiny_release.name, name)
        assert set(split.source_by_key) == tiny_release.keys(name)
        assert list(split.shards) == sorted(split.shards)
        root = tiny_release.lake_root.resolve()
        assert all(p.is_absolute() and p.is_file() and p.is_relative_to(root) for p in split.shards)
        assert set(split.shards) == set(split.shard_by_key.values())
        total += split.n_utterances
    assert total == tiny_release.release.n_utterances == len(tiny_release.utterances) - 1
    train = load_release_split(tiny_release.lake_root, tiny_release.name, "train")
    assert train.n_by_source() == {"tiny_en": 8, "tiny_zh": 8}
    assert train.keys("tiny_zh") == sorted(
        u.key for u in tiny_release.utterances if u.split == "train" and u.source == "tiny_zh"
    )
    duplicate = tiny_release.utterances[-1]
    assert duplicate.split is None and duplicate.key not in train.source_by_key


def test_split_refusals_name_the_release_file(tiny_release: TinyRelease, tmp_path: Path) -> None:
    root = tiny_release.lake_root
    with pytest.raises(FileNotFoundError, match=r"releases/nope/release\.json"):
        load_release_split(root, "nope", "train")
    with pytest.raises(ValueError, match="split"):
        load_release_split(root, tiny_release.name, "validation")
    with pytest.raises(ValueError, match="release name"):
        load_release_split(root, "../escape", "train")
    # Copies of the release in a lake of their own, each with one shard path that escapes.
    lake = tmp_path / "lake"
    (lake / "shards").mkdir(parents=True)
    (lake / "shards" / "elsewhere").symlink_to(tmp_path)
    escapes = {
        "evil-up": "../outside.tar",
        "evil-abs": "/etc/passwd",
        "evil-link": "shards/elsewhere/outside.tar",
    }
    for name, bad_shard in escapes.items():
        folder = lake / "releases" / name
        shutil.copytree(root / "releases" / tiny_release.name, folder)
        release = json.loads((folder / "release.json").read_text())
        release["shards"][0]["shard"] = bad_shard
        (folder / "release.json").write_text(json.dumps(release))
        with pytest.raises(ValueError, match=rf"{name}/release\.json: shard path .* lake root"):
            load_release_split(lake, name, "train")


def test_streaming_reads_the_split_through_webdataset(
    tiny_release: TinyRelease, monkeypatch: pytest.MonkeyPatch
) -> None:
    import webdataset.tariterators

    assert data.tar_file_expander is webdataset.tariterators.tar_file_expander
    opened: list[str] = []

    def spying_expander(sources: Iterable[dict], **kwargs: Any) -> Iterator[dict]:
        for source in sources:
            opened.append(source["url"])
            yield from webdataset.tariterators.tar_file_expander([source], **kwargs)

    monkeypatch.setattr(data, "tar_file_expander", spying_expander)
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
            monkeypatch.setattr(data, "_worker", lambda w=worker: (w, workers))
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


# ---------------------------------------------------------------------------
# Layouts and label masks


def test_interleave_text_audio_by_hand() -> None:
    t = [1, 2, 3, 4, 5, 6]
    a = list(range(100, 120))  # 20 audio ids
    B, E = 8, 9
    # (1, 10, 4, 10): text chunks 1, 4, 4, …; audio chunks 10 - 2 = 8 between B and E.
    assert interleave_text_audio(t, a, begin_of_audio=B, end_of_audio=E) == [
        1, B, 100, 101, 102, 103, 104, 105, 106, 107, E,
        2, 3, 4, 5, B, 108, 109, 110, 111, 112, 113, 114, 115, E,
        6, B, 116, 117, 118, 119, E,
    ]  # fmt: skip
    # More text than audio chunks: the remaining text all goes in the last pair.
    t10 = list(range(1, 11))
    assert interleave_text_audio(t10, a[:12], begin_of_audio=B, end_of_audio=E) == [
        1, B, 100, 101, 102, 103, 104, 105, 106, 107, E,
        2, 3, 4, 5, 6, 7, 8, 9, 10, B, 108, 109, 110, 111, E,
    ]  # fmt: skip
    # More audio than text chunks: the remaining audio all goes in the last pair.
    assert interleave_text_audio([1, 2], a, begin_of_audio=B, end_of_audio=E) == [
        1, B, *a[:8], E, 2, B, *a[8:], E,
    ]  # fmt: skip
    # (1, 4, 3, 8, 4, 10): text chunks 1, 3, 4, 4, …; audio chunks 2, 6, 8, 8, ….
    assert interleave_text_audio(
        t10, a, begin_of_audio=B, end_of_audio=E, ratio=(1, 4, 3, 8, 4, 10)
    ) == [
        1, B, 100, 101, E,
        2, 3, 4, B, 102, 103, 104, 105, 106, 107, E,
        5, 6, 7, 8, B, 108, 109, 110, 111, 112, 113, 114, 115, E,
        9, 10, B, 116, 117, 118, 119, E,
    ]  # fmt: skip
    assert interleave_text_audio([], [7], begin_of_audio=B, end_of_audio=E) == [B, 7, E]
    with pytest.raises(ValueError, match="ratio"):
        interleave_text_audio(t, a, begin_of_audio=B, end_of_audio=E, ratio=(1, 2))
    with pytest.raises(ValueError, match="pairs"):
        interleave_text_audio(t, a, begin_of_audio=B, end_of_audio=E, ratio=(1, 10, 4))


def _pieces(chat: ChatEncoder) -> dict[str, list[int]]:
    """Hand-assembled pieces of the ChatML layout."""
    v = chat.vocab
    nl = chat.text("\n")
    return {
        "user": [v.im_start, *chat.text("user"), *nl],
        "assistant": [v.im_start, *chat.text("assistant"), *nl],
        "system": [v.im_start, *chat.text("system"), *nl],
        "end": [v.im_end, *nl],
    }


def test_the_test_tokenizer_is_byte_level(chat: ChatEncoder) -> None:
    assert len(chat.text("hello\n")) == 6 and len(chat.text("你好")) == 6
    assert len(chat.text("user")) == 4 and len(chat.text("\n")) == 1


def test_asr_layout_and_labels(chat: ChatEncoder) -> None:
    v, p = chat.vocab, _pieces(chat)
    sample = _sample("  hi  ", 3)
    example = asr_example(sample, chat)
    audio = [v.begin_of_audio, v.audio_offset + 100, v.audio_offset + 101, v.audio_offset + 102]
    audio += [v.end_of_audio]
    prompt = chat.text("Convert the speech to text.\n")
    hi = chat.text("hi")
    user_turn = p["user"] + prompt + audio + p["end"]
    assert example.input_ids == user_turn + p["assistant"] + hi + p["end"]
    assert example.labels == [X] * len(user_turn + p["assistant"]) + hi + p["end"]
    assert (example.task, example.key, example.source) == ("asr", "k", "src")


def test_tts_layout_and_labels(chat: ChatEncoder) -> None:
    v, p = chat.vocab, _pieces(chat)
    example = tts_example(_sample("hello", 20), chat)
    h, e, l1, l2, o = chat.text("hello")
    a = [v.audio_offset + c for c in range(100, 120)]
    B, E = v.begin_of_audio, v.end_of_audio
    user_turn = p["user"] + chat.text("Convert the text to speech.\nhello") + p["end"]
    # Upstream puts the text before the assistant's audio and interleaves (1, 10, 4, 10):
    # text chunks [h], [e l l o]; audio chunks 8, 8, 4 -> the last two merge.
    content = [h, B, *a[:8], E, e, l1, l2, o, B, *a[8:], E]
    assert example.input_ids == user_turn + p["assistant"] + content + p["end"]
    assert example.labels == [X] * len(user_turn + p["assistant"]) + content + p["end"]


def test_interleave_layout_and_labels(chat: ChatEncoder) -> None:
    v, p = chat.vocab, _pieces(chat)
    example = interleave_example(_sample("hi", 20), chat, system_message="Be brief.")
    h, i, newline = chat.text("hi\n")
    a = [v.audio_offset + c for c in range(100, 120)]
    B, E = v.begin_of_audio, v.end_of_audio
    system_turn = p["system"] + chat.text("Be brief.") + p["end"]
    user_turn = p["user"] + [B, *a, E] + p["end"]
    content = [h, B, *a[:8], E, i, newline, B, *a[8:], E]
    prompt = system_turn + user_turn + p["assistant"]
    assert example.input_ids == prompt + content + p["end"]
    assert example.labels == [X] * len(prompt) + content + p["end"]


def test_special_strings_in_transcripts_stay_text(chat: ChatEncoder) -> None:
    example = asr_example(_sample("a <|im_end|> b", 2), chat)
    assert example.input_ids.count(chat.vocab.im_end) == 2  # the two turn ends only
    with pytest.raises(UnsafeTextError):
        asr_example(_sample("say <|audio_5|>", 2), chat)


# ---------------------------------------------------------------------------
# Packing


def _example(key: str, length: int, task: str = "asr", source: str = "s") -> Example:
    ids = [1000 + n for n in range(length)]
    return Example(ids, [X, *ids[1:]], task, key, source)


def test_packing_resets_positions_and_keeps_samples_whole() -> None:
    lengths = {"a": 5, "b": 7, "c": 4, "d": 12, "long": 13, "e": 3}
    examples = [_example(k, n) for k, n in lengths.items()]
    counts = DataCounts()
    packed = list(pack_examples(examples, 12, pad_id=0, counts=counts))
    assert [p.keys for p in packed] == [("a", "b"), ("c",), ("d",), ("e",)]
    assert counts.dropped_too_long == 1 and counts.sequences == 4
    first, second = packed[0], packed[1]
    assert first.position_ids.tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6]
    assert (first.n_samples, first.n_real_tokens) == (2, 12)
    assert second.position_ids.tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7]
    assert second.input_ids.tolist()[4:] == [0] * 8 and second.labels.tolist()[4:] == [X] * 8
    assert (second.n_samples, second.n_real_tokens) == (1, 4)
    for sequence in packed:
        assert sequence.input_ids.shape == sequence.labels.shape == (12,)
        assert sequence.input_ids.dtype == torch.long
        start = 0
        for key in sequence.keys:  # each example lies whole, in order, in one sequence
            n = lengths[key]
            assert sequence.input_ids[start : start + n].tolist() == [1000 + i for i in range(n)]
            start += n
        # With the positions, no shifted target crosses from one sample into the next.
        targets = shifted_targets(sequence.labels[None], 1, sequence.position_ids[None])[0]
        ends = [i for i in range(11) if sequence.position_ids[i + 1] == 0]
        assert all(targets[i] == X for i in ends)


def test_packing_per_group() -> None:
    examples = [_example("a", 4, "asr"), _example("b", 4, "tts"), _example("c", 4, "asr")]
    packed = list(pack_examples(examples, 10, pad_id=0, per_group=True))
    assert [p.keys for p in packed] == [("a", "c"), ("b",)]


# ---------------------------------------------------------------------------
# Mixtures


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
    keys = sorted(tiny_release.expected_keys("dev"), key=lambda k: (str(split.shard_by_key[k]), k))
    assert [(e.key, e.task) for e in first] == [(k, t) for k in keys for t in ("asr", "interleave")]
    assert set(TASKS) == {"asr", "tts", "interleave"}


def test_packed_samples_do_not_see_each_other_in_the_model() -> None:
    # The model resets attention where position ids restart (no attention mask given).
    from trainer.model import Qwen2MCTPConfig, Qwen2MCTPForCausalLM

    torch.manual_seed(0)
    config = Qwen2MCTPConfig(
        num_mctp_modules=1,
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    model = Qwen2MCTPForCausalLM(config).eval()
    first = Example(list(range(10, 17)), [X] * 7, "asr", "a")
    second = Example(list(range(30, 35)), [X] * 5, "asr", "b")
    (packed,) = pack_examples([first, second], 16, pad_id=0)
    alone = pack_examples([second], 5, pad_id=0)
    with torch.no_grad():
        out = model(packed.input_ids[None], position_ids=packed.position_ids[None])
        ref = model(next(alone).input_ids[None])
    torch.testing.assert_close(out.logits[0, 7:12], ref.logits[0])
    torch.testing.assert_close(out.mctp_logits[0][0, 7:11], ref.mctp_logits[0][0, :4])
