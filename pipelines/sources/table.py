"""Connector for a CSV, TSV or JSONL manifest that lists audio files, one utterance per row.

The format follows the file name: `.tsv` is tab-separated, `.jsonl`/`.ndjson`
holds one JSON object per line, anything else is CSV with a header row.
Column names come from the options (`path_column`, `text_column`, ...).
Audio paths are relative to the manifest's folder; `check_item` rejects
those that escape it. `start`/`end` (seconds) cut a segment out of the file.

A broken row never fails the file: a CSV row with the wrong number of fields,
a line that is not JSON, a row without a path, or times that are not numbers
become `malformed_record` / `invalid_timing` items named after their line.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.sources.base import (
    ItemGroup,
    open_regular,
    read_header_durations,
    rejected_item,
    source_root,
    type_name,
)
from schemas import InventoryItem, RejectReason
from schemas.sources import TableOptions

# Rows per group: rows are independent, groups only bound memory while planning.
GROUP_SIZE = 500

JSONL_SUFFIXES = {".jsonl", ".ndjson"}


@dataclass
class _Row:
    """One parsed row: its 1-based physical line, its values, or why it could not be parsed."""

    line: int
    values: dict[str, Any] | None
    problem: RejectReason | None = None
    message: str | None = None


def _decoded_lines(path: Path) -> Iterator[str]:
    """The file's lines; bytes that are not UTF-8 survive as surrogates, to be found per row."""
    with open_regular(path) as handle:
        for line_no, raw in enumerate(handle, start=1):
            if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # a byte-order mark written by spreadsheet software
            yield raw.decode("utf-8", errors="surrogateescape")


def _has_undecodable(values: list[str]) -> bool:
    return any(any("\udc80" <= ch <= "\udcff" for ch in value) for value in values)


def _csv_rows(path: Path, delimiter: str, path_column: str) -> Iterator[_Row]:
    """Rows of a delimited file as dicts keyed by the header; line numbers count physical lines.

    A header without `path_column` is a configuration error (ValueError), not a bad row.
    """
    # TSV is unquoted by convention (a quote is an ordinary character); CSV uses RFC 4180 quoting.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(_decoded_lines(path), delimiter=delimiter, quoting=quoting, strict=True)
    header: list[str] | None = None
    last_line = 0
    while True:
        start_line = last_line + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            last_line = reader.line_num
            yield _Row(start_line, None, RejectReason.malformed_record,
                       f"{path.name}:{start_line}: {error}")
            continue
        last_line = reader.line_num
        if not fields or all(not f.strip() for f in fields):
            continue  # blank line
        if header is None:
            if _has_undecodable(fields):
                raise ValueError(f"{path}: the header line is not valid UTF-8")
            header = [f.strip() for f in fields]
            if path_column not in header:
                raise ValueError(
                    f"{path}: no {path_column!r} column in the header {header}; "
                    "set the source's `path_column` option"
                )
            continue
        if _has_undecodable(fields):
            yield _Row(start_line, None, RejectReason.invalid_text_encoding,
                       f"{path.name}:{start_line} is not valid UTF-8")
        elif len(fields) != len(header):
            yield _Row(start_line, None, RejectReason.malformed_record,
                       f"{path.name}:{start_line}: {len(fields)} fields, the header has "
                       f"{len(header)}")
        else:
            yield _Row(start_line, dict(zip(header, fields, strict=True)))


def _jsonl_rows(path: Path) -> Iterator[_Row]:
    """Rows of a JSONL file, one JSON object per non-blank line."""
    for line_no, line in enumerate(_decoded_lines(path), start=1):
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        if _has_undecodable([text]):
            yield _Row(line_no, None, RejectReason.invalid_text_encoding,
                       f"{path.name}:{line_no} is not valid UTF-8")
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            yield _Row(line_no, None, RejectReason.malformed_record,
                       f"{path.name}:{line_no} is not JSON ({error.msg})")
            continue
        if not isinstance(value, dict):
            yield _Row(line_no, None, RejectReason.malformed_record,
                       f"{path.name}:{line_no} is a JSON {type(value).__name__}, not an object")
            continue
        yield _Row(line_no, value)


def _rows(path: Path, path_column: str) -> Iterator[_Row]:
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return _jsonl_rows(path)
    return _csv_rows(path, "\t" if suffix == ".tsv" else ",", path_column)


def _cell(values: dict[str, Any], column: str) -> str | None:
    """A cell as a stripped string; empty and missing cells are None."""
    value = values.get(column)
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = text.strip()
    return text or None


