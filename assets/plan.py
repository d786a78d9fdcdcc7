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
  something upstream has materialised since it did (or has to run now), unless that
  parent gives its own data version and it equals the one the asset read (the
  catalogue's: what it holds from upstream, so a refresh that folded in nothing new
  leaves the release current).

Each planned item says why (`Plan.reasons`).

`--force` makes everything selected count as to do.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import dagster as dg
from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
from dagster._core.definitions.data_version import get_input_data_version_tag
from dagster._core.event_api import EventLogRecord
from dagster._core.events import DagsterEventType

from assets.ingest import SOURCE_FINGERPRINT_KEY
from assets.partitions import UNITS_PARTITIONS_NAME
from assets.units import INPUTS_KEY, SHA256_KEY
from pipelines.project import Project
from pipelines.steps.inventory import source_fingerprint
from pipelines.units import read_units_index, source_of_unit

CODE_VERSION_TAG = "dagster/code_version"
DATA_VERSION_TAG = "dagster/data_version"
USER_DATA_VERSION_TAG = "dagster/data_version_is_user_provided"

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
    reasons: dict[str, str] = field(default_factory=dict)
    """Why each planned inventory, lake-wide and training asset (by its key) and each
    planned unit (by its name: the first asset it needs) has to run."""

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


def _latest_materialization(
    instance: dg.DagsterInstance, key: dg.AssetKey
) -> EventLogRecord | None:
    records = instance.get_asset_records([key])
    return records[0].asset_entry.last_materialization_record if records else None


def _tags(record: EventLogRecord) -> dict[str, str]:
    materialization = record.asset_materialization
    return dict(materialization.tags or {}) if materialization is not None else {}


def _read_unchanged(parent: dg.AssetKey, parent_tags: dict[str, str], tags: dict[str, str]) -> bool:
    """True when a parent materialized since holds the content its child read: its own data
    version (not Dagster's default, new with every run) equals the one the child recorded."""
    version = parent_tags.get(DATA_VERSION_TAG)
    return (
        version is not None
        and parent_tags.get(USER_DATA_VERSION_TAG) == "true"
        and tags.get(get_input_data_version_tag(parent)) == version
    )


def inventory_stale(instance: dg.DagsterInstance, project: Project, source: str) -> bool:
    """True when `inventory/<source>` never ran or its source changed since it did."""
    return _inventory_staleness(instance, project, source) is not None


def _inventory_staleness(instance: dg.DagsterInstance, project: Project, source: str) -> str | None:
    """Why `inventory/<source>` has to run again, or None when it is current."""
    event = instance.get_latest_materialization_event(dg.AssetKey(["inventory", source]))
    if event is None or event.asset_materialization is None:
        return "never materialized"
    recorded = event.asset_materialization.metadata.get(SOURCE_FINGERPRINT_KEY)
    if recorded is None:
        return "its last inventory recorded no source fingerprint"
    config = project.config.source(source)
    current = source_fingerprint(config, project.directory, project.config.unit_limits(config))
    if recorded.value != current:
        return "the source's files or settings changed since its last inventory"
    return None


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
        if key not in selected:
            continue
        why = "--force" if force else _inventory_staleness(instance, project, source)
        if why is not None:
            plan.inventories.append(key)
            plan.reasons[key.to_user_string()] = why
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
            for asset in UNIT_ASSETS:
                state = states[asset].get(unit)
                version = code_versions[asset]
                if force:
                    why: str | None = "--force"
                elif needed:
                    why = "an upstream asset of the unit runs"
                elif state is None:
                    why = "never materialized"
                elif _changed_inputs(asset, state, unit, states, items):
                    why = "what it read has changed since"
                elif version is not None and state.code_version != version:
                    why = f"its code version changed ({state.code_version} → {version})"
                elif unit in failed.get(asset, set()):
                    why = "its last attempt failed"
                else:
                    why = None
                if why is not None and asset in selected_unit_assets:
                    if not needed:  # the unit's reason is its first asset's
                        plan.reasons[unit] = f"{asset}: {why}"
                    needed.append(asset)
                elif why is not None:
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
        why = _lake_asset_staleness(instance, graph, key, todo, force)
        if why is not None:
            todo.add(key)
            plan.reasons[key.to_user_string()] = why
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


def _lake_asset_staleness(
    instance: dg.DagsterInstance,
    graph: AssetGraph,
    key: dg.AssetKey,
    todo: set[dg.AssetKey],
    force: bool,
) -> str | None:
    """Why a lake-wide or training asset has to run, or None when it is current."""
    if force:
        return "--force"
    own = _latest_materialization(instance, key)
    if own is None:
        return "never materialized"
    tags = _tags(own)
    node = graph.get(key)
    recorded_version = tags.get(CODE_VERSION_TAG)
    if node.code_version is not None and recorded_version != node.code_version:
        return f"its code version changed ({recorded_version} → {node.code_version})"
    for parent in sorted(node.parent_keys):
        if parent in todo:
            return f"{parent.to_user_string()} runs first"
        latest = _latest_materialization(instance, parent)
        if latest is None or latest.storage_id < own.storage_id:
            continue
        # Refreshed since, by a run that changed nothing this asset read (the catalogue
        # sensor's refresh racing a `voxlake run`'s own): still current.
        if _read_unchanged(parent, _tags(latest), tags):
            continue
        return (
            f"{parent.to_user_string()} materialized since "
            f"(event {latest.storage_id} after {own.storage_id})"
        )
    return None
