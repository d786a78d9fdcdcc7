"""lhotse connector: a user's lhotse manifests (recordings + supervisions, cuts, or Shar) as items.

`path` is a folder of lhotse manifests or one cuts manifest file. The options
(`schemas.sources.LhotseOptions`) may name the manifests; otherwise they are found
in the folder, in this order:

1. **Shar**: the folder (or each of its sub-folders) holds `cuts.NNNNNN.jsonl.gz` and
   `recording.NNNNNN.tar` (`CutSet.to_shar`); one item per cut, its audio the tar member
   `<cut id>.<format>`. A shard is one group, so a unit opens each tar once.
2. **cuts**: `*cuts*.jsonl[.gz]` files (`CutSet.to_file`); one item per `MonoCut`, the
   cut's span of its recording, its text the cut's supervisions in time order.
3. **recordings + supervisions**: each `*recordings*.jsonl[.gz]` with the
   `*supervisions*.jsonl[.gz]` of the same name; one item per supervision, its span
   (`start`, `duration`) of its recording.

Every record goes through lhotse's own deserialiser (`lhotse.serialization.
deserialize_item`), so what lhotse cannot read is rejected here too; the lines are read
by this module, so each rejection names its manifest file and line (`origin`, and
`extra.manifest` / `extra.line`). Nothing is dropped: a broken line, a supervision whose
recording is missing or broken, a time span outside its recording, a mixed or
multi-channel cut, audio voxlake cannot fetch (URL, command, in-memory) or a transform it
would not apply (speed, volume, reverb) each become a rejected item with its reason.

Paths. Relative audio paths are taken from the source root (the folder, or a manifest
file's folder), not from the current folder as lhotse does; absolute paths are kept and
the manifest step refuses any path that leaves the root (and the source's
`allowed_roots`), symlinks resolved. Shar tars are listed by their headers only; member
names that escape the archive are rejected, and audio is later read into memory through
`AudioOpener` (never extracted).

Segments. A span that is the whole recording is a plain item (the manifest step reads
its duration from the header, which is what finds truncated files); any other span is
an offset/duration segment whose range the manifest step checks against the header.

lhotse is an optional dependency (`pip install 'voxlake[lhotse]'`); it is imported when
a `lhotse` source is read, never when the definitions load.

Why this module is long: it is one connector for three manifest layouts (Shar, cuts,
recordings + supervisions) that share everything that matters to a user: how a record
is parsed and named by file and line, how a recording's audio is found (files, Shar
members, channels, transforms) and when a span is rejected. Split up, the one list of
rejection rules a reader wants to check would be spread over several modules.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from pipelines.audio.decode import CODEC_TOLERANCE_S
from pipelines.audio.ref import safe_member_name
from pipelines.sources.base import ItemGroup, rejected_item, source_root
from schemas import InventoryItem, RejectReason
from schemas.sources import LhotseOptions

INSTALL_HINT = "install it with: pip install 'voxlake[lhotse]' (lhotse==1.33.0)"

# lhotse transforms that leave the speech as it is: voxlake resamples to 16 kHz anyway.
HARMLESS_TRANSFORMS = frozenset({"Resample"})

# Audio source types voxlake can open under the source root.
FILE_SOURCE = "file"
SHAR_SOURCE = "shar"

# A span within this much of its recording's start and end is the whole recording.
WHOLE_RECORDING_TOLERANCE_S = 1e-3

# Rows per group for cut manifests whose cuts share no recording.
GROUP_SIZE = 500

_SHAR_CUTS = re.compile(r"^cuts(\.\d+)?\.jsonl(\.gz)?$")
_SHAR_RECORDING = re.compile(r"^recording(\.\d+)?\.tar$")
_JSONL = re.compile(r"\.jsonl(\.gz)?$")


class LhotseMissingError(ImportError):
    """lhotse is not installed; the message says how to install it."""


def require_lhotse() -> ModuleType:
    """The `lhotse` module, or LhotseMissingError saying how to install it."""
    try:
        import lhotse
        import lhotse.serialization
    except ImportError as error:
        raise LhotseMissingError(
            f"the lhotse source kind and export need the lhotse package; {INSTALL_HINT}"
        ) from error
    return lhotse


# ---------------------------------------------------------------------------
# Finding the manifests


@dataclass(frozen=True)
class _ShardFiles:
    """One Shar shard: its cuts manifest and its recording tar (None when missing)."""

    cuts: Path
    recording: Path | None


@dataclass(frozen=True)
class _ManifestSet:
    """What one family of units is read from (`prefix`), in one of the three layouts."""

    prefix: str
    cuts: Path | None = None
    recordings: Path | None = None
    supervisions: Path | None = None
    shar: tuple[_ShardFiles, ...] = ()


def _jsonl_files(folder: Path, word: str) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_file() and _JSONL.search(p.name) and word in p.name
    )


def _part_name(path: Path, word: str) -> str:
    """The part a recipe's file name names: `libri_cuts_dev-clean.jsonl.gz` -> `libri_dev-clean`."""
    stem = _JSONL.sub("", path.name)
    part = re.sub(rf"[_.-]*{word}[_.-]*", "_", stem).strip("_")
    return part or word


