"""Tests of the text tokenizer: upstream's 20 specials and 16384 audio tokens, the demo
tokenizer (English and Mandarin, ChatML, byte-identical re-training), loading a folder
without speech tokens, errors, and the folder hash."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Tokenizer

from trainer.text_tokenizer import (
    DEMO_MARKER_FILE,
    NUM_AUDIO_TOKENS,
    SPECIAL_TOKENS,
    SpeechVocab,
    _demo_backend,
    extend_tokenizer,
    load_text_tokenizer,
    text_tokenizer_sha256,
    train_demo_text_tokenizer,
)

TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "speech data needs careful curation",
    "今天天气很好",
    "我们一起学习语音识别",
    "naïve café, 2025!",
] * 20
BPE_VOCAB = 400


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_demo_text_tokenizer(TEXTS, tmp_path_factory.mktemp("demo_tok"), BPE_VOCAB)


@pytest.fixture(scope="module")
def demo(demo_dir: Path) -> tuple[PreTrainedTokenizerFast, SpeechVocab]:
    return load_text_tokenizer(demo_dir)


def _plain_tokenizer() -> PreTrainedTokenizerFast:
    """A Qwen-like BPE without speech tokens (as a user's Qwen2.5 folder would be)."""
    return PreTrainedTokenizerFast(
        tokenizer_object=_demo_backend(TEXTS, 300),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )


def _foreign_tokenizer() -> PreTrainedTokenizerFast:
    """A tokenizer without Qwen's chat tokens."""
    backend = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate("abc")}, merges=[]))
    return PreTrainedTokenizerFast(tokenizer_object=backend)


def test_special_tokens_are_upstreams_twenty_in_order() -> None:
    assert len(SPECIAL_TOKENS) == 20 and len(set(SPECIAL_TOKENS)) == 20
    assert SPECIAL_TOKENS[9:11] == ("<|begin_of_audio|>", "<|end_of_audio|>")
    assert SPECIAL_TOKENS[-3:] == ("<|image|>", "<|video|>", "<|audio|>")
    assert SPECIAL_TOKENS[:3] == ("<|begin_of_image|>", "<|end_of_image|>", "<|context_of_image|>")
    assert "<|context_of_audio|>" not in SPECIAL_TOKENS  # upstream does not add it


def test_specials_then_contiguous_audio_ids(demo: tuple[PreTrainedTokenizerFast, SpeechVocab]):
    tokenizer, vocab = demo
    marker = json.loads((Path(tokenizer.name_or_path) / DEMO_MARKER_FILE).read_text())
    bpe_size = marker["bpe_vocab_size"]
    # As on Qwen2.5 (151665 + 20 = 151685): the 20 specials right after the BPE vocabulary,
    # then <|audio_0|> … <|audio_16383|>.
    assert tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS)) == list(
        range(bpe_size, bpe_size + 20)
    )
    assert vocab.audio_offset == bpe_size + 20
    assert vocab.num_audio_tokens == NUM_AUDIO_TOKENS == 16384
    assert vocab.vocab_size == len(tokenizer) == bpe_size + 20 + 16384
    audio = tokenizer.convert_tokens_to_ids([f"<|audio_{i}|>" for i in range(16384)])
    assert audio == list(range(vocab.audio_offset, vocab.audio_offset + 16384))
    assert (vocab.begin_of_audio, vocab.end_of_audio, vocab.audio_tag) == (
        bpe_size + 9,
        bpe_size + 10,
        bpe_size + 19,
    )
    assert (vocab.pad, vocab.im_start, vocab.im_end) == (0, 1, 2)
    decoder = tokenizer.added_tokens_decoder
    assert decoder[vocab.begin_of_audio].special and not decoder[vocab.audio_offset].special


def test_audio_token_round_trip(demo: tuple[PreTrainedTokenizerFast, SpeechVocab]) -> None:
    tokenizer, vocab = demo
    ids = tokenizer("<|audio_123|>", add_special_tokens=False).input_ids
    assert ids == [vocab.audio_offset + 123] == vocab.audio_ids([123])
    assert tokenizer.decode(ids) == "<|audio_123|>"
    wrapped = [vocab.begin_of_audio, *vocab.audio_ids([0, 16383]), vocab.end_of_audio]
    # Audio tokens are normal added tokens: skipping special tokens keeps them.
    assert tokenizer.decode(wrapped, skip_special_tokens=True) == "<|audio_0|><|audio_16383|>"
    assert vocab.is_audio(vocab.audio_offset) and vocab.is_audio(vocab.audio_offset + 16383)
    assert not vocab.is_audio(vocab.audio_offset - 1)
    assert not vocab.is_audio(vocab.audio_offset + 16384)
    with pytest.raises(ValueError, match="16384"):
        vocab.audio_ids([16384])


