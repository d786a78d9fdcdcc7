"""What a `voxlake run` has to materialise: the missing, stale and failed parts of a selection.

Read from the instance's event log and the lake's unit plans, without running
anything, so a `voxlake run` with nothing to do returns in a few seconds:

- `inventory/<source>` when it never ran, or the source's fingerprint (its files
  and settings, `source_fingerprint`) differs from the one it recorded;
- a per-unit asset's unit when it was never materialised, its last attempt
  failed, its code version changed (a policy edit, another tokenizer), or what it
  read has changed since (the `inputs` it recorded against the current `sha256`
  of each upstream unit; for `manifest`, the inventory's items hash), or when an
  upstream asset of the same unit has to run;
- a lake-wide or training asset when it never ran, its code version changed, or
  something upstream has materialised since it did (or has to run now).

`--force` makes everything selected count as to do.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import dagster as dg
from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
from dagster._core.events import DagsterEventType

from assets.ingest import SOURCE_FINGERPRINT_KEY
from assets.partitions import UNITS_PARTITIONS_NAME
from assets.units import INPUTS_KEY, SHA256_KEY
from pipelines.project import Project
from pipelines.steps.inventory import source_fingerprint
from pipelines.units import read_units_index, source_of_unit

CODE_VERSION_TAG = "dagster/code_version"

UNIT_ASSETS = ("manifest", "quality", "tokens")
"""The per-unit assets in pipeline order."""


@dataclass(frozen=True)
class UnitState:
    """The latest materialisation of one asset for one unit, as the plan needs it."""

    storage_id: int
    sha256: str | None
    inputs: dict[str, str]
    code_version: str | None


@dataclass
class Plan:
    """The work left, stage by stage."""

    inventories: list[dg.AssetKey] = field(default_factory=list)
    units: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """unit → the per-unit assets it needs, in pipeline order."""
    lake: list[dg.AssetKey] = field(default_factory=list)
    training: list[dg.AssetKey] = field(default_factory=list)
    unit_order: list[str] = field(default_factory=list)
    """Every unit of the selected sources, in the partitions' own order."""

    @property
    def empty(self) -> bool:
        """True when nothing is left to do."""
        return not (self.inventories or self.units or self.lake or self.training)


def unit_states(
    instance: dg.DagsterInstance, asset: str, units: Iterable[str] | None = None
) -> dict[str, UnitState]:
    """The latest materialisation of `asset` per unit (all units, or those given)."""
    key = dg.AssetKey(asset)
    wanted = set(units) if units is not None else None
    latest = instance.get_latest_storage_id_by_partition(
        key, DagsterEventType.ASSET_MATERIALIZATION, partitions=wanted
    )
    if not latest:
        return {}
    states: dict[str, UnitState] = {}
    ids = sorted(latest.values())
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, storage_ids=chunk), limit=len(chunk)
        ).records
        for record in records:
            materialization = record.asset_materialization
            if materialization is None or materialization.partition is None:
                continue
            metadata = materialization.metadata
            sha = metadata.get(SHA256_KEY)
            inputs = metadata.get(INPUTS_KEY)
            states[materialization.partition] = UnitState(
                storage_id=record.storage_id,
                sha256=str(sha.value) if sha is not None else None,
                inputs=dict(inputs.value) if inputs is not None else {},
                code_version=(materialization.tags or {}).get(CODE_VERSION_TAG),
            )
    return states


def failed_units(instance: dg.DagsterInstance, asset: str, units: Sequence[str]) -> set[str]:
    """Units whose latest attempt at `asset` failed (and none succeeded since)."""
    from dagster._core.storage.partition_status_cache import AssetPartitionStatus

    partitions = dg.DynamicPartitionsDefinition(name=UNITS_PARTITIONS_NAME)
    statuses = instance.get_status_by_partition(dg.AssetKey(asset), list(units), partitions) or {}
    return {u for u, s in statuses.items() if s == AssetPartitionStatus.FAILED}


def _latest_storage_id(instance: dg.DagsterInstance, key: dg.AssetKey) -> int | None:
    records = instance.get_asset_records([key])
    if not records or records[0].asset_entry.last_materialization_record is None:
        return None
    return records[0].asset_entry.last_materialization_record.storage_id


def _latest_code_version(instance: dg.DagsterInstance, key: dg.AssetKey) -> str | None:
    event = instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return None
    return (event.asset_materialization.tags or {}).get(CODE_VERSION_TAG)


