"""How every per-unit asset materialises the work units of its run, one after another.

A Dagster run carries many units (the assets' backfill policy), so a step is
called with a set of partition keys. `materialize_units` runs the asset's work
for each unit in turn and records, per unit:

- the unit's metadata and its content hash (`sha256`, the file the step wrote)
  with the hashes of what it read (`inputs`), so `assets.plan` can tell which
  units are stale without reading the lake;
- a failure of one unit does not take the others with it: every other unit is
  materialised, then the step fails naming the failed units, which Dagster then
  shows as failed partitions and which re-run alone.

Each check of the asset gets one result per step, combined over the units
(`pipelines.steps.checks.combine_outcomes`): Dagster records a check once per step.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from assets.checks import check_result
from assets.lake_check import load_visible_project
from assets.partitions import units_partitions
from assets.resources import VoxlakeProject
from pipelines.project import Project
from pipelines.steps.checks import CheckOutcome, combine_outcomes
from pipelines.units import source_of_unit
from schemas import SourceConfig
from schemas.hashing import canonical_json_sha256
from schemas.project import ExecutionSettings

SHA256_KEY = "sha256"
"""Per-unit metadata: content hash of what the step wrote for the unit (its data version)."""

INPUTS_KEY = "inputs"
"""Per-unit metadata: `{upstream asset: content hash}` of what the step read."""


@dataclass(frozen=True)
class UnitRun:
    """One unit of a per-unit asset materialisation: the project, the unit, the run's log."""

    project: Project
    unit: str
    log: dg.DagsterLogManager

    @property
    def source(self) -> SourceConfig:
        """The configured source the unit belongs to (KeyError naming the known ones)."""
        return self.project.config.source(source_of_unit(self.unit))

    def progress(self, counted: str) -> Callable[[int, int], None]:
        """A step progress callback logging `<unit>: <done>/<total> <counted>`."""

        def report(done: int, total: int) -> None:
            self.log.debug(f"{self.unit}: {done}/{total} {counted}")

        return report


@dataclass
class UnitResult:
    """What an asset's work produced for one unit."""

    sha256: str
    metadata: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, CheckOutcome] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)
    summary: str = ""


def materialize_units(
    context: dg.AssetExecutionContext,
    voxlake_project: VoxlakeProject,
    work: Callable[[UnitRun], UnitResult],
    batch_metadata: Callable[[dict[str, UnitResult]], dict[str, Any]] | None = None,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Run `work` for every unit of the run's partitions and yield Dagster's results.

    Yields one `MaterializeResult` (per-unit metadata attached to each partition)
    when every unit succeeded; otherwise records a materialisation for each unit
    that succeeded, yields the checks over those, and raises `dg.Failure` naming
    the units that failed and why.
    """
    # On a cluster the step runs wherever a worker took it: fail first, naming the host,
    # if this machine does not see the project's lake (assets/lake_check.py).
    project = load_visible_project(voxlake_project, context.partition_keys)
    asset = context.asset_key.to_user_string()
    units = list(context.partition_keys)
    results: dict[str, UnitResult] = {}
    failures: dict[str, str] = {}
    started = time.perf_counter()
    for index, unit in enumerate(units, start=1):
        unit_started = time.perf_counter()
        try:
            result = work(UnitRun(project=project, unit=unit, log=context.log))
        except Exception as error:  # one unit's failure must not take the others with it
            failures[unit] = f"{type(error).__name__}: {error}"
            context.log.error(f"{asset} {unit} failed: {failures[unit]}\n{traceback.format_exc()}")
            continue
        results[unit] = result
        context.log.info(
            f"{asset} {index}/{len(units)} {unit} in {time.perf_counter() - unit_started:.1f} s"
            + (f": {result.summary}" if result.summary else "")
        )
    context.log.info(
        f"{asset}: {len(results)} of {len(units)} units in {time.perf_counter() - started:.1f} s"
    )

    check_names = sorted(
        k.name for k in context.selected_asset_check_keys if k.asset_key == context.asset_key
    )
    check_results = [
        check_result(name, combine_outcomes({u: r.checks[name] for u, r in results.items()}))
        for name in check_names
        if results
    ]
    code_version = context.assets_def.code_versions_by_key.get(context.asset_key)
    if failures:
        for unit, result in results.items():
            context.log_event(
                dg.AssetMaterialization(
                    asset_key=context.asset_key,
                    partition=unit,
                    metadata=_unit_metadata(result),
                    tags={"dagster/code_version": code_version} if code_version else None,
                )
            )
        yield from check_results
        listed = "; ".join(f"{u}: {m}" for u, m in sorted(failures.items()))
        raise dg.Failure(
            f"{asset}: {len(failures)} of {len(units)} units failed ({listed})",
            metadata={"failed_units": sorted(failures), "succeeded_units": sorted(results)},
        )
    for unit, result in results.items():
        context.add_asset_metadata(_unit_metadata(result), partition_key=unit)
    metadata: dict[str, Any] = {"units": len(units)}
    if batch_metadata is not None:
        metadata.update(batch_metadata(results))
    yield dg.MaterializeResult(
        metadata=metadata,
        # The run's data version covers its units; each unit's own hash is in its metadata.
        data_version=dg.DataVersion(
            canonical_json_sha256({u: r.sha256 for u, r in sorted(results.items())})[:16]
        ),
        check_results=check_results,
    )


def _unit_metadata(result: UnitResult) -> dict[str, Any]:
    return {
        **result.metadata,
        SHA256_KEY: result.sha256,
        INPUTS_KEY: dg.MetadataValue.json(result.inputs),
    }


def summed(key: str) -> Callable[[dict[str, UnitResult]], dict[str, Any]]:
    """Batch metadata: the sum of one numeric per-unit metadata value over the run's units."""

    def total(results: dict[str, UnitResult]) -> dict[str, Any]:
        return {key: sum(r.metadata.get(key, 0) or 0 for r in results.values())}

    return total


def unit_asset_policies(settings: ExecutionSettings) -> dict[str, Any]:
    """`@dg.asset` arguments every per-unit asset shares: units per run and step retries.

    The backfill policy is what a UI backfill (and `voxlake run`) cuts runs by; the
    retry policy re-runs a step whose process died (a worker killed, a node lost).
    """
    return {
        "partitions_def": units_partitions,
        "backfill_policy": dg.BackfillPolicy.multi_run(settings.units_per_run),
        "retry_policy": dg.RetryPolicy(max_retries=settings.step_retries, delay=1)
        if settings.step_retries
        else None,
    }
