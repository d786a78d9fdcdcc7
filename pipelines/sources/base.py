"""What every connector shares: the connector protocol, item groups, making inventory items and
reading corpus text safely.

A connector module (`pipelines/sources/<kind>.py`) exposes one function,
`inventory(path, options) -> Iterator[ItemGroup]`, that parses corpus metadata
into one `InventoryItem` per input utterance, without decoding audio. Broken
metadata does not raise: it becomes an item with `problem` set, so it is
counted and rejected with its reason.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas import InventoryItem, RejectReason


@dataclass
class ItemGroup:
    """Items that must land in the same unit; `prefix` names the unit family (e.g. a split).

    `splittable` says the items only travel together for the connector's convenience
    (a batch of files or rows that share no recording), so unit planning may cut the
    group to honour the unit limits.
    """

    prefix: str
    items: list[InventoryItem] = field(default_factory=list)
    splittable: bool = False


Inventory = Callable[[Path, Any], Iterator[ItemGroup]]
"""A connector's `inventory(path, options)`: the source's items, grouped."""


def connector(kind: str) -> Inventory:
    """The `inventory` function of the connector for `kind`."""
    module = importlib.import_module(f"pipelines.sources.{kind}")
    return module.inventory


def source_root(path: Path) -> Path:
    """The folder audio paths are relative to: the path itself, or a manifest file's folder."""
    return path if path.is_dir() else path.parent


def rejected_item(
    native_id: str, reason: RejectReason, message: str, **fields: object
) -> InventoryItem:
    """An item whose metadata is already wrong; the manifest step rejects it with `reason`."""
    return InventoryItem(native_id=native_id, problem=reason, problem_message=message, **fields)


def read_text_lines(path: Path) -> Iterator[tuple[int, str | None, str | None]]:
    """Yield `(line_no, text, error)` for each line of a text file (1-based line numbers).

    Lines are decoded one by one, so a single non-UTF-8 line becomes an error for
    that line (`text` None) instead of failing the whole file.
    """
    with path.open("rb") as handle:
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
        return path.read_bytes().decode("utf-8").strip(), None
    except UnicodeDecodeError as error:
        return None, f"{path.name} is not valid UTF-8 ({error.reason} at byte {error.start})"
