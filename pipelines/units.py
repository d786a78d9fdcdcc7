"""Work-unit planning: pack a source's inventory into bounded, stable units.

Connectors yield `ItemGroup`s: bundles that must stay together (a WenetSpeech
recording that will be decoded once, an Emilia tar, a Hugging Face data file),
or batches of independent files that may be cut (`splittable`).
`plan_units` packs consecutive groups into units of at most
`max_utterances` / `max_duration_s` (a single oversized group becomes a unit
of its own), writes each unit's items as JSONL the moment the unit closes, and
returns the plans. Durations are the declared ones, else those the connector
read from the audio headers (`ItemGroup.header_durations_s`). Only one unit is
held in memory, so a million-segment WenetSpeech inventory runs in bounded
memory.

Unit keys are `<source>.<group prefix>.<NNNNN>`, numbered per prefix in the
connector's deterministic order: the same corpus gives the same keys.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.id_set import CompactIdSet
from pipelines.lake.atomic import write_bytes_atomic
from pipelines.lake.paths import Lake
from pipelines.sources.base import ItemGroup
from schemas import InventoryItem, RejectReason, UnitLimits, UnitPlan
from schemas.hashing import bytes_sha256


def _safe_prefix(prefix: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", prefix).strip("_")
    return cleaned or "all"


def _encode_items(items: list[InventoryItem]) -> bytes:
    # model_dump_json writes fields in model order: deterministic, and 4x faster than json.dumps.
    lines = [i.model_dump_json() for i in items]
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


def read_unit_items(path: Path) -> Iterator[InventoryItem]:
    """Read one unit's inventory file back."""
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield InventoryItem.model_validate_json(line)


def plan_units(
    source: str,
    groups: Iterable[ItemGroup],
    limits: UnitLimits,
    lake: Lake,
    on_unit: Callable[[UnitPlan], None] | None = None,
) -> list[UnitPlan]:
    """Pack `groups` into units, write `lake/inventory/<source>/<unit>.jsonl`, return the plans.

    Each prefix (unit family, e.g. a split) has its own open unit, so a corpus
    that interleaves splits still gets full units. Ids repeated within the
    source are kept (so they are counted) but renamed `<id>#<n>` and marked
    `duplicate_id`; the first occurrence wins. Names that are not valid UTF-8
    are escaped and their items rejected (`invalid_file_name`).
    """
    plans: list[UnitPlan] = []
    counters: dict[str, int] = {}
    seen_ids = CompactIdSet()
    open_units: dict[str, _OpenUnit] = {}

    def close(prefix: str) -> None:
        pending = open_units.pop(prefix)
        index = counters.get(prefix, 0)
        counters[prefix] = index + 1
        unit = f"{source}.{prefix}.{index:05d}"
        data = _encode_items(pending.items)
        write_bytes_atomic(lake.inventory_items(source, unit), data)
        plan = UnitPlan(
            unit=unit,
            source=source,
            n_inputs=len(pending.items),
            declared_duration_s=round(pending.duration_s, 3),
            items_sha256=bytes_sha256(data),
        )
        plans.append(plan)
        if on_unit is not None:
            on_unit(plan)

    for group in groups:
        prefix = _safe_prefix(group.prefix)
        rejected_here: set[int] = set()
        for index, item in enumerate(group.items):
            if _reject_undecodable_names(item):
                rejected_here.add(index)
            if not seen_ids.add(item.native_id):
                _rename_duplicate(item, seen_ids)
                rejected_here.add(index)
        # An item rejected here is never decoded: it weighs nothing in its unit.
        durations_s = [
            0.0 if index in rejected_here else duration_s
            for index, duration_s in enumerate(group.planning_durations_s())
        ]
        # A splittable group (files or rows batched by the connector) is packed item by
        # item, so the limits hold for it too; any other group stays whole.
        if group.splittable:
            chunks = [([i], d) for i, d in zip(group.items, durations_s, strict=True)]
        else:
            chunks = [(group.items, sum(durations_s))]
        for chunk, chunk_duration_s in chunks:
            current = open_units.get(prefix)
            if current is not None and (
                len(current.items) + len(chunk) > limits.max_utterances
                or current.duration_s + chunk_duration_s > limits.max_duration_s
            ):
                close(prefix)
            current = open_units.setdefault(prefix, _OpenUnit())
            current.items.extend(chunk)
            current.duration_s += chunk_duration_s
    for prefix in sorted(open_units):
        close(prefix)
    plans.sort(key=lambda p: p.unit)
    write_units_index(lake, source, plans)
    return plans


