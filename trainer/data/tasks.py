"""Task layouts: a sample as a training `Example` in upstream's ChatML layout.

`TASKS` turn a `SpeechSample` into token ids and labels as upstream's
``vita_audio/data/dataset_qwen2.py`` does: ASR, TTS and the interleaved spoken-response
task, assistant audio interleaved with its text as upstream's ``text_audio_interval``
does (``vita_audio/data/processor/audio_processor.py``). `ChatEncoder` builds the ChatML
turns token by token; the prompts are the contract's (`schemas.prompts`).

A difference from upstream, on purpose: transcripts are encoded with special tokens split
(a transcript holding the text ``<|im_end|>`` stays text, and one holding
``<|audio_N|>`` raises `UnsafeTextError`, which the callers skip and count).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from transformers import PreTrainedTokenizerFast

from schemas.prompts import ASR_PROMPT, TTS_PROMPT
from trainer.data.stream import SpeechSample
from trainer.model import IGNORE_INDEX
from trainer.text_tokenizer import SpeechVocab

DEFAULT_INTERLEAVE_RATIO: tuple[int, ...] = (1, 10, 4, 10)
"""Upstream's default text/audio interval: 1 text token, an audio chunk, then 4 text
tokens and an audio chunk, repeating. An audio number counts its chunk's two markers."""


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


def check_interleave_ratio(ratio: Sequence[int]) -> None:
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
    check_interleave_ratio(ratio)
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
