"""LibriSpeech connector: one item per utterance of `<split>/<spk>/<chap>/`, one group per chapter.

`path` is the `LibriSpeech/` folder that holds the split folders (`dev-clean`,
`train-clean-100`, ...) and the pipe-separated `SPEAKERS.TXT` / `CHAPTERS.TXT`.
Each chapter folder has one `<spk>-<chap>.trans.txt` (`<id> <TEXT>` per line)
and one `<id>.flac` per utterance. Transcript lines and FLAC files are matched
by id; whatever is left unmatched is still an item, so it is counted and
rejected (`missing_audio`, `missing_transcript`). The corpus states no
durations, so each FLAC's STREAMINFO (its first 42 bytes) is read for unit
planning; audio is never decoded here, and the manifest step's header probe
still checks every file.

A chapter's utterances are separate files that share no recording, so a
chapter group is splittable: units honour `max_utterances` and
`max_duration_s` down to the single utterance.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipelines.sources.base import ItemGroup, open_regular, read_header_durations, rejected_item
from schemas import InventoryItem, RejectReason
from schemas.sources import LibriSpeechOptions

LANGUAGE = "en"
TRANSCRIPT_SUFFIX = ".trans.txt"
AUDIO_SUFFIX = ".flac"

# Column names of the root metadata tables, in file order (see CORPORA.md).
SPEAKER_COLUMNS = ("id", "sex", "subset", "minutes", "name")
CHAPTER_COLUMNS = (
    "id", "reader", "minutes", "subset", "project_id", "book_id", "title", "project_title"
)


def read_pipe_table(path: Path, columns: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """Parse a LibriSpeech `SPEAKERS.TXT`-style table into `{id: {column: value}}`.

    Lines starting with `;` are comments; cells are space-padded. The last
    column is free text that may itself contain `|` (a real speaker name is
    `|CBW|Simon`), so each line is split at most `len(columns) - 1` times.
    A missing file gives an empty table: the metadata is optional.
    """
    table: dict[str, dict[str, str]] = {}
    if not path.is_file():
        return table
    text = path.read_bytes().decode("utf-8", errors="replace")
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        cells = [c.strip() for c in line.split("|", len(columns) - 1)]
        if len(cells) < 2 or not cells[0]:
            continue
        table[cells[0]] = dict(zip(columns[1:], cells[1:], strict=False))
    return table


def _split_names(root: Path, options: LibriSpeechOptions) -> list[str]:
    if options.splits is not None:
        missing = [s for s in options.splits if not (root / s).is_dir()]
        if missing:
            raise FileNotFoundError(f"LibriSpeech splits {missing} are not folders under {root}")
        return sorted(set(options.splits))
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _speaker_extra(speaker: dict[str, str] | None) -> dict[str, Any]:
    if speaker is None:
        return {}
    extra: dict[str, Any] = {}
    for key in ("sex", "name", "subset"):
        if speaker.get(key):
            extra[f"speaker_{key}"] = speaker[key]
    return extra


def _chapter_extra(chapter: dict[str, str] | None) -> dict[str, Any]:
    if chapter is None:
        return {}
    extra: dict[str, Any] = {}
    for key in ("minutes", "subset", "project_id", "book_id", "title", "project_title"):
        if chapter.get(key):
            extra[f"chapter_{key}"] = chapter[key]
    return extra


def _transcript_lines(path: Path) -> Iterator[tuple[int, str, str | None, str | None]]:
    """Yield `(line_no, utterance_id, text, error)` for each non-blank transcript line.

    The id is taken from the raw bytes (ids are ASCII), so a line whose text is
    not UTF-8 still names its utterance; `text` is None and `error` says why.
    """
    with open_regular(path) as handle:
        for line_no, raw in enumerate(handle, start=1):
            raw = raw.rstrip(b"\r\n")
            if not raw.strip():
                continue
            parts = raw.split(None, 1)
            utt_id = parts[0].decode("ascii", errors="replace")
            rest = parts[1] if len(parts) > 1 else b""
            try:
                text = rest.decode("utf-8").strip()
            except UnicodeDecodeError as error:
                yield line_no, utt_id, None, (
                    f"{path.name}:{line_no} is not valid UTF-8 ({error.reason} at byte "
                    f"{error.start})"
                )
                continue
            yield line_no, utt_id, text, None


def folder_contradiction(utt_id: str, speaker: str, chapter: str) -> str | None:
    """What an id `<speaker>-<chapter>-<NNNN>` says against its folders, or None if it agrees.

    The speaker of an utterance is its folder's; an id that names another
    speaker or chapter means the files were moved, and trusting either one
    would put a speaker on both sides of a speaker-disjoint split.
    """
    parts = utt_id.split("-")
    if len(parts) != 3:
        return None  # not the LibriSpeech id form: nothing to compare
    id_speaker, id_chapter = parts[0], parts[1]
    if (id_speaker, id_chapter) == (speaker, chapter):
        return None
    return (
        f"id {utt_id!r} names speaker {id_speaker} and chapter {id_chapter}, "
        f"but it is in the folder of speaker {speaker}, chapter {chapter}"
    )


def _chapter_items(
    split: str, chapter_dir: Path, base_fields: dict[str, Any]
) -> list[InventoryItem]:
    """The chapter's items: transcript lines matched to FLAC files by id, leftovers included."""
    speaker = chapter_dir.parent.name
    chapter = chapter_dir.name
    rel_dir = f"{split}/{speaker}/{chapter_dir.name}"
    audio = {
        p.name[: -len(AUDIO_SUFFIX)]: p.name
        for p in chapter_dir.iterdir()
        if p.name.endswith(AUDIO_SUFFIX) and p.is_file()
    }
    items: list[InventoryItem] = []
    transcribed: set[str] = set()
    for trans in sorted(chapter_dir.glob(f"*{TRANSCRIPT_SUFFIX}")):
        trans_stem = trans.name[: -len(".txt")]
        try:
            lines = list(_transcript_lines(trans))
        except OSError as error:
            # The lines cannot be counted, but the loss is: one item stands for the file,
            # and its chapter's audio files become `missing_transcript` items below.
            items.append(
                rejected_item(
                    f"{trans_stem}:unreadable",
                    RejectReason.malformed_record,
                    f"{rel_dir}/{trans.name} cannot be read ({error})",
                    **dict(base_fields, origin=f"{rel_dir}/{trans.name}"),
                )
            )
            continue
        for line_no, utt_id, text, error in lines:
            origin = f"{rel_dir}/{trans.name}:{line_no}"
            fields = dict(
                base_fields, audio_path=f"{rel_dir}/{utt_id}{AUDIO_SUFFIX}", origin=origin
            )
            contradiction = folder_contradiction(utt_id, speaker, chapter)
            if contradiction is not None and text:
                transcribed.add(utt_id)
                items.append(
                    rejected_item(
                        utt_id,
                        RejectReason.inconsistent_metadata,
                        f"{origin}: {contradiction}",
                        text=text,
                        text_required=True,
                        **fields,
                    )
                )
            elif error is not None:
                transcribed.add(utt_id)
                items.append(
                    rejected_item(utt_id, RejectReason.invalid_text_encoding, error, **fields)
                )
            elif not text:
                # An id with no text cannot be trusted to name an utterance; the line is the
                # input, and its audio (if any) becomes a `missing_transcript` item below.
                items.append(
                    rejected_item(
                        f"{trans_stem}:L{line_no}",
                        RejectReason.malformed_record,
                        f"{origin}: {utt_id!r} has no transcript text",
                        **dict(fields, audio_path=None),
                    )
                )
            else:
                transcribed.add(utt_id)
                items.append(
                    InventoryItem(native_id=utt_id, text=text, text_required=True, **fields)
                )
    for utt_id in sorted(set(audio) - transcribed):
        # Text is required for LibriSpeech: the manifest step rejects these as
        # `missing_transcript` after the path checks.
        audio_path = f"{rel_dir}/{audio[utt_id]}"
        fields = dict(base_fields, audio_path=audio_path, origin=audio_path)
        contradiction = folder_contradiction(utt_id, speaker, chapter)
        if contradiction is not None:
            items.append(
                rejected_item(
                    utt_id,
                    RejectReason.inconsistent_metadata,
                    f"{audio_path}: {contradiction}",
                    text_required=True,
                    **fields,
                )
            )
            continue
        items.append(InventoryItem(native_id=utt_id, text=None, text_required=True, **fields))
    items.sort(key=lambda i: i.native_id)
    return items


def inventory(path: Path, options: LibriSpeechOptions) -> Iterator[ItemGroup]:
    """Yield one splittable `ItemGroup` per chapter, split by split, in sorted order
    (prefix = split), with the durations its FLAC headers state."""
    speakers = read_pipe_table(path / "SPEAKERS.TXT", SPEAKER_COLUMNS)
    chapters = read_pipe_table(path / "CHAPTERS.TXT", CHAPTER_COLUMNS)
    for split in _split_names(path, options):
        split_dir = path / split
        for speaker_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            for chapter_dir in sorted(p for p in speaker_dir.iterdir() if p.is_dir()):
                extra = {
                    "chapter": chapter_dir.name,
                    **_speaker_extra(speakers.get(speaker_dir.name)),
                    **_chapter_extra(chapters.get(chapter_dir.name)),
                }
                base_fields = {
                    "speaker": speaker_dir.name,
                    "language": LANGUAGE,
                    "split": split,
                    "extra": extra,
                }
                items = _chapter_items(split, chapter_dir, base_fields)
                if items:
                    group = ItemGroup(prefix=split, items=items, splittable=True)
                    yield read_header_durations(group, path)