def _shard_suffix(name: str) -> str:
    """`cuts.000003.jsonl.gz` -> `.000003`; `cuts.jsonl.gz` -> ``."""
    match = re.match(r"^[a-z]+(\.\d+)?\.", name)
    return (match.group(1) or "") if match else ""


def _shar_shards(folder: Path) -> list[_ShardFiles]:
    """The shards of a Shar folder (cuts manifests paired with recording tars by number)."""
    names = [p.name for p in folder.iterdir() if p.is_file()]
    tars = {_shard_suffix(n): folder / n for n in names if _SHAR_RECORDING.match(n)}
    if not tars:
        return []
    cuts = sorted(n for n in names if _SHAR_CUTS.match(n))
    return [_ShardFiles(folder / n, tars.get(_shard_suffix(n))) for n in cuts]


def _discover(path: Path, options: LhotseOptions) -> list[_ManifestSet]:
    """The manifests to read, named by the options or found in `path` (module docstring)."""
    if options.cuts is not None:
        cuts = path / options.cuts if path.is_dir() else path.parent / options.cuts
        if cuts.is_dir():
            shards = _shar_shards(cuts)
            if not shards:
                raise ValueError(f"lhotse source: {cuts} holds no Shar cuts/recording files")
            return [_ManifestSet(prefix=cuts.name, shar=tuple(shards))]
        if not cuts.is_file():
            raise FileNotFoundError(f"lhotse source: the cuts manifest {cuts} does not exist")
        return [_ManifestSet(prefix=_part_name(cuts, "cuts"), cuts=cuts)]
    if options.recordings is not None or options.supervisions is not None:
        if options.recordings is None or options.supervisions is None:
            raise ValueError("lhotse source: set both `recordings` and `supervisions`, or neither")
        folder = source_root(path)
        recordings, supervisions = folder / options.recordings, folder / options.supervisions
        for manifest in (recordings, supervisions):
            if not manifest.is_file():
                raise FileNotFoundError(f"lhotse source: the manifest {manifest} does not exist")
        return [
            _ManifestSet(
                prefix=_part_name(supervisions, "supervisions"),
                recordings=recordings,
                supervisions=supervisions,
            )
        ]
    if path.is_file():
        return [_ManifestSet(prefix=_part_name(path, "cuts"), cuts=path)]
    shards = _shar_shards(path)
    if shards:
        return [_ManifestSet(prefix=path.name, shar=tuple(shards))]
    shar_folders = [
        _ManifestSet(prefix=sub.name, shar=tuple(found))
        for sub in sorted(p for p in path.iterdir() if p.is_dir())
        if (found := _shar_shards(sub))
    ]
    if shar_folders:
        return shar_folders
    cut_files = _jsonl_files(path, "cuts")
    if cut_files:
        return [_ManifestSet(prefix=_part_name(p, "cuts"), cuts=p) for p in cut_files]
    sets = []
    for recordings in _jsonl_files(path, "recordings"):
        supervisions = recordings.with_name(recordings.name.replace("recordings", "supervisions"))
        if not supervisions.is_file():
            raise ValueError(
                f"lhotse source: {recordings.name} has no {supervisions.name} beside it; "
                "set the `recordings` and `supervisions` options"
            )
        sets.append(
            _ManifestSet(
                prefix=_part_name(supervisions, "supervisions"),
                recordings=recordings,
                supervisions=supervisions,
            )
        )
    if not sets:
        raise ValueError(
            f"lhotse source: {path} holds no lhotse manifests (Shar cuts.*.jsonl.gz with "
            "recording.*.tar, *cuts*.jsonl[.gz], or *recordings*/*supervisions*.jsonl[.gz]); "
            "name them with the `cuts`, `recordings` and `supervisions` options"
        )
    return sets


