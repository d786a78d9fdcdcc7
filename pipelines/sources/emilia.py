"""Emilia connector: one item per `<id>.mp3` + `<id>.json` sample of each WebDataset-style tar.

`path` holds `Emilia/<L>/<L>-B000000.tar` and `Emilia-YODAS/<L>/<L>-B000000.tar`.
Each tar is read once, sequentially (streaming mode, headers plus the small
JSON members; MP3 bytes are skipped, never extracted), and its members are
paired by WebDataset key: the member name up to the first dot of its basename.
A tar is one group, so a unit opens each tar once; unit families are
`<collection>-<LANG>` (`Emilia-EN`, `Emilia-YODAS-ZH`).
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.audio.ref import safe_member_name
from pipelines.sources.base import ItemGroup, field_type_problems, rejected_item
from schemas import InventoryItem, RejectReason
from schemas.sources import EmiliaOptions

AUDIO_EXTENSIONS = frozenset({"mp3", "wav", "flac", "ogg", "opus"})
METADATA_EXTENSION = "json"
# Emilia's JSON members are a few hundred bytes; a bigger one is not metadata and is not read.
METADATA_MAX_BYTES = 1 << 20
# The fields of a sample's JSON that voxlake reads: (type, required). Anything else is kept
# out of the way; a field of the wrong type rejects the sample instead of becoming NULL.
METADATA_FIELDS = {
    "text": ("string", True),
    "speaker": ("string", False),
    "language": ("string", False),
    "duration": ("number", False),
    "dnsmos": ("number", False),
}


@dataclass
class _Sample:
    """The members of one tar that share a key, as met while streaming the tar."""

    audio_member: str | None = None
    metadata_member: str | None = None
    metadata: bytes | None = None
    unsafe_names: list[str] = field(default_factory=list)


def sample_key(member_name: str) -> tuple[str, str]:
    """A member name's WebDataset key and extension: `a/b.c.json` -> (`a/b`, `c.json`)."""
    folder, _, basename = member_name.rpartition("/")
    stem, _, extension = basename.partition(".")
    return (f"{folder}/{stem}" if folder else stem), extension.lower()


def _read_samples(tar_path: Path) -> tuple[dict[str, _Sample], str | None]:
    """Stream one tar: its samples by key, and an error message if the tar breaks off."""
    samples: dict[str, _Sample] = {}
    try:
        with tarfile.open(tar_path, "r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, extension = sample_key(member.name)
                sample = samples.setdefault(key, _Sample())
                if not safe_member_name(member.name):
                    # Recorded, and rejected later; reading bytes through `extractfile` is
                    # harmless (nothing is written to disk), so its metadata is still read.
                    sample.unsafe_names.append(member.name)
                if extension in AUDIO_EXTENSIONS:
                    sample.audio_member = member.name
                elif extension == METADATA_EXTENSION:
                    sample.metadata_member = member.name
                    handle = tar.extractfile(member) if member.size <= METADATA_MAX_BYTES else None
                    sample.metadata = handle.read() if handle is not None else b""
    except (tarfile.TarError, EOFError, OSError) as error:
        return samples, f"{tar_path.name} cannot be read to its end ({error})"
    return samples, None


def _parse_metadata(data: bytes) -> tuple[dict[str, Any] | None, str | None]:
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return None, f"not valid UTF-8 JSON ({error})"
    if not isinstance(value, dict):
        return None, "not a JSON object"
    return value, None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _sample_item(
    key: str, sample: _Sample, tar_rel: str, collection: str, folder_language: str
) -> InventoryItem:
    location: dict[str, Any] = {
        "audio_path": tar_rel,
        "audio_member": sample.audio_member,
        "extra": {"collection": collection},
        "text_required": True,
        "origin": f"{tar_rel} {sample.metadata_member or sample.audio_member}",
    }
    metadata, error = (None, "absent")
    if sample.metadata is not None:
        metadata, error = _parse_metadata(sample.metadata)
    fields = location if metadata is None else _described(location, metadata, folder_language)
    if sample.unsafe_names:
        return rejected_item(
            key, RejectReason.path_escape,
            f"{tar_rel}: member names {sample.unsafe_names} escape the archive", **fields,
        )
    if sample.metadata is None:
        return rejected_item(
            key, RejectReason.missing_metadata,
            f"{tar_rel}: {sample.audio_member} has no .json member", **fields,
        )
    if metadata is None:
        return rejected_item(
            key, RejectReason.malformed_record, f"{tar_rel}: {sample.metadata_member} is {error}",
            **fields,
        )
    type_problems = field_type_problems(metadata, METADATA_FIELDS)
    if type_problems:
        return rejected_item(
            key, RejectReason.malformed_record,
            f"{tar_rel}: {sample.metadata_member}: {', '.join(type_problems)}", **fields,
        )
    if sample.audio_member is None:
        return rejected_item(
            key, RejectReason.missing_audio,
            f"{tar_rel}: {sample.metadata_member} has no audio member", **fields,
        )
    return InventoryItem(native_id=key, **fields)


def _described(
    location: dict[str, Any], metadata: dict[str, Any], folder_language: str
) -> dict[str, Any]:
    """Item fields from a sample's JSON; the language folder stands in for a missing language."""
    text = metadata.get("text")
    language = metadata.get("language")
    speaker = metadata.get("speaker")
    return dict(
        location,
        text=text.strip() if isinstance(text, str) else None,
        speaker=speaker if isinstance(speaker, str) and speaker else None,
        language=language.lower() if isinstance(language, str) and language else folder_language,
        duration_s=_number(metadata.get("duration")),
        extra={
            **location["extra"],
            "dnsmos": _number(metadata.get("dnsmos")),
            "wav": metadata.get("wav"),
        },
    )


def _tar_items(root: Path, tar_path: Path, collection: str, language: str) -> list[InventoryItem]:
    tar_rel = tar_path.relative_to(root).as_posix()
    samples, error = _read_samples(tar_path)
    items = [
        _sample_item(key, sample, tar_rel, collection, language)
        for key, sample in samples.items()
    ]
    if error is not None:
        # The rest of the tar cannot be listed: one item stands for it, so the loss is counted.
        items.append(
            rejected_item(
                f"{tar_rel}:unreadable", RejectReason.malformed_record, error,
                audio_path=tar_rel, extra={"collection": collection}, origin=tar_rel,
            )
        )
    items.sort(key=lambda i: i.native_id)
    return items


def _selected(names: list[str], wanted: list[str] | None) -> list[str]:
    if wanted is None:
        return sorted(names)
    wanted_upper = {w.upper() for w in wanted}
    return sorted(n for n in names if n.upper() in wanted_upper)


def inventory(path: Path, options: EmiliaOptions) -> Iterator[ItemGroup]:
    """Yield one `ItemGroup` per tar, sorted by collection, language and tar name."""
    for collection in sorted(set(options.collections)):
        collection_dir = path / collection
        if not collection_dir.is_dir():
            continue
        languages = [p.name for p in collection_dir.iterdir() if p.is_dir()]
        for language_dir_name in _selected(languages, options.languages):
            language_dir = collection_dir / language_dir_name
            for tar_path in sorted(p for p in language_dir.glob("*.tar") if p.is_file()):
                items = _tar_items(path, tar_path, collection, language_dir_name.lower())
                if items:
                    yield ItemGroup(prefix=f"{collection}-{language_dir_name.upper()}", items=items)
