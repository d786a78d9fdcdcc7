"""Work-unit planning: pack a source's inventory into bounded, stable units.

Connectors yield `ItemGroup`s: bundles that must stay together (a LibriSpeech
chapter, a WenetSpeech recording that will be decoded once, an Emilia tar).
`plan_units` packs consecutive groups into units of at most
`max_utterances` / `max_duration_s` (a single oversized group becomes a unit
of its own), writes each unit's items as JSONL the moment the unit closes, and
returns the plans. Only one unit is held in memory, so a million-segment
WenetSpeech inventory runs in bounded memory.

Unit keys are `<source>.<group prefix>.<NNNNN>`, numbered per prefix in the
connector's deterministic order: the same corpus gives the same keys.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.lake import Lake, write_bytes_atomic
from schemas import InventoryItem, RejectReason, UnitLimits, UnitPlan


@dataclass
class ItemGroup:
    """Items that must land in the same unit; `prefix` names the unit family (e.g. a split)."""

    prefix: str
    items: list[InventoryItem] = field(default_factory=list)


def _safe_prefix(prefix: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", prefix).strip("_")
    return cleaned or "all"


def _encode_items(items: list[InventoryItem]) -> bytes:
    lines = [
        json.dumps(i.model_dump(mode="json"), ensure_ascii=False, sort_keys=True) for i in items
    ]
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

    Ids repeated within the source are kept (so they are counted) but marked
    `duplicate_id`; the first occurrence wins.
    """
    plans: list[UnitPlan] = []
    counters: dict[str, int] = {}
    seen_ids: set[str] = set()
    pending: list[InventoryItem] = []
    pending_prefix: str | None = None
    pending_duration_s = 0.0

    def close() -> None:
        nonlocal pending, pending_duration_s
        if pending_prefix is None or not pending:
            return
        index = counters.get(pending_prefix, 0)
        counters[pending_prefix] = index + 1
        unit = f"{source}.{pending_prefix}.{index:05d}"
        data = _encode_items(pending)
        write_bytes_atomic(lake.inventory_items(source, unit), data)
        plan = UnitPlan(
            unit=unit,
            source=source,
            n_inputs=len(pending),
            declared_duration_s=round(pending_duration_s, 3),
            items_sha256=hashlib.sha256(data).hexdigest(),
        )
        plans.append(plan)
        if on_unit is not None:
            on_unit(plan)
        pending = []
        pending_duration_s = 0.0

    for group in groups:
        prefix = _safe_prefix(group.prefix)
        for item in group.items:
            if item.native_id in seen_ids and item.problem is None:
                item.problem = RejectReason.duplicate_id
                item.problem_message = f"id {item.native_id!r} already appeared in this source"
            seen_ids.add(item.native_id)
        group_duration_s = sum(i.duration_s or 0.0 for i in group.items)
        too_big = (
            len(pending) + len(group.items) > limits.max_utterances
            or pending_duration_s + group_duration_s > limits.max_duration_s
        )
        if prefix != pending_prefix or (pending and too_big):
            close()
            pending_prefix = prefix
        pending.extend(group.items)
        pending_duration_s += group_duration_s
    close()
    write_units_index(lake, source, plans)
    return plans


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