# ---------------------------------------------------------------------------
# Reading manifest lines


@dataclass
class _Line:
    """One manifest line: where it is, its raw JSON object and its lhotse object, or why not."""

    origin: str  # '<file relative to the root>:<line>'
    line: int
    raw: dict[str, Any] | None = None
    manifest: Any = None
    problem: RejectReason | None = None
    message: str | None = None


def _open_lines(path: Path) -> Iterator[bytes]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as handle:
        yield from handle


def _read_lines(path: Path, rel: str, lhotse: ModuleType) -> Iterator[_Line]:
    """Every non-blank line of a lhotse JSONL manifest, parsed by lhotse, with its line number.

    A file that breaks off (a damaged gzip stream) ends with one `_Line` saying where.
    """
    deserialize = lhotse.serialization.deserialize_item
    line_no = 0
    try:
        for line_no, raw_line in enumerate(_open_lines(path), start=1):
            if not raw_line.strip():
                continue
            origin = f"{rel}:{line_no}"
            try:
                value = json.loads(raw_line.decode("utf-8"))
            except UnicodeDecodeError as error:
                yield _Line(
                    origin,
                    line_no,
                    problem=RejectReason.invalid_text_encoding,
                    message=f"{origin} is not valid UTF-8 ({error.reason})",
                )
                continue
            except json.JSONDecodeError as error:
                yield _Line(
                    origin,
                    line_no,
                    problem=RejectReason.malformed_record,
                    message=f"{origin} is not JSON ({error.msg})",
                )
                continue
            if not isinstance(value, dict):
                yield _Line(
                    origin,
                    line_no,
                    problem=RejectReason.malformed_record,
                    message=f"{origin} is a JSON {type(value).__name__}, not an object",
                )
                continue
            try:
                # deserialize_item pops the cut's "type": it gets a copy.
                manifest = deserialize(json.loads(json.dumps(value)))
            except Exception as error:  # lhotse raises anything at all on bad input
                yield _Line(
                    origin,
                    line_no,
                    raw=value,
                    problem=RejectReason.malformed_record,
                    message=f"{origin}: lhotse cannot read this record "
                    f"({type(error).__name__}: {error})",
                )
                continue
            yield _Line(origin, line_no, raw=value, manifest=manifest)
    except (OSError, EOFError, zlib.error) as error:
        yield _Line(
            f"{rel}:{line_no + 1}",
            line_no + 1,
            problem=RejectReason.malformed_record,
            message=f"{rel} cannot be read past line {line_no} ({error})",
        )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _text(value: Any) -> str | None:
    """A transcript, stripped; blank or absent is None (no transcript)."""
    return (value.strip() or None) if isinstance(value, str) else None


def _json_ready(value: Any) -> Any:
    """`value` if it survives JSON (the inventory is JSON), else its repr."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)
    return value


# ---------------------------------------------------------------------------
# Recordings: where their audio is


@dataclass(frozen=True)
class _Audio:
    """Where a span's audio is: a file under the root, or a member of a Shar tar."""

    path: str
    member: str | None
    channels: tuple[int, ...]


@dataclass
class _RecordingInfo:
    """What the items need of one Recording: its audio sources, duration, or why it is unusable."""

    recording_id: str
    origin: str
    duration_s: float | None
    sources: list[tuple[str, tuple[int, ...], str]] = field(default_factory=list)
    problem: RejectReason | None = None
    message: str | None = None


