"""Shared fixtures of the training data tests: the byte-level demo tokenizer over the tiny
release's texts and a `ChatEncoder` over it (one of each for the whole package).

The tokenizer is a demo tokenizer with no BPE merges (vocabulary 259 = 256 bytes +
3 specials), so a text's ids are its UTF-8 bytes, one token each."""

from __future__ import annotations

import pytest
from tiny_release import TinyRelease
from transformers import PreTrainedTokenizerFast

from trainer.data.tasks import ChatEncoder
from trainer.text_tokenizer import SpeechVocab, load_text_tokenizer, train_demo_text_tokenizer


@pytest.fixture(scope="package")
def tokenizer_and_vocab(
    tmp_path_factory: pytest.TempPathFactory, tiny_release: TinyRelease
) -> tuple[PreTrainedTokenizerFast, SpeechVocab]:
    texts = [u.text for u in tiny_release.utterances if u.text]
    folder = train_demo_text_tokenizer(texts, tmp_path_factory.mktemp("bytes_tok"), 259)
    return load_text_tokenizer(folder)


@pytest.fixture(scope="package")
def chat(tokenizer_and_vocab: tuple[PreTrainedTokenizerFast, SpeechVocab]) -> ChatEncoder:
    return ChatEncoder(*tokenizer_and_vocab)