def _seconds(values: dict[str, Any], column: str) -> float | None:
    """A time cell in seconds (None when empty); ValueError when it is not a number."""
    value = values.get(column)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{column} = {value!r} is not a number of seconds")
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{column} = {value!r} is not a number of seconds") from None


def _type_problems(values: dict[str, Any], options: TableOptions) -> list[str]:
    """Cells of a JSONL row whose type cannot be what the column means.

    Paths, transcripts and languages are text; an id or a speaker may also be
    an integer (speaker 103). A CSV cell is always text, so this only finds
    JSONL mistakes (a list where the transcript belongs), which would otherwise
    be written out as JSON text and accepted.
    """
    problems: list[str] = []
    for column in (options.path_column, options.text_column, options.language_column):
        value = values.get(column)
        if value is not None and not isinstance(value, str):
            problems.append(f"{column!r} is {type_name(value)}, not a string")
    for column in (options.id_column, options.speaker_column):
        value = values.get(column)
        if value is not None and not isinstance(value, str) and (
            isinstance(value, bool) or not isinstance(value, int)
        ):
            problems.append(f"{column!r} is {type_name(value)}, not a string or an integer")
    return problems


def _item(row: _Row, options: TableOptions, source_name: str) -> InventoryItem:
    """The inventory item of one parsed row."""
    values = row.values or {}
    native_id = _cell(values, options.id_column) or f"L{row.line}"
    origin = f"{source_name}:{row.line}"
    if row.values is None:
        return rejected_item(native_id, row.problem or RejectReason.malformed_record,
                             row.message or f"{source_name}:{row.line} cannot be parsed",
                             extra={"line": row.line}, origin=origin)
    known = {options.path_column, options.id_column, options.text_column, options.speaker_column,
             options.language_column, options.start_column, options.end_column}
    extra: dict[str, Any] = {"line": row.line}
    extra.update({k: v for k, v in values.items() if k not in known})
    language = _cell(values, options.language_column) or options.language
    fields: dict[str, Any] = {
        "audio_path": _cell(values, options.path_column),
        "text": _cell(values, options.text_column),
        "text_required": options.require_text,
        "speaker": _cell(values, options.speaker_column),
        "language": language.lower() if language else None,
        "extra": extra,
        "origin": origin,
    }
    type_problems = _type_problems(values, options)
    if type_problems:
        return rejected_item(native_id, RejectReason.malformed_record,
                             f"{origin}: {', '.join(type_problems)}",
                             **dict(fields, text=None, speaker=None, audio_path=None,
                                    language=None))
    if fields["audio_path"] is None:
        return rejected_item(native_id, RejectReason.malformed_record,
                             f"{source_name}:{row.line} has no {options.path_column!r} value",
                             **fields)
    try:
        start_s = _seconds(values, options.start_column)
        end_s = _seconds(values, options.end_column)
    except ValueError as error:
        return rejected_item(native_id, RejectReason.invalid_timing,
                             f"{source_name}:{row.line}: {error}", **fields)
    if start_s is None and end_s is None:
        return InventoryItem(native_id=native_id, **fields)
    offset_s = start_s if start_s is not None else 0.0
    if not math.isfinite(offset_s) or offset_s < 0 or (
        end_s is not None and (not math.isfinite(end_s) or end_s <= offset_s)
    ):
        # No duration on the rejected row (end - start is not a length); a non-finite
        # start is not kept either, as NaN and inf do not survive the JSON inventory.
        fields["offset_s"] = offset_s if math.isfinite(offset_s) else 0.0
        return rejected_item(native_id, RejectReason.invalid_timing,
                             f"{source_name}:{row.line}: start {start_s} s, end {end_s} s",
                             **fields)
    fields.update(offset_s=offset_s, is_segment=True)
    if end_s is not None:
        fields["duration_s"] = end_s - offset_s
    return InventoryItem(native_id=native_id, **fields)


def inventory(path: Path, options: TableOptions) -> Iterator[ItemGroup]:
    """Yield the table's rows in file order, in groups of `GROUP_SIZE` (prefix = file stem).

    A row without an end time is planned with the duration its FLAC or WAV header
    states (from its start, if any); other formats count 0 s.
    """
    if path.is_dir():
        raise ValueError(f"a table source's path must be the manifest file, not a folder: {path}")
    root = source_root(path)
    group = ItemGroup(prefix=path.stem, splittable=True)
    for row in _rows(path, options.path_column):
        group.items.append(_item(row, options, path.name))
        if len(group.items) >= GROUP_SIZE:
            yield read_header_durations(group, root)
            group = ItemGroup(prefix=path.stem, splittable=True)
    if group.items:
        yield read_header_durations(group, root)