def _recording_info(recording: Any, origin: str) -> _RecordingInfo:
    """The audio sources of a lhotse `Recording`; a problem when voxlake cannot open them."""
    recording_id = str(recording.id)
    info = _RecordingInfo(recording_id, origin, _number(recording.duration))
    if info.duration_s is None or info.duration_s <= 0:
        info.problem = RejectReason.malformed_record
        info.message = f"{origin}: recording {recording_id!r} has duration {recording.duration!r}"
        return info
    transforms = [
        t.get("name") if isinstance(t, dict) else type(t).__name__
        for t in recording.transforms or []
    ]
    applied = [t for t in transforms if t not in HARMLESS_TRANSFORMS]
    if applied:
        info.problem = RejectReason.unsupported_format
        info.message = (
            f"{origin}: recording {recording_id!r} has transforms {applied}, which voxlake "
            "does not apply; ingest the original audio, or save the transformed audio first"
        )
        return info
    for source in recording.sources:
        channels = tuple(int(c) for c in source.channels)
        if source.type in (FILE_SOURCE, SHAR_SOURCE) and isinstance(source.source, str):
            info.sources.append((source.type, channels, source.source))
        else:
            info.problem = RejectReason.unsupported_format
            info.message = (
                f"{origin}: recording {recording_id!r} has audio of type {source.type!r}; "
                "voxlake reads audio files (type 'file') and Shar tars, not URLs, commands "
                "or in-memory audio"
            )
            return info
    if not info.sources:
        info.problem = RejectReason.missing_audio
        info.message = f"{origin}: recording {recording_id!r} has no audio source"
    return info


def _relative_to_root(audio_path: str, root: Path) -> str:
    """An absolute path under the root as a root-relative one; anything else as written."""
    candidate = Path(audio_path)
    if candidate.is_absolute():
        try:
            return candidate.relative_to(root.absolute()).as_posix()
        except ValueError:
            return audio_path  # outside the root: the manifest step refuses it, naming it
    return audio_path


def _span_audio(
    info: _RecordingInfo,
    channels: tuple[int, ...],
    root: Path,
    shar_member: tuple[str, str | None] | None,
) -> tuple[_Audio | None, RejectReason | None, str | None]:
    """The one audio source that holds exactly the wanted channels, or why there is none.

    voxlake mixes a file's channels to mono, so a span on some channels of a
    multi-channel file would get the other channels' speech too: refused.
    """
    holding = [s for s in info.sources if set(channels) & set(s[1])]
    if len(holding) != 1 or set(holding[0][1]) != set(channels):
        available = [list(s[1]) for s in info.sources]
        return (
            None,
            RejectReason.unsupported_format,
            (
                f"{info.origin}: recording {info.recording_id!r} holds channels {available} "
                f"but the span wants channels {list(channels)}; voxlake mixes a file's channels "
                "to mono, so it reads a span only when it covers every channel of one file"
            ),
        )
    source_type, source_channels, source = holding[0]
    if source_type == FILE_SOURCE:
        return _Audio(_relative_to_root(source, root), None, source_channels), None, None
    if shar_member is None:
        return (
            None,
            RejectReason.malformed_record,
            (
                f"{info.origin}: recording {info.recording_id!r} is a Shar placeholder outside a "
                "Shar folder; point the source at the Shar folder"
            ),
        )
    tar_rel, member = shar_member
    if member is None:
        return (
            None,
            RejectReason.missing_audio,
            f"{info.origin}: {tar_rel} holds no audio member for this cut "
            f"(recording {info.recording_id!r})",
        )
    return _Audio(tar_rel, member, source_channels), None, None


# ---------------------------------------------------------------------------
# Spans (a supervision of a recording, or a cut) as items


@dataclass(frozen=True)
class _Described:
    """What a span says: its id, transcript, speaker, language, split and extra fields."""

    native_id: str
    text: str | None
    speaker: str | None
    language: str | None
    split: str | None
    extra: dict[str, Any]


