"""Connector for VITA-Audio training JSONL: chat records whose `<|audio|>` tags name audio files.

Each line is `{"messages": [{"role", "content"}...], "audios": [paths]}`; every
`<|audio|>` tag in the messages, in order, consumes the next entry of
`audios`, and each entry is one utterance (`L<line>_A<k>`). Its text is what
the conversation says the audio contains:

- an audio that is the user's whole turn (after an optional instruction line
  such as `Convert the speech to text.`) answered by an assistant turn with no
  audio: the assistant's text (ASR);
- an audio inside an assistant message: the text before the tag, or, when
  that is empty, the user's text after `Convert the text to speech.` (TTS);
- anything else: no text.

A line that is not JSON, or whose tag count differs from `len(audios)`, is
one `malformed_record` item named `L<line>`. Audio paths are relative to the
file's folder; `check_item` rejects those that escape it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.sources.base import (
    ItemGroup,
    read_header_durations,
    read_text_lines,
    rejected_item,
    source_root,
)
from schemas import InventoryItem, RejectReason
from schemas.prompts import AUDIO_TAG
from schemas.sources import VitaJsonlOptions

ASR_INSTRUCTION = "convert the speech to text."
TTS_INSTRUCTION = "convert the text to speech."


class _MalformedLine(ValueError):
    """A line whose structure is not a VITA record."""


@dataclass(frozen=True)
class _Message:
    role: str
    content: str

    @property
    def n_audio(self) -> int:
        return self.content.count(AUDIO_TAG)


@dataclass(frozen=True)
class _AudioRef:
    """One `<|audio|>` tag: the message holding it and its index among that message's tags."""

    message: int
    tag: int


def _parse(text: str) -> tuple[list[_Message], list[str]]:
    """The messages and audio paths of one line; `_MalformedLine` when it is not a record."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise _MalformedLine(f"not JSON ({error.msg})") from None
    if not isinstance(record, dict):
        raise _MalformedLine(f"a JSON {type(record).__name__}, not an object")
    messages, audios = record.get("messages"), record.get("audios", [])
    if not isinstance(messages, list):
        raise _MalformedLine("no 'messages' list")
    if not isinstance(audios, list) or not all(isinstance(a, str) and a for a in audios):
        raise _MalformedLine("'audios' is not a list of paths")
    parsed: list[_Message] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise _MalformedLine(f"message {index} has no text 'content'")
        role = message.get("role", "")
        if not isinstance(role, str):
            raise _MalformedLine(f"message {index}: 'role' is not a string")
        parsed.append(_Message(role=role, content=message["content"]))
    n_tags = sum(m.n_audio for m in parsed)
    if n_tags != len(audios):
        raise _MalformedLine(f"{n_tags} {AUDIO_TAG} tags but {len(audios)} audios")
    return parsed, audios


def _split_instruction(content: str) -> tuple[str | None, str]:
    """`(instruction line, rest)` when the content starts with a one-line instruction."""
    first, newline, rest = content.strip().partition("\n")
    if newline and first.strip() and AUDIO_TAG not in first:
        return first.strip(), rest.strip()
    return None, content.strip()


def _is_audio_only(content: str) -> bool:
    """True when the content is one audio tag, after an optional instruction line."""
    _, rest = _split_instruction(content)
    return rest == AUDIO_TAG or content.strip() == AUDIO_TAG


def _previous(messages: list[_Message], index: int, role: str) -> _Message | None:
    for message in reversed(messages[:index]):
        if message.role == role:
            return message
    return None


def _next_message(messages: list[_Message], index: int) -> _Message | None:
    return messages[index + 1] if index + 1 < len(messages) else None


def _text_and_task(messages: list[_Message], ref: _AudioRef) -> tuple[str | None, str]:
    """The transcript the conversation gives one audio, and the task it serves."""
    message = messages[ref.message]
    if message.role == "user":
        reply = _next_message(messages, ref.message)
        if message.n_audio == 1 and _is_audio_only(message.content) and reply is not None \
                and reply.role == "assistant":
            instruction, _ = _split_instruction(message.content)
            if reply.n_audio == 0:
                task = "asr" if (instruction or "").lower() == ASR_INSTRUCTION else "other"
                return reply.content.strip() or None, task
            if instruction is None:
                return None, "qa"
        return None, "other"
    if message.role == "assistant":
        before = message.content.split(AUDIO_TAG)[ref.tag].strip()
        request = _previous(messages, ref.message, "user")
        if before:
            asked_by_audio = request is not None and _is_audio_only(request.content)
            return before, "qa" if asked_by_audio else "other"
        if request is not None and request.n_audio == 0:
            instruction, rest = _split_instruction(request.content)
            if (instruction or "").lower() == TTS_INSTRUCTION:
                return rest or None, "tts"
        return None, "other"
    return None, "other"


def _audio_refs(messages: list[_Message]) -> list[_AudioRef]:
    return [
        _AudioRef(message=m, tag=t)
        for m, message in enumerate(messages)
        for t in range(message.n_audio)
    ]


def _line_items(
    line_no: int, text: str | None, error: str | None, file_name: str, language: str | None
) -> list[InventoryItem]:
    """The items of one JSONL line: one per audio, or one rejected item for the line."""
    line_id = f"L{line_no}"
    origin = f"{file_name}:{line_no}"
    if text is None:
        return [rejected_item(line_id, RejectReason.invalid_text_encoding,
                              error or f"{origin} is not UTF-8",
                              extra={"line": line_no}, origin=origin)]
    try:
        messages, audios = _parse(text)
    except _MalformedLine as problem:
        return [rejected_item(line_id, RejectReason.malformed_record,
                              f"{origin}: {problem}", extra={"line": line_no}, origin=origin)]
    items = []
    for k, (audio, ref) in enumerate(zip(audios, _audio_refs(messages), strict=True)):
        utterance_text, task = _text_and_task(messages, ref)
        extra: dict[str, Any] = {
            "line": line_no,
            "role": messages[ref.message].role,
            "message": ref.message,
            "task": task,
        }
        items.append(InventoryItem(
            native_id=f"{line_id}_A{k}",
            audio_path=audio,
            text=utterance_text,
            language=language,
            extra=extra,
            origin=origin,
        ))
    return items


def inventory(path: Path, options: VitaJsonlOptions) -> Iterator[ItemGroup]:
    """Yield the file's utterances in line order, one group per line (prefix = file stem).

    Lines are independent, but a line's audios are one conversation and stay in
    one unit; units are packed line by line up to the limits, with the durations
    the FLAC and WAV headers state (other formats count 0 s).
    """
    if path.is_dir():
        raise ValueError(f"a vita_jsonl source's path must be the JSONL file, not a folder: {path}")
    language = options.language.lower() if options.language else None
    root = source_root(path)
    for line_no, text, error in read_text_lines(path):
        if text is not None and not text.strip():
            continue
        items = _line_items(line_no, text, error, path.name, language)
        yield read_header_durations(ItemGroup(prefix=path.stem, items=items), root)