def inventory_stale(instance: dg.DagsterInstance, project: Project, source: str) -> bool:
    """True when `inventory/<source>` never ran or its source changed since it did."""
    event = instance.get_latest_materialization_event(dg.AssetKey(["inventory", source]))
    if event is None or event.asset_materialization is None:
        return True
    recorded = event.asset_materialization.metadata.get(SOURCE_FINGERPRINT_KEY)
    config = project.config.source(source)
    current = source_fingerprint(config, project.directory, project.config.unit_limits(config))
    return recorded is None or recorded.value != current


def plan_work(
    instance: dg.DagsterInstance,
    graph: AssetGraph,
    project: Project,
    selected: set[dg.AssetKey],
    sources: list[str],
    *,
    training_keys: set[dg.AssetKey],
    force: bool = False,
    exclude_units: set[str] | None = None,
) -> Plan:
    """The work left for `selected` over the units of `sources`."""
    plan = Plan()
    todo: set[dg.AssetKey] = set()
    for source in sources:
        key = dg.AssetKey(["inventory", source])
        if key in selected and (force or inventory_stale(instance, project, source)):
            plan.inventories.append(key)
            todo.add(key)

    all_units = list(instance.get_dynamic_partitions(UNITS_PARTITIONS_NAME))
    units = [u for u in all_units if source_of_unit(u) in sources]
    plan.unit_order = units
    skipped = exclude_units or set()
    selected_unit_assets = [a for a in UNIT_ASSETS if dg.AssetKey(a) in selected]
    if selected_unit_assets and units and not plan.inventories:
        items = {
            p.unit: p.items_sha256 for source in sources for p in _units_index(project, source)
        }
        states = {a: unit_states(instance, a) for a in UNIT_ASSETS}
        failed = {a: failed_units(instance, a, units) for a in selected_unit_assets}
        code_versions = {a: graph.get(dg.AssetKey(a)).code_version for a in UNIT_ASSETS}
        for unit in units:
            if unit in skipped:
                continue
            needed: list[str] = []
            upstream_todo = False
            for asset in UNIT_ASSETS:
                state = states[asset].get(unit)
                stale = (
                    force
                    or upstream_todo
                    or state is None
                    or _changed_inputs(asset, state, unit, states, items)
                    or (
                        code_versions[asset] is not None
                        and state.code_version != code_versions[asset]
                    )
                    or unit in failed.get(asset, set())
                )
                if stale and asset in selected_unit_assets:
                    needed.append(asset)
                    upstream_todo = True
                elif stale:
                    # Not selected, so it will not run: what is below it waits for it.
                    break
            if needed:
                plan.units[unit] = tuple(needed)
        if plan.units:
            todo.update(dg.AssetKey(a) for needed in plan.units.values() for a in needed)

    if plan.inventories:
        return plan  # units and what follows are planned again once the inventories ran

    for key in graph.toposorted_asset_keys:
        if key not in selected or graph.get(key).is_partitioned or key.path[0] == "inventory":
            continue
        if _lake_asset_stale(instance, graph, key, todo, force):
            todo.add(key)
            (plan.training if key in training_keys else plan.lake).append(key)
    return plan


def _units_index(project: Project, source: str):
    try:
        return read_units_index(project.lake, source)
    except FileNotFoundError:
        return []


def _changed_inputs(
    asset: str,
    state: UnitState,
    unit: str,
    states: dict[str, dict[str, UnitState]],
    items: dict[str, str],
) -> bool:
    """True when what `asset` read for `unit` differs from what its upstream holds now."""
    if not state.inputs:
        return True  # recorded by an older voxlake: no way to tell
    for upstream, recorded in state.inputs.items():
        if upstream == "inventory":
            current = items.get(unit)
        else:
            upstream_state = states.get(upstream, {}).get(unit)
            current = upstream_state.sha256 if upstream_state else None
        if current != recorded:
            return True
    return False


def _lake_asset_stale(
    instance: dg.DagsterInstance,
    graph: AssetGraph,
    key: dg.AssetKey,
    todo: set[dg.AssetKey],
    force: bool,
) -> bool:
    if force:
        return True
    own = _latest_storage_id(instance, key)
    if own is None:
        return True
    node = graph.get(key)
    if node.code_version is not None and _latest_code_version(instance, key) != node.code_version:
        return True
    for parent in node.parent_keys:
        if parent in todo:
            return True
        parent_id = _latest_storage_id(instance, parent)
        if parent_id is not None and parent_id > own:
            return True
    return False
