"""What every connector shares: the connector protocol, item groups, making inventory items,
reading corpus text safely, and audio header durations for planning.

A connector module (`pipelines/sources/<kind>.py`) exposes one function,
`inventory(path, options) -> Iterator[ItemGroup]`, that parses corpus metadata
into one `InventoryItem` per input utterance, without decoding audio. Broken
metadata does not raise: it becomes an item with `problem` set, so it is
counted and rejected with its reason. Where the corpus states no durations,
`read_header_durations` reads them from FLAC/WAV headers so that unit planning
can honour `max_duration_s`.
"""

from __future__ import annotations

import importlib
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from pipelines.audio.headers import header_duration_s
from schemas import InventoryItem, RejectReason


@dataclass
class ItemGroup:
    """Items that must land in the same unit; `prefix` names the unit family (e.g. a split).

    `splittable` says the items only travel together for the connector's convenience
    (a batch of files or rows that share no recording), so unit planning may cut the
    group to honour the unit limits.

    `header_durations_s` (one entry per item, None where unknown) holds durations read
    from the audio headers by `read_header_durations`, for unit planning only. They are
    kept out of `InventoryItem.duration_s`: a declared duration would spare the manifest
    step its header probe, and that probe is what finds truncated files.
    """

    prefix: str
    items: list[InventoryItem] = field(default_factory=list)
    splittable: bool = False
    header_durations_s: list[float | None] | None = None

    def planning_durations_s(self) -> list[float]:
        """Each item's duration for unit planning: declared, else its header's, else 0 s."""
        headers = self.header_durations_s
        if headers is None:
            return [i.duration_s or 0.0 for i in self.items]
        if len(headers) != len(self.items):
            raise ValueError(
                f"group {self.prefix!r}: {len(headers)} header durations, {len(self.items)} items"
            )
        return [
            i.duration_s if i.duration_s is not None else (h or 0.0)
            for i, h in zip(self.items, headers, strict=True)
        ]


Inventory = Callable[[Path, Any], Iterator[ItemGroup]]
"""A connector's `inventory(path, options)`: the source's items, grouped."""


def connector(kind: str) -> Inventory:
    """The `inventory` function of the connector for `kind`."""
    module = importlib.import_module(f"pipelines.sources.{kind}")
    return module.inventory


def source_root(path: Path) -> Path:
    """The folder audio paths are relative to: the path itself, or a manifest file's folder."""
    return path if path.is_dir() else path.parent


def read_header_durations(group: ItemGroup, root: Path) -> ItemGroup:
    """Set `group.header_durations_s` from the headers of its audio files under `root`.

    For corpora that state no durations, so that unit planning can honour
    `max_duration_s`. Only items that will be probed anyway are read: a plain
    file (no container member), no declared duration, no metadata problem, and a
    path that stays under `root` (an escaping path is the manifest step's to
    reject). A segment with only a start counts from its offset. Formats without
    a cheap header (MP3, Opus, ...) and unreadable files get None (0 s when
    planning, as before). Returns `group`.
    """
    files = _FilesUnder(root)
    durations_s: list[float | None] = []
    for item in group.items:
        duration_s: float | None = None
        if (
            item.duration_s is None
            and item.problem is None
            and item.audio_path is not None
            and item.audio_member is None
        ):
            file = files.resolve(item.audio_path)
            header_s = header_duration_s(file) if file is not None else None
            if header_s is not None:
                duration_s = max(0.0, header_s - item.offset_s)
        durations_s.append(duration_s)
    group.header_durations_s = durations_s
    return group


class _FilesUnder:
    """Resolves audio paths under one root, symlinks included, as `resolve_under` does.

    Folders are resolved once each (a group's files mostly share one); a file is
    resolved on its own only when it is itself a link. `os.path.realpath` on every
    path would cost twice the header read.
    """

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.real_root = os.path.realpath(root)
        self._real_folders: dict[str, str] = {}

    def resolve(self, relative: str) -> str | None:
        """The real path of `relative` (under the root unless absolute), None if it leaves it."""
        joined = os.path.join(self.root, relative)
        folder, name = os.path.split(joined)
        try:
            is_link = name in ("", ".", "..") or stat.S_ISLNK(os.lstat(joined).st_mode)
        except OSError:
            return None  # missing: the manifest step says so
        if is_link:
            resolved = os.path.realpath(joined)
        else:
            real_folder = self._real_folders.get(folder)
            if real_folder is None:
                real_folder = self._real_folders[folder] = os.path.realpath(folder)
            resolved = os.path.join(real_folder, name)
        inside = resolved == self.real_root or resolved.startswith(
            self.real_root.rstrip(os.sep) + os.sep
        )
        return resolved if inside else None


def rejected_item(
    native_id: str, reason: RejectReason, message: str, **fields: object
) -> InventoryItem:
    """An item whose metadata is already wrong; the manifest step rejects it with `reason`."""
    return InventoryItem(native_id=native_id, problem=reason, problem_message=message, **fields)


def type_name(value: object) -> str:
    """A JSON-ish name of a value's type, for messages: 'a string', 'a list', 'null', ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def field_type_problems(
    record: dict[str, Any], expected: dict[str, tuple[str, bool]]
) -> list[str]:
    """What is wrong with the types of `record`'s fields, one phrase per field.

    `expected` maps a field to `(kind, required)`, kind one of "string", "number"
    (not a boolean) and "list". A missing optional field or an optional null is
    fine; a missing required one, or any field of another type, is a problem.
    """
    problems: list[str] = []
    for name, (kind, required) in expected.items():
        if name not in record or record[name] is None:
            if required:
                problems.append(f"no {name!r}")
            continue
        value = record[name]
        ok = {
            "string": isinstance(value, str),
            "number": isinstance(value, int | float) and not isinstance(value, bool),
            "list": isinstance(value, list),
        }[kind]
        if not ok:
            problems.append(f"{name!r} is {type_name(value)}, not a {kind}")
    return problems


class NotRegularFileError(OSError):
    """A metadata file is a FIFO, a device or a folder: reading it could block forever."""


def open_regular(path: Path) -> BinaryIO:
    """Open `path` for reading in binary mode, refusing anything but a regular file.

    Opened non-blocking and checked before the first read, so a FIFO named like a
    transcript cannot stall an inventory; raises NotRegularFileError naming it.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
            raise NotRegularFileError(f"{path} is {kind}; only regular files are read")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_text_lines(path: Path) -> Iterator[tuple[int, str | None, str | None]]:
    """Yield `(line_no, text, error)` for each line of a text file (1-based line numbers).

    Lines are decoded one by one, so a single non-UTF-8 line becomes an error for
    that line (`text` None) instead of failing the whole file.
    """
    with open_regular(path) as handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                yield line_no, None, f"{path.name}:{line_no} is not valid UTF-8 ({error.reason})"
                continue
            yield line_no, text.rstrip("\r\n"), None


def read_text_file(path: Path) -> tuple[str | None, str | None]:
    """Read a whole transcript file as UTF-8: `(text, None)` or `(None, error)`."""
    try:
        with open_regular(path) as handle:
            data = handle.read()
    except OSError as error:
        return None, f"{path.name} cannot be read ({getattr(error, 'strerror', None) or error})"
    try:
        return data.decode("utf-8").strip(), None
    except UnicodeDecodeError as error:
        return None, f"{path.name} is not valid UTF-8 ({error.reason} at byte {error.start})"