def _span_item(
    described: _Described,
    origin: str,
    info: _RecordingInfo,
    start_s: Any,
    duration_s: Any,
    channels: tuple[int, ...],
    root: Path,
    options: LhotseOptions,
    shar_member: tuple[str, str | None] | None = None,
) -> tuple[InventoryItem, float | None]:
    """The item of one span of a recording, and its duration for unit planning."""
    fields: dict[str, Any] = {
        "text": described.text,
        "text_required": options.require_text,
        "speaker": described.speaker,
        "language": described.language or options.language,
        "split": options.split or described.split,
        "extra": described.extra,
        "origin": origin,
    }
    native_id = described.native_id
    if info.problem is not None:
        message = _at(origin, info.message or info.problem.value)
        return rejected_item(native_id, info.problem, message, **fields), None
    audio, reason, message = _span_audio(info, channels, root, shar_member)
    if audio is None:
        assert reason is not None and message is not None
        return rejected_item(native_id, reason, _at(origin, message), **fields), None
    fields.update(audio_path=audio.path, audio_member=audio.member)
    start, duration = _number(start_s), _number(duration_s)
    if start is None or duration is None or start < 0 or duration <= 0:
        return rejected_item(
            native_id,
            RejectReason.invalid_timing,
            f"{origin}: {native_id!r} has start {start_s!r} s, duration {duration_s!r} s",
            **fields,
        ), None
    recording_s = info.duration_s or 0.0
    end = start + duration
    if end > recording_s + CODEC_TOLERANCE_S:
        return rejected_item(
            native_id,
            RejectReason.segment_out_of_range,
            f"{origin}: {native_id!r} spans {start:.3f}-{end:.3f} s but recording "
            f"{info.recording_id!r} ({info.origin}) is {recording_s:.3f} s long",
            offset_s=start,
            **fields,
        ), None
    tolerance_s = WHOLE_RECORDING_TOLERANCE_S
    whole = start <= tolerance_s and end >= recording_s - tolerance_s
    if whole:
        # No declared duration: the manifest step reads the header (and finds truncation).
        fields["extra"] = {**described.extra, "declared_duration_s": duration}
        return InventoryItem(native_id=native_id, **fields), recording_s
    return InventoryItem(
        native_id=native_id,
        offset_s=start,
        duration_s=round(duration, 6),
        is_segment=True,
        **fields,
    ), duration


def _at(origin: str, message: str) -> str:
    """`message`, led by `origin` (the span's file:line) unless it already is."""
    return message if message.startswith(f"{origin}:") else f"{origin}: {message}"


def _channels(value: Any) -> tuple[int, ...]:
    if isinstance(value, list):
        return tuple(int(c) for c in value)
    return (int(value),)


def _custom_split(custom: Any) -> str | None:
    split = custom.get("split") if isinstance(custom, dict) else None
    return split if isinstance(split, str) and split else None


def _supervision_described(
    supervision: Any, raw: dict[str, Any], rel: str, line: int
) -> _Described:
    custom = raw.get("custom")
    extra: dict[str, Any] = {
        "manifest": rel,
        "line": line,
        "recording_id": str(supervision.recording_id),
    }
    if raw.get("gender") is not None:
        extra["gender"] = _json_ready(raw.get("gender"))
    if custom is not None:
        extra["custom"] = _json_ready(custom)
    return _Described(
        native_id=str(supervision.id),
        text=_text(supervision.text),
        speaker=supervision.speaker if isinstance(supervision.speaker, str) else None,
        language=supervision.language if isinstance(supervision.language, str) else None,
        split=_custom_split(custom),
        extra=extra,
    )


def _line_rejection(line: _Line, fallback_id: str) -> InventoryItem:
    raw = line.raw or {}
    raw_id = raw.get("id")
    native_id = raw_id if isinstance(raw_id, str) and raw_id else fallback_id
    return rejected_item(
        native_id,
        line.problem or RejectReason.malformed_record,
        line.message or f"{line.origin} cannot be read",
        origin=line.origin,
        extra={"manifest": line.origin.rsplit(":", 1)[0], "line": line.line},
    )


# lhotse builds its objects without checking field types; a wrong one surfaces on use.
_WRONG_TYPES = (TypeError, ValueError, AttributeError, KeyError)


def _wrong_types(line: _Line, error: Exception) -> str:
    return f"{line.origin}: a field has the wrong type ({type(error).__name__}: {error})"


