"""WenetSpeech connector: stream `WenetSpeech.json`, one item per segment, one group per recording.

The metadata file of the full corpus is over 1 GB, so it is parsed as a stream
with `ijson` (the C backend when installed): only one recording (`audios[i]`
with its segments) is in memory at a time. Each segment is a cut of a long
Opus recording by `begin_time`/`end_time`; the manifest step checks the range
against the recording's header, so a recording is grouped whole and decoded
once later. Audio is never opened here.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import ijson

from pipelines.sources.base import ItemGroup, rejected_item
from schemas import InventoryItem, RejectReason
from schemas.sources import WenetSpeechOptions

LANGUAGE = "zh"

# Characters the official WenetSpeech tools strip from `text`.
STRIPPED_TEXT_CHARS = str.maketrans("", "", " \u00a0Ω")

# `audio/<split>/<source>/B000NN/<aid>.opus`: the folder under `audio/` is the split.
PATH_SPLITS = frozenset({"train", "dev", "test_net", "test_meeting"})

# When the path does not name a split, the evaluation subsets do; anything else is train.
SUBSET_SPLITS = {"DEV": "dev", "TEST_NET": "test_net", "TEST_MEETING": "test_meeting"}

# Per-recording keys copied into each segment's `extra`.
RECORDING_EXTRA_KEYS = ("source", "tags", "batch_id")


def _ijson_backend() -> ModuleType:
    # The yajl2 C backend parses several times faster than the pure-Python one.
    try:
        return ijson.get_backend("yajl2_c")
    except ImportError:
        return ijson


def clean_text(raw: str) -> str:
    """Text as the official tools use it: ASCII spaces, no-break spaces and `Ω` removed."""
    return raw.translate(STRIPPED_TEXT_CHARS)


def _path_split(audio_path: str) -> str | None:
    parts = audio_path.split("/")
    if len(parts) > 2 and parts[0] == "audio" and parts[1] in PATH_SPLITS:
        return parts[1]
    return None


def _subset_split(subsets: list[str]) -> str:
    for subset in subsets:
        if subset in SUBSET_SPLITS:
            return SUBSET_SPLITS[subset]
    return "train"


def split_of(audio_path: str, subsets: list[str]) -> str:
    """The split a segment belongs to: the folder after `audio/`, else its subsets."""
    return _path_split(audio_path) or _subset_split(subsets)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@dataclass(frozen=True)
class _Recording:
    """What every segment of one `audios[i]` entry shares."""

    aid: str
    path: str
    path_split: str | None  # None when the path names no split: the subsets decide
    extra: dict[str, Any]


def _segment_item(segment: Any, index: int, recording: _Recording) -> InventoryItem:
    """One segment as an item; a segment whose fields cannot be used is `malformed_record`."""
    if not isinstance(segment, dict):
        return rejected_item(
            f"{recording.aid}:S{index}", RejectReason.malformed_record,
            f"segment {index} of {recording.aid!r} is not an object",
            audio_path=recording.path, language=LANGUAGE, extra=recording.extra,
        )
    sid = segment.get("sid")
    native_id = sid if isinstance(sid, str) and sid else f"{recording.aid}:S{index}"
    subsets = segment.get("subsets")
    subsets = [s for s in subsets if isinstance(s, str)] if isinstance(subsets, list) else []
    raw_text = segment.get("text")
    begin_s = _number(segment.get("begin_time"))
    end_s = _number(segment.get("end_time"))
    extra = dict(recording.extra)
    extra["confidence"] = _number(segment.get("confidence"))
    extra["raw_text"] = raw_text if isinstance(raw_text, str) else None
    fields: dict[str, Any] = {
        "audio_path": recording.path,
        "language": LANGUAGE,
        "split": recording.path_split or _subset_split(subsets),
        "subsets": subsets,
        "extra": extra,
    }
    problems = []
    if native_id != sid:
        problems.append("no 'sid'")
    if not isinstance(raw_text, str):
        problems.append("no 'text' string")
    if begin_s is None or end_s is None:
        problems.append("'begin_time'/'end_time' are not numbers")
    if problems:
        return rejected_item(
            native_id, RejectReason.malformed_record,
            f"segment {index} of {recording.aid!r}: {', '.join(problems)}", **fields,
        )
    assert begin_s is not None and end_s is not None and isinstance(raw_text, str)
    if not (math.isfinite(begin_s) and math.isfinite(end_s)) or begin_s < 0 or end_s <= begin_s:
        # The row keeps the declared start; a length of zero or less is no length at all.
        return rejected_item(
            native_id, RejectReason.invalid_timing,
            f"{native_id}: begin_time {begin_s} s, end_time {end_s} s",
            text=clean_text(raw_text), offset_s=begin_s, **fields,
        )
    return InventoryItem(
        native_id=native_id,
        text=clean_text(raw_text),
        offset_s=begin_s,
        # Rounded so that 24.4 - 20.08 reads 4.32, not 4.319999999999997.
        duration_s=round(end_s - begin_s, 6),
        is_segment=True,
        **fields,
    )


def _recording_items(
    entry: Any, index: int, wanted: frozenset[str] | None
) -> tuple[str, list[InventoryItem]] | None:
    """The kept segments of one `audios[i]` entry, with the split that names its unit family."""
    if not isinstance(entry, dict):
        return None
    aid = entry.get("aid")
    aid = aid if isinstance(aid, str) and aid else f"audios[{index}]"
    path = entry.get("path")
    segments = entry.get("segments")
    if not isinstance(segments, list):
        segments = []
    kept = [
        (i, s) for i, s in enumerate(segments)
        if wanted is None or not isinstance(s, dict) or wanted & set(s.get("subsets") or [])
    ]
    if not kept:
        return None
    extra: dict[str, Any] = {"aid": aid}
    for key in RECORDING_EXTRA_KEYS:
        if key in entry:
            extra[key] = entry[key]
    extra["recording_duration_s"] = _number(entry.get("duration"))
    if not isinstance(path, str) or not path:
        items = [
            rejected_item(
                s.get("sid") if isinstance(s, dict) and s.get("sid") else f"{aid}:S{i}",
                RejectReason.malformed_record, f"recording {aid!r} has no 'path'",
                language=LANGUAGE, extra=extra,
            )
            for i, s in kept
        ]
        return "train", items
    recording = _Recording(aid, path, _path_split(path), extra)
    items = [_segment_item(s, i, recording) for i, s in kept]
    return recording.path_split or items[0].split or "train", items


def inventory(path: Path, options: WenetSpeechOptions) -> Iterator[ItemGroup]:
    """Yield one `ItemGroup` per recording, in file order (prefix = the recording's split).

    The file order is the deterministic order: sorting would need the whole
    file in memory. `options.subsets` keeps a segment when it shares any subset
    with it; segments filtered out are not inputs at all.
    """
    json_path = path / options.json_file
    if not json_path.is_file():
        raise FileNotFoundError(f"WenetSpeech metadata {json_path} does not exist")
    wanted = frozenset(options.subsets) if options.subsets is not None else None
    backend = _ijson_backend()
    with json_path.open("rb") as handle:
        try:
            for index, recording in enumerate(
                backend.items(handle, "audios.item", use_float=True)
            ):
                result = _recording_items(recording, index, wanted)
                if result is not None:
                    split, items = result
                    yield ItemGroup(prefix=split, items=items)
        except ijson.JSONError as error:
            raise ValueError(f"{json_path} is not valid JSON: {error}") from error
