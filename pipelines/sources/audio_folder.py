"""Connector for a plain folder tree of audio files with optional same-stem transcripts.

Every file whose extension is one of `extensions` is an utterance; its
transcript is the same-stem file with the first of `transcript_extensions`
present (`a1.wav` + `a1.txt`). A transcript with no audio next to it is an
input too, rejected as `missing_audio`, so nothing a user put in the folder
is silently ignored.

The tree is walked in sorted order without following directory symlinks
(a linked folder may lead out of the root, or loop). File symlinks are kept
with the link's own relative path: `check_item` resolves them and rejects
those that escape the root. Hidden files and folders (`.name`) are skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pipelines.audio.ref import AudioRefError, resolve_under
from pipelines.sources.base import (
    ItemGroup,
    read_header_durations,
    read_text_file,
    rejected_item,
)
from schemas import InventoryItem, RejectReason
from schemas.sources import AudioFolderOptions

# Items per group: nothing in a folder tree must stay together, so groups only
# bound how much of one folder is held in memory; `plan_units` packs them into units.
GROUP_SIZE = 500

ROOT_PREFIX = "root"


@dataclass(frozen=True)
class _Entry:
    """One utterance found in a folder: its audio and/or its transcript (relative posix paths)."""

    stem: str
    audio: str | None
    transcript: str | None


def _directory_entries(
    root: Path, folder: Path, audio_exts: list[str], text_exts: list[str]
) -> tuple[list[_Entry], list[Path]]:
    """The utterances in one folder (sorted by name) and its sub-folders to walk (sorted)."""
    audio_by_stem: dict[str, list[str]] = {}
    text_by_stem: dict[str, dict[str, str]] = {}
    subfolders: list[Path] = []
    with os.scandir(folder) as scan:
        names = sorted(scan, key=lambda e: e.name)
    for entry in names:
        if entry.name.startswith("."):
            continue
        if entry.is_dir(follow_symlinks=False):
            subfolders.append(Path(entry.path))
            continue
        if entry.is_dir():
            continue  # a symlink to a folder: never walked (it may lead outside the root)
        stem, dot, ext = entry.name.rpartition(".")
        if not dot or not stem:
            continue
        ext = ext.lower()
        relative = Path(entry.path).relative_to(root).as_posix()
        if ext in audio_exts:
            audio_by_stem.setdefault(stem, []).append(relative)
        elif ext in text_exts:
            text_by_stem.setdefault(stem, {}).setdefault(ext, relative)
    entries: list[_Entry] = []
    for stem in sorted(set(audio_by_stem) | set(text_by_stem)):
        texts = text_by_stem.get(stem, {})
        transcript = next((texts[e] for e in text_exts if e in texts), None)
        audios: list[str | None] = list(audio_by_stem.get(stem, [])) or [None]
        entries.extend(_Entry(stem=stem, audio=a, transcript=transcript) for a in audios)
    return entries, subfolders


def _walk(root: Path, options: AudioFolderOptions) -> Iterator[_Entry]:
    """Every utterance under `root`, depth first, each folder's files before its sub-folders."""
    audio_exts = [e.lower().lstrip(".") for e in options.extensions]
    text_exts = [e.lower().lstrip(".") for e in options.transcript_extensions]
    pending = [root]
    while pending:
        folder = pending.pop()
        entries, subfolders = _directory_entries(root, folder, audio_exts, text_exts)
        yield from entries
        pending.extend(reversed(subfolders))


def _item(root: Path, entry: _Entry, options: AudioFolderOptions) -> InventoryItem:
    """The inventory item of one folder entry (rejected when its metadata is already wrong)."""
    named = PurePosixPath(entry.audio or entry.transcript or entry.stem)
    native_id = str(named.with_name(entry.stem))
    fields: dict[str, object] = {
        "audio_path": entry.audio,
        "speaker": named.parts[0] if len(named.parts) > 1 else None,
        "language": options.language.lower() if options.language else None,
        "text_required": options.require_text,
        "extra": {"transcript_path": entry.transcript} if entry.transcript else {},
        "origin": entry.audio or entry.transcript,
    }
    text: str | None = None
    if entry.transcript is not None:
        try:
            # A linked transcript is read only when it stays inside the folder.
            transcript = resolve_under(root, entry.transcript)
        except AudioRefError as escape:
            return rejected_item(native_id, RejectReason.path_escape, escape.message, **fields)
        text, error = read_text_file(transcript)
        if error is not None:
            return rejected_item(native_id, RejectReason.invalid_text_encoding, error, **fields)
    fields["text"] = text or None
    if entry.audio is None:
        return rejected_item(
            native_id,
            RejectReason.missing_audio,
            f"transcript {entry.transcript!r} has no audio file next to it",
            **fields,
        )
    return InventoryItem(native_id=native_id, **fields)  # type: ignore[arg-type]


def inventory(path: Path, options: AudioFolderOptions) -> Iterator[ItemGroup]:
    """Yield the folder's utterances grouped by top-level sub-folder (prefix = its name).

    Files directly in `path` get the prefix `root`. Large folders are split into
    several groups of the same prefix so a million-file folder is never held whole.
    FLAC and WAV headers give the durations unit planning packs by (other formats
    count 0 s).
    """
    group: ItemGroup | None = None
    for entry in _walk(path, options):
        named = PurePosixPath(entry.audio or entry.transcript or entry.stem)
        prefix = named.parts[0] if len(named.parts) > 1 else ROOT_PREFIX
        if group is not None and (group.prefix != prefix or len(group.items) >= GROUP_SIZE):
            yield read_header_durations(group, path)
            group = None
        if group is None:
            group = ItemGroup(prefix=prefix, splittable=True)
        group.items.append(_item(path, entry, options))
    if group is not None:
        yield read_header_durations(group, path)