def _wrong_type_item(line: _Line, error: Exception) -> InventoryItem:
    """A record lhotse parsed but whose fields cannot be used (a string where a list goes)."""
    line.problem = RejectReason.malformed_record
    line.message = _wrong_types(line, error)
    return _line_rejection(line, f"L{line.line}")


# ---------------------------------------------------------------------------
# The three layouts


def _supervision_item(
    line: _Line,
    recordings: dict[str, _RecordingInfo],
    unreadable: list[str],
    recordings_rel: str,
    supervisions_rel: str,
    root: Path,
    options: LhotseOptions,
) -> tuple[InventoryItem, float | None, str | None]:
    """The item of one supervisions-manifest line, its planning duration and recording id."""
    if line.problem is not None:
        return _line_rejection(line, f"L{line.line}"), None, None
    supervision = line.manifest
    described = _supervision_described(supervision, line.raw or {}, supervisions_rel, line.line)
    recording_id = str(supervision.recording_id)
    info = recordings.get(recording_id)
    if info is None:
        note = (
            f" ({len(unreadable)} unreadable lines: {', '.join(unreadable[:5])})"
            if unreadable
            else ""
        )
        item = rejected_item(
            described.native_id,
            RejectReason.missing_audio,
            f"{line.origin}: supervision {described.native_id!r} names recording "
            f"{recording_id!r}, which {recordings_rel} does not hold{note}",
            text=described.text,
            speaker=described.speaker,
            extra=described.extra,
            origin=line.origin,
        )
        planned_s = None
    else:
        item, planned_s = _span_item(
            described,
            line.origin,
            info,
            supervision.start,
            supervision.duration,
            _channels(supervision.channel),
            root,
            options,
        )
    return item, planned_s, recording_id


def _recordings_and_supervisions(
    manifests: _ManifestSet, root: Path, options: LhotseOptions, lhotse: ModuleType
) -> Iterator[ItemGroup]:
    """One group per run of consecutive supervisions of one recording (decoded once)."""
    assert manifests.recordings is not None and manifests.supervisions is not None
    recordings_rel = manifests.recordings.relative_to(root).as_posix()
    supervisions_rel = manifests.supervisions.relative_to(root).as_posix()
    # The recordings are held in memory (as lhotse does): far fewer than supervisions.
    recordings: dict[str, _RecordingInfo] = {}
    unreadable: list[str] = []
    for line in _read_lines(manifests.recordings, recordings_rel, lhotse):
        if line.problem is not None or not isinstance(line.manifest, lhotse.Recording):
            raw_id = (line.raw or {}).get("id")
            if line.problem is None:
                line.message = f"{line.origin} is not a lhotse Recording"
            if isinstance(raw_id, str) and raw_id:
                recordings[raw_id] = _RecordingInfo(
                    raw_id,
                    line.origin,
                    None,
                    problem=RejectReason.malformed_record,
                    message=f"its recording is broken: {line.message}",
                )
            else:
                unreadable.append(line.origin)
            continue
        try:
            info = _recording_info(line.manifest, line.origin)
        except _WRONG_TYPES as error:
            info = _RecordingInfo(
                str(line.manifest.id),
                line.origin,
                None,
                problem=RejectReason.malformed_record,
                message=f"its recording has fields of the wrong type: {_wrong_types(line, error)}",
            )
        earlier = recordings.get(info.recording_id)
        if earlier is not None:
            recordings[info.recording_id] = _RecordingInfo(
                info.recording_id,
                line.origin,
                None,
                problem=RejectReason.malformed_record,
                message=f"recording {info.recording_id!r} is defined twice "
                f"({earlier.origin} and {line.origin})",
            )
            continue
        recordings[info.recording_id] = info
    def entries() -> Iterator[_Entry]:
        for line in _read_lines(manifests.supervisions, supervisions_rel, lhotse):
            if line.problem is None and not isinstance(line.manifest, lhotse.SupervisionSegment):
                line.problem = RejectReason.malformed_record
                line.message = f"{line.origin} is not a lhotse SupervisionSegment"
            try:
                yield _supervision_item(
                    line, recordings, unreadable, recordings_rel, supervisions_rel, root, options
                )
            except _WRONG_TYPES as error:
                yield _wrong_type_item(line, error), None, None

    yield from _grouped_by_recording(manifests.prefix, entries())


