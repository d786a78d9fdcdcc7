"""Connector for Hugging Face datasets on disk: `save_to_disk` folders and parquet files.

Accepted layouts of `path`:

- a `DatasetDict.save_to_disk` folder: `dataset_dict.json` (`{"splits": [...]}`)
  and per split `<split>/state.json` listing `<split>/data-0000N-of-0000M.arrow`
  (Arrow IPC stream format);
- a `Dataset.save_to_disk` folder (`state.json` at the top);
- one parquet file, or a folder searched for `*.parquet` (the hub layout,
  `train-00000-of-00001.parquet`; the split comes from the file name).

The audio column is a struct `{bytes, path}`; an utterance's audio is the
cell `audio_member = "<column>@<row>"` of the file `audio_path`. Only
pyarrow is used (no `datasets`, no decoder), and audio bytes are never read:
Arrow streams are memory-mapped and only the struct's validity and byte
lengths are touched; parquet is read batch by batch without the `bytes`
leaf. A row with no audio is rejected here (`missing_audio`); bytes no
decoder can read are found by `check_item`'s header probe.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from pipelines.sources.base import ItemGroup, open_regular, rejected_item
from schemas import InventoryItem, RejectReason
from schemas.sources import HFDatasetOptions

# `train-00000-of-00003.parquet` (older hub exports append `-<hash>`).
SHARD_NAME = re.compile(r"^(?P<split>.+?)-\d{5}-of-\d{5}(?:-[0-9a-f]+)?$")

PARQUET_BATCH_ROWS = 1024

# Prefix of units whose split is unknown (a `Dataset` saved without one).
NO_SPLIT_PREFIX = "data"


@dataclass(frozen=True)
class _DataFile:
    """One Arrow or parquet file and the split it belongs to (None when unknown)."""

    path: Path
    split: str | None


def _load_json(path: Path) -> Any:
    try:
        with open_regular(path) as handle:
            return json.loads(handle.read().decode("utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read Hugging Face dataset metadata {path}: {error}") from error


def _saved_dataset_files(folder: Path, split: str | None) -> list[_DataFile]:
    """The Arrow files of one `Dataset.save_to_disk` folder, in `state.json` order."""
    state = _load_json(folder / "state.json")
    split = split or state.get("_split")
    files = state.get("_data_files")
    if not isinstance(files, list) or not files:
        raise ValueError(f"{folder / 'state.json'} lists no '_data_files'")
    data_files = []
    for entry in files:
        name = entry.get("filename") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            raise ValueError(f"{folder / 'state.json'}: bad '_data_files' entry {entry!r}")
        data_file = folder / name
        # Planning reads these files, so one outside the dataset folder is refused up front.
        if not data_file.resolve().is_relative_to(folder.resolve()):
            raise ValueError(f"{folder / 'state.json'}: data file {name!r} is outside {folder}")
        data_files.append(_DataFile(data_file, split))
    return data_files


def _split_of_parquet(path: Path) -> str | None:
    match = SHARD_NAME.match(path.stem)
    return match.group("split") if match else None


def _data_files(path: Path, options: HFDatasetOptions) -> list[_DataFile]:
    """Every data file of the dataset at `path`, splits and shards in a stable order."""
    if path.is_file():
        split = _split_of_parquet(path) if path.suffix == ".parquet" else None
        files = [_DataFile(path, split)]
    elif (path / "dataset_dict.json").is_file():
        splits = _load_json(path / "dataset_dict.json").get("splits")
        if not isinstance(splits, list):
            raise ValueError(f"{path / 'dataset_dict.json'} has no 'splits' list")
        files = [f for split in splits for f in _saved_dataset_files(path / split, split)]
    elif (path / "state.json").is_file():
        files = _saved_dataset_files(path, None)
    else:
        parquets = sorted(
            p for p in path.rglob("*.parquet")
            if not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not parquets:
            raise ValueError(
                f"{path}: no dataset_dict.json, state.json or *.parquet; not a Hugging Face dataset"
            )
        files = [_DataFile(p, _split_of_parquet(p)) for p in parquets]
    if options.splits is not None:
        files = [f for f in files if f.split in options.splits]
    return files


def _audio_struct_fields(schema: pa.Schema, column: str, file: Path) -> list[str]:
    if column not in schema.names:
        raise ValueError(f"{file}: no audio column {column!r} (columns: {schema.names})")
    kind = schema.field(column).type
    if not pa.types.is_struct(kind):
        raise ValueError(f"{file}: audio column {column!r} is {kind}, not a struct {{bytes, path}}")
    return [kind.field(i).name for i in range(kind.num_fields)]


def _batches(file: Path, audio_column: str) -> Iterator[pa.RecordBatch]:
    """Record batches with the audio struct reduced to `has_audio` and `audio_file` columns."""
    # Opened here, not by Arrow: a FIFO named like a data file is refused instead of
    # blocking, and a name that is not UTF-8 opens (its rows are rejected by name later).
    with open_regular(file) as handle:
        yield from _handle_batches(file, handle, audio_column)


def _handle_batches(file: Path, handle: BinaryIO, audio_column: str) -> Iterator[pa.RecordBatch]:
    if file.suffix == ".parquet":
        parquet = pq.ParquetFile(handle)
        fields = _audio_struct_fields(parquet.schema_arrow, audio_column, file)
        others = _plain_columns(parquet.schema_arrow, audio_column)
        # Struct nullness is kept in every leaf, so reading `path` alone says which rows
        # have audio; null bytes in a present struct are left to check_item.
        leaf = "path" if "path" in fields else fields[0]
        for batch in parquet.iter_batches(
            batch_size=PARQUET_BATCH_ROWS, columns=[*others, f"{audio_column}.{leaf}"]
        ):
            audio = batch.column(audio_column)
            yield _reduce(batch, audio_column, pc.invert(audio.is_null()), audio, leaf == "path")
        return
    with pa.PythonFile(handle, mode="r") as source:
        reader = ipc.open_stream(source)
        fields = _audio_struct_fields(reader.schema, audio_column, file)
        for batch in reader:
            audio = batch.column(audio_column)
            present = pc.invert(audio.is_null())
            if "bytes" in fields:
                # Only the offsets are read: the byte data stays untouched in the map.
                length = pc.fill_null(pc.binary_length(pc.struct_field(audio, "bytes")), 0)
                present = pc.and_(present, pc.greater(length, 0))
            yield _reduce(batch, audio_column, present, audio, "path" in fields)


def _plain_columns(schema: pa.Schema, audio_column: str) -> list[str]:
    """Columns worth reading while planning: scalars (ids, text, speakers, numbers).

    Binary, nested and list columns (a second audio column, embeddings) are left
    unread; they cannot become an item field or a JSON scalar in `extra` anyway.
    """
    return [
        f.name for f in schema
        if f.name != audio_column
        and not (pa.types.is_nested(f.type) or pa.types.is_binary(f.type)
                 or pa.types.is_large_binary(f.type) or pa.types.is_fixed_size_binary(f.type))
    ]


def _reduce(
    batch: pa.RecordBatch, audio_column: str, present: pa.Array, audio: pa.StructArray,
    has_path: bool,
) -> pa.RecordBatch:
    columns = {n: batch.column(n) for n in _plain_columns(batch.schema, audio_column)}
    columns["__has_audio"] = present
    columns["__audio_file"] = (
        pc.struct_field(audio, "path") if has_path else pa.nulls(len(batch), pa.string())
    )
    return pa.RecordBatch.from_pydict(columns)


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _file_items(
    root: Path, data: _DataFile, first_row: int, options: HFDatasetOptions, parquet_ids: bool
) -> Iterator[InventoryItem]:
    """One item per row of one data file; `first_row` = rows of the split before this file."""
    audio_path = data.path.relative_to(root).as_posix()
    known = {options.audio_column, options.id_column, options.text_column,
             options.speaker_column, options.language_column}
    row = 0
    for batch in _batches(data.path, options.audio_column):
        for values in batch.to_pylist():
            has_audio = values.pop("__has_audio")
            audio_file = values.pop("__audio_file")
            split_row = first_row + row
            own_id = _as_text(values.get(options.id_column))
            if parquet_ids:
                native_id = own_id or f"{data.split or NO_SPLIT_PREFIX}/{split_row}"
            else:
                local = own_id or str(split_row)
                native_id = f"{data.split}/{local}" if data.split else local
            language = _as_text(values.get(options.language_column)) or options.language
            extra = {k: v for k, v in values.items() if k not in known and _is_scalar(v)}
            if audio_file:
                extra["audio_file"] = audio_file
            fields: dict[str, Any] = {
                "audio_path": audio_path,
                "audio_member": f"{options.audio_column}@{row}",
                "text": _as_text(values.get(options.text_column)),
                "speaker": _as_text(values.get(options.speaker_column)),
                "language": language.lower() if language else None,
                "split": data.split,
                "extra": extra,
                "origin": f"{audio_path} row {row}",
            }
            row += 1
            if not has_audio:
                yield rejected_item(
                    native_id, RejectReason.missing_audio,
                    f"{audio_path} row {fields['audio_member']} holds no audio", **fields,
                )
                continue
            yield InventoryItem(native_id=native_id, **fields)


def inventory(path: Path, options: HFDatasetOptions) -> Iterator[ItemGroup]:
    """Yield one group per data file (prefix = its split), in split and shard order."""
    root = path if path.is_dir() else path.parent
    split_rows: dict[str | None, int] = {}
    for data in _data_files(path, options):
        first_row = split_rows.get(data.split, 0)
        group = ItemGroup(prefix=data.split or NO_SPLIT_PREFIX)
        rows = _file_items(root, data, first_row, options, data.path.suffix == ".parquet")
        try:
            for item in rows:
                group.items.append(item)
        except (OSError, pa.ArrowException) as error:
            # A data file that is cut short or corrupt: the rows read before the break
            # stay; one item stands for the rest of the file, so the loss is counted.
            file_rel = data.path.relative_to(root).as_posix()
            group.items.append(
                rejected_item(
                    f"{data.split or NO_SPLIT_PREFIX}/{data.path.name}:unreadable",
                    RejectReason.malformed_record,
                    f"{file_rel} cannot be read past row {len(group.items)} ({error})",
                    audio_path=file_rel, split=data.split, origin=file_rel,
                )
            )
        split_rows[data.split] = first_row + len(group.items)
        yield group