def test_demo_tokenizer_files_chat_and_languages(demo_dir: Path, demo) -> None:
    tokenizer, _ = demo
    names = {p.name for p in demo_dir.iterdir()}
    assert {"tokenizer.json", "tokenizer_config.json", "README.md", DEMO_MARKER_FILE} <= names
    marker = json.loads((demo_dir / DEMO_MARKER_FILE).read_text())
    assert marker["demo"] is True and marker["n_texts"] == len(TEXTS)
    assert "demo" in (demo_dir / "README.md").read_text().lower()
    assert marker["bpe_vocab_size"] <= BPE_VOCAB
    for text in ("the quick brown fox", "今天天气很好", "混合 text 你好!"):
        assert tokenizer.decode(tokenizer(text, add_special_tokens=False).input_ids) == text
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<|im_end|>", "<|endoftext|>")
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": "你好"}], tokenize=False, add_generation_prompt=True
    )
    assert chat == "<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n"


def test_demo_tokenizer_is_byte_identical(demo_dir: Path, tmp_path: Path) -> None:
    again = train_demo_text_tokenizer(iter(TEXTS), tmp_path / "again", BPE_VOCAB)
    files = sorted(p.name for p in demo_dir.iterdir())
    assert files == sorted(p.name for p in again.iterdir())
    for name in files:
        assert (demo_dir / name).read_bytes() == (again / name).read_bytes(), name
    # Re-training builds new hash maps; separate processes were also checked by hand (four
    # runs, identical files), which costs too much import time for a unit test.


def test_demo_vocab_size_floor(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="259"):
        train_demo_text_tokenizer(TEXTS, tmp_path, 100)


def test_extend_is_idempotent() -> None:
    tokenizer = extend_tokenizer(_plain_tokenizer())
    size = len(tokenizer)
    offset = SpeechVocab.from_tokenizer(tokenizer).audio_offset
    extend_tokenizer(tokenizer)
    assert len(tokenizer) == size
    assert SpeechVocab.from_tokenizer(tokenizer).audio_offset == offset


def test_extend_refuses_scattered_audio_tokens() -> None:
    partial = _plain_tokenizer()
    partial.add_tokens(["<|audio_5|>"])
    with pytest.raises(ValueError, match="missing"):
        extend_tokenizer(partial)
    reversed_ids = _plain_tokenizer()
    reversed_ids.add_tokens([f"<|audio_{i}|>" for i in reversed(range(16384))])
    with pytest.raises(ValueError, match="not contiguous"):
        extend_tokenizer(reversed_ids)


def test_load_extends_a_folder_without_speech_tokens(tmp_path: Path) -> None:
    # A Qwen2Tokenizer folder as a user's Qwen2.5 one is (bytes only, no merges here).
    folder = tmp_path / "qwen_like"
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    qwen = Qwen2Tokenizer(vocab={c: i for i, c in enumerate(alphabet)}, merges=[])
    qwen.add_tokens(["<|im_start|>", "<|im_end|>"], special_tokens=True)
    qwen.save_pretrained(str(folder))
    assert len(qwen) == 259  # 256 bytes, <|endoftext|>, <|im_start|>, <|im_end|>
    before = text_tokenizer_sha256(folder)
    tokenizer, vocab = load_text_tokenizer(folder)
    assert isinstance(tokenizer, Qwen2Tokenizer)
    assert (vocab.pad, vocab.im_start, vocab.im_end) == (256, 257, 258)
    assert vocab.audio_offset == 259 + 20
    assert tokenizer.convert_tokens_to_ids("<|audio_16383|>") == vocab.audio_offset + 16383
    assert text_tokenizer_sha256(folder) == before  # extended in memory only


def test_load_errors_name_the_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_text_tokenizer(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken"):
        load_text_tokenizer(broken)
    foreign = tmp_path / "foreign"
    _foreign_tokenizer().save_pretrained(str(foreign))
    with pytest.raises(ValueError, match=r"foreign.*<\|im_start\|>"):
        load_text_tokenizer(foreign)


def test_tokenizer_sha256_follows_content(demo_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(demo_dir, copy)
    assert text_tokenizer_sha256(copy) == text_tokenizer_sha256(demo_dir)
    config = copy / "tokenizer_config.json"
    config.write_text(config.read_text().replace("<|im_end|>", "<|endoftext|>", 1))
    changed = text_tokenizer_sha256(copy)
    assert changed != text_tokenizer_sha256(demo_dir)
    (copy / "README.md").rename(copy / "README.txt")
    assert text_tokenizer_sha256(copy) not in (changed, text_tokenizer_sha256(demo_dir))