def _reject_undecodable_names(item: InventoryItem) -> bool:
    """Make an item whose strings are not valid Unicode storable, and reject it.

    A file name that is not UTF-8 reaches Python as surrogate escapes, which no
    UTF-8 writer (JSON, Parquet, the id set) accepts. Every such string is
    written with the bad bytes as `\\xNN` escapes, so the item is still counted,
    named and rejected on its own, and the rest of its source goes on.
    """
    bad_fields: list[str] = []
    for name in _TEXT_FIELDS:
        value = getattr(item, name)
        if isinstance(value, str) and not _is_valid_unicode(value):
            setattr(item, name, _escaped(value))
            bad_fields.append(name)
    if not _is_valid_unicode(json.dumps(item.extra, ensure_ascii=False, default=str)):
        item.extra = _escaped_json(item.extra)
        bad_fields.append("extra")
    if not bad_fields:
        return False
    if item.problem is None:
        item.problem = RejectReason.invalid_file_name
        where = item.audio_path or item.native_id
        item.problem_message = (
            f"{where}: the name is not valid UTF-8 (bytes shown as \\xNN); "
            "rename the file to read it"
        )
    elif item.problem_message is not None and not _is_valid_unicode(item.problem_message):
        item.problem_message = _escaped(item.problem_message)
    return True


_TEXT_FIELDS = ("native_id", "audio_path", "audio_member", "text", "speaker", "origin")


def _is_valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _escaped(text: str) -> str:
    """`text` with surrogate-escaped bytes (undecodable names) as `\\xNN`."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _escaped_json(value: Any) -> Any:
    """`value` (JSON-like) with every string, key or value, passed through `_escaped`."""
    if isinstance(value, str):
        return _escaped(value)
    if isinstance(value, dict):
        return {_escaped_json(k): _escaped_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escaped_json(v) for v in value]
    return value


def _rename_duplicate(item: InventoryItem, seen_ids: CompactIdSet) -> None:
    """A repeated id: the item gets the first free `<id>#<n>` and is rejected as a duplicate.

    The first occurrence (in the connector's order) keeps the id; the repeat is
    still an input, so it is counted and rejected on its own row, and the rest of
    its unit goes on (a reused id would fail the unit's unique-id check).
    """
    original = item.native_id
    number = 2
    while not seen_ids.add(f"{original}#{number}"):
        number += 1
    item.native_id = f"{original}#{number}"
    where = f"{item.origin}: " if item.origin else ""
    message = f"{where}id {original!r} appeared earlier in this source; this repeat is #{number}"
    if item.problem is None:
        item.problem = RejectReason.duplicate_id
        item.problem_message = message
    else:
        # Already wrong for another reason: keep that reason, say it is a repeat too.
        item.problem_message = f"{item.problem_message} (and {message})"


@dataclass
class _OpenUnit:
    items: list[InventoryItem] = field(default_factory=list)
    duration_s: float = 0.0


def write_units_index(lake: Lake, source: str, plans: list[UnitPlan]) -> None:
    """Record a source's units (and drop inventory files of units that no longer exist)."""
    folder = lake.inventory_dir(source)
    keep = {f"{p.unit}.jsonl" for p in plans}
    if folder.is_dir():
        for old in folder.glob("*.jsonl"):
            if old.name not in keep:
                old.unlink()
    payload = {"source": source, "units": [p.model_dump(mode="json") for p in plans]}
    write_bytes_atomic(
        lake.units_index(source), (json.dumps(payload, indent=1, sort_keys=True) + "\n").encode()
    )


def read_units_index(lake: Lake, source: str) -> list[UnitPlan]:
    """The units planned for `source` by its last inventory (empty if never inventoried)."""
    path = lake.units_index(source)
    if not path.exists():
        return []
    payload = json.loads(path.read_text())
    return [UnitPlan.model_validate(u) for u in payload["units"]]


def source_of_unit(unit: str) -> str:
    """The source name a unit key belongs to (`libri.dev-clean.00000` -> `libri`)."""
    return unit.split(".", 1)[0]
