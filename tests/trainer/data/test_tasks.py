"""`trainer.data.tasks`: upstream's text/audio interleaving and the ASR/TTS/interleave ChatML
layouts and label masks against hand-written id lists (byte-level test tokenizer: a
text's ids are its UTF-8 bytes)."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.data.stream import SpeechSample
from trainer.data.tasks import (
    ChatEncoder,
    UnsafeTextError,
    asr_example,
    interleave_example,
    interleave_text_audio,
    tts_example,
)
from trainer.model import IGNORE_INDEX

X = IGNORE_INDEX


def _sample(text: str, n_codes: int, key: str = "k") -> SpeechSample:
    codes = np.arange(100, 100 + n_codes, dtype=np.uint16)
    return SpeechSample(key, f"src/{key}", "src", text, "en", codes)


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
