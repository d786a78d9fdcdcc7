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

from pipelines.sources.base import ItemGroup, rejected_item, type_name
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
    origin: str  # '<json file> audios[i]', for messages


def _segment_item(segment: Any, index: int, recording: _Recording) -> InventoryItem:
    """One segment as an item; a segment whose fields cannot be used is `malformed_record`."""
    origin = f"{recording.origin}.segments[{index}]"
    if not isinstance(segment, dict):
        return rejected_item(
            f"{recording.aid}:S{index}", RejectReason.malformed_record,
            f"{origin} ({recording.aid!r}) is {type_name(segment)}, not an object",
            audio_path=recording.path, language=LANGUAGE, extra=recording.extra, origin=origin,
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
        "origin": origin,
        "text_required": True,  # an ASR corpus: a segment without text is no training pair
    }
    problems = []
    if native_id != sid:
        problems.append("no 'sid' string")
    if not isinstance(raw_text, str):
        problems.append(f"'text' is {type_name(raw_text)}, not a string")
    for name, value in (("begin_time", begin_s), ("end_time", end_s)):
        if value is None:
            problems.append(f"{name!r} is {type_name(segment.get(name))}, not a number")
    if "subsets" in segment and not isinstance(segment["subsets"], list):
        problems.append(f"'subsets' is {type_name(segment['subsets'])}, not a list")
    if problems:
        return rejected_item(
            native_id, RejectReason.malformed_record,
            f"{origin} ({recording.aid!r}): {', '.join(problems)}", **fields,
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


def _wanted_segment(segment: dict[str, Any], wanted: frozenset[str]) -> bool:
    """Whether a segment shares a subset with `wanted`; unreadable subsets keep it (rejected)."""
    subsets = segment.get("subsets")
    if not isinstance(subsets, list):
        return "subsets" in segment  # present but not a list: kept, so it is rejected
    return any(isinstance(s, str) and s in wanted for s in subsets)


def _recording_items(
    entry: Any, index: int, wanted: frozenset[str] | None, json_name: str
) -> tuple[str, list[InventoryItem]] | None:
    """The kept segments of one `audios[i]` entry, with the split that names its unit family.

    An entry that is not an object, or whose `segments` is not a list, is one
    rejected item (its segments cannot be counted, but the loss is): kept
    whatever the subset filter, since its subsets cannot be read either.
    """
    origin = f"{json_name} audios[{index}]"
    if not isinstance(entry, dict):
        return "train", [
            rejected_item(
                f"audios[{index}]", RejectReason.malformed_record,
                f"{origin} is {type_name(entry)}, not an object", language=LANGUAGE,
                origin=origin,
            )
        ]
    aid = entry.get("aid")
    aid = aid if isinstance(aid, str) and aid else f"audios[{index}]"
    path = entry.get("path")
    segments = entry.get("segments")
    if not isinstance(segments, list):
        return "train", [
            rejected_item(
                f"{aid}:segments", RejectReason.malformed_record,
                f"{origin} ({aid!r}): 'segments' is {type_name(segments)}, not a list",
                audio_path=path if isinstance(path, str) and path else None,
                language=LANGUAGE, origin=origin, extra={"aid": aid},
            )
        ]
    kept = [
        (i, s) for i, s in enumerate(segments)
        if wanted is None or not isinstance(s, dict) or _wanted_segment(s, wanted)
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
                s["sid"] if isinstance(s, dict) and isinstance(s.get("sid"), str) and s["sid"]
                else f"{aid}:S{i}",
                RejectReason.malformed_record,
                f"{origin}.segments[{i}]: recording {aid!r} has no 'path' string",
                language=LANGUAGE, extra=extra, origin=f"{origin}.segments[{i}]",
            )
            for i, s in kept
        ]
        return "train", items
    recording = _Recording(aid, path, _path_split(path), extra, origin)
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
                result = _recording_items(recording, index, wanted, options.json_file)
                if result is not None:
                    split, items = result
                    yield ItemGroup(prefix=split, items=items)
        except ijson.JSONError as error:
            raise ValueError(f"{json_path} is not valid JSON: {error}") from error