_Entry = tuple[InventoryItem, float | None, str | None]
"""An item, its planning duration (None: unknown) and its recording id (None: none)."""


def _grouped_by_recording(prefix: str, entries: Iterator[_Entry]) -> Iterator[ItemGroup]:
    """One group per run of consecutive items of one recording, so it is decoded once."""
    group: ItemGroup | None = None
    group_recording: str | None = None
    for item, planned_s, recording_id in entries:
        if group is None or recording_id is None or recording_id != group_recording:
            if group is not None:
                yield group
            group = ItemGroup(prefix=prefix, header_durations_s=[])
            group_recording = recording_id
        group.items.append(item)
        assert group.header_durations_s is not None
        group.header_durations_s.append(planned_s)
    if group is not None:
        yield group


def _cut_described(cut: Any, raw: dict[str, Any], rel: str, line: int) -> _Described:
    """A cut's text, speaker and language from its supervisions, in time order."""
    supervisions = sorted(cut.supervisions, key=lambda s: (s.start, s.id))
    texts = [t for s in supervisions if (t := _text(s.text))]
    speakers = sorted({s.speaker for s in supervisions if isinstance(s.speaker, str)})
    languages = sorted({s.language for s in supervisions if isinstance(s.language, str)})
    custom = raw.get("custom")
    extra: dict[str, Any] = {
        "manifest": rel,
        "line": line,
        "recording_id": str(cut.recording.id),
        "supervision_ids": [str(s.id) for s in supervisions],
    }
    if custom is not None:
        extra["custom"] = _json_ready(custom)
    if len(speakers) > 1:
        extra["speakers"] = speakers  # a cut of several speakers has no one speaker
    sup_custom = supervisions[0].custom if len(supervisions) == 1 else None
    return _Described(
        native_id=str(cut.id),
        text=" ".join(texts) if texts else None,
        speaker=speakers[0] if len(speakers) == 1 else None,
        language=languages[0] if len(languages) == 1 else None,
        split=_custom_split(custom) or _custom_split(sup_custom),
        extra=extra,
    )


def _cut_item(
    line: _Line,
    rel: str,
    root: Path,
    options: LhotseOptions,
    lhotse: ModuleType,
    shar_members: dict[str, str | None] | None = None,
    tar_rel: str | None = None,
) -> tuple[InventoryItem, float | None, str | None]:
    """The item of one cuts-manifest line, its planning duration and its recording id."""
    if line.problem is not None:
        return _line_rejection(line, f"L{line.line}"), None, None
    cut = line.manifest
    if not isinstance(cut, lhotse.MonoCut):
        kind = type(cut).__name__
        return (
            rejected_item(
                str(getattr(cut, "id", f"L{line.line}")),
                RejectReason.unsupported_format,
                f"{line.origin}: a {kind} is not one span of one recording; voxlake ingests "
                "MonoCuts (save mixed or multi-channel cuts as audio first)",
                origin=line.origin,
                extra={"manifest": rel, "line": line.line},
            ),
            None,
            None,
        )
    if cut.recording is None:
        return (
            rejected_item(
                str(cut.id),
                RejectReason.missing_audio,
                f"{line.origin}: cut {cut.id!r} has no recording",
                origin=line.origin,
                extra={"manifest": rel, "line": line.line},
            ),
            None,
            None,
        )
    described = _cut_described(cut, line.raw or {}, rel, line.line)
    info = _recording_info(cut.recording, line.origin)
    shar_member = None
    if tar_rel is not None:
        shar_member = (tar_rel, (shar_members or {}).get(str(cut.id)))
    item, planned_s = _span_item(
        described,
        line.origin,
        info,
        cut.start,
        cut.duration,
        _channels(cut.channel),
        root,
        options,
        shar_member,
    )
    return item, planned_s, str(cut.recording.id)


def _cuts(
    manifests: _ManifestSet, root: Path, options: LhotseOptions, lhotse: ModuleType
) -> Iterator[ItemGroup]:
    """One group per run of consecutive cuts of one recording (decoded once)."""
    assert manifests.cuts is not None
    rel = manifests.cuts.relative_to(root).as_posix()
    def entries() -> Iterator[_Entry]:
        for line in _read_lines(manifests.cuts, rel, lhotse):
            try:
                yield _cut_item(line, rel, root, options, lhotse)
            except _WRONG_TYPES as error:
                yield _wrong_type_item(line, error), None, None

    yield from _grouped_by_recording(manifests.prefix, entries())


@dataclass
class _TarListing:
    """A Shar recording tar's audio member per key (None: a `.nodata` placeholder)."""

    members: dict[str, str | None] = field(default_factory=dict)
    unsafe: list[str] = field(default_factory=list)
    error: str | None = None


def _list_tar(tar_path: Path, tar_rel: str) -> _TarListing:
    """Stream a Shar tar's headers (data is skipped, never extracted): key -> audio member."""
    listing = _TarListing()
    try:
        with tarfile.open(tar_path, "r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                if not safe_member_name(member.name):
                    listing.unsafe.append(member.name)
                    continue
                stem, _, extension = member.name.rpartition(".")
                if extension in ("json", "nometa"):
                    continue
                listing.members[stem] = None if extension == "nodata" else member.name
    except (tarfile.TarError, EOFError, OSError) as error:
        listing.error = f"{tar_rel} cannot be read to its end ({error})"
    return listing


def _shar(
    manifests: _ManifestSet, root: Path, options: LhotseOptions, lhotse: ModuleType
) -> Iterator[ItemGroup]:
    """One group per Shar shard: a unit opens each recording tar once."""
    for shard in manifests.shar:
        rel = shard.cuts.relative_to(root).as_posix()
        group = ItemGroup(prefix=manifests.prefix, header_durations_s=[])
        assert group.header_durations_s is not None
        if shard.recording is None:
            tar_rel = None
            listing = _TarListing(error=f"{rel} has no recording tar beside it")
        else:
            tar_rel = shard.recording.relative_to(root).as_posix()
            listing = _list_tar(shard.recording, tar_rel)
        for line in _read_lines(shard.cuts, rel, lhotse):
            try:
                item, planned_s, _ = _cut_item(
                    line, rel, root, options, lhotse, listing.members, tar_rel or rel
                )
            except _WRONG_TYPES as error:
                item, planned_s = _wrong_type_item(line, error), None
            if listing.unsafe and item.problem is None:
                # A tar that names members outside itself is not read at all.
                item.problem = RejectReason.path_escape
                item.problem_message = (
                    f"{line.origin}: {tar_rel} has member names {listing.unsafe[:5]} that "
                    "escape the archive; the shard is not read"
                )
                planned_s = None
            elif listing.error is not None and shard.recording is None:
                if item.problem in (None, RejectReason.missing_audio):
                    item.problem = RejectReason.missing_audio
                    item.problem_message = f"{line.origin}: {listing.error}"
                    planned_s = None
            elif listing.error is not None and item.problem is None:
                # A tar that breaks off cannot be opened for reading members later either.
                item.problem = RejectReason.unreadable_audio
                item.problem_message = f"{line.origin}: {listing.error}"
                planned_s = None
            group.items.append(item)
            group.header_durations_s.append(planned_s)
        if group.items:
            yield group


def inventory(path: Path, options: LhotseOptions) -> Iterator[ItemGroup]:
    """Yield the items of every lhotse manifest the source names or holds (module docstring).

    Groups keep the spans of one recording together (one Shar shard per group);
    manifests are streamed line by line, only a RecordingSet is held in memory.
    Raises LhotseMissingError when lhotse is not installed, ValueError or
    FileNotFoundError when no manifest can be found.
    """
    lhotse = require_lhotse()
    root = source_root(path)
    for manifests in _discover(path, options):
        if manifests.shar:
            yield from _shar(manifests, root, options, lhotse)
        elif manifests.cuts is not None:
            yield from _cuts(manifests, root, options, lhotse)
        else:
            yield from _recordings_and_supervisions(manifests, root, options, lhotse)
