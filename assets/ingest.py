"""Ingest assets: `inventory/<source>` plans units, `manifest` writes one unit's rows.

Their work is `pipelines/steps/inventory.py` and `pipelines/steps/manifest.py`.
`manifest` carries a blocking asset check, `accounting`: every input utterance
of the unit is either a manifest row or a rejection.
"""

import json

import dagster as dg
import polars as pl

from assets.partitions import UNITS_PARTITIONS_NAME
from assets.resources import VoxlakeProject
from assets.units import UnitResult, UnitRun, materialize_units, unit_asset_policies
from pipelines.steps.inventory import inventory_source, source_fingerprint
from pipelines.steps.manifest import (
    UnitNotPlannedError,
    build_manifest,
    check_accounting,
    planned_unit,
)
from pipelines.units import source_of_unit
from schemas import SourceConfig, UnitPlan
from schemas.hashing import file_sha256
from schemas.project import ExecutionSettings

INGEST_GROUP = "ingest"
SOURCE_FINGERPRINT_KEY = "source_fingerprint"
"""Inventory metadata: `source_fingerprint()` of the source when it was planned."""
PREVIEW_ROWS = 10
PREVIEW_COLUMNS = (
    "utterance_id",
    "status",
    "reject_reason",
    "speaker",
    "language",
    "duration_s",
    "text",
)


def inventory_key(source_name: str) -> dg.AssetKey:
    """The asset key of a source's inventory."""
    return dg.AssetKey(["inventory", source_name])


def build_inventory_asset(source: SourceConfig) -> dg.AssetsDefinition:
    """The `inventory/<source>` asset: plan the source's units and register their partitions."""

    @dg.asset(
        key=inventory_key(source.name),
        group_name=INGEST_GROUP,
        description=f"Plans the work units of source `{source.name}` ({source.kind.value}) and "
        "registers them as `units` partitions.",
        kinds={"python"},
        tags={"voxlake/source": source.name},
    )
    def inventory(
        context: dg.AssetExecutionContext, voxlake_project: VoxlakeProject
    ) -> dg.MaterializeResult:
        project = voxlake_project.load()
        config = project.config.source(source.name)
        limits = project.config.unit_limits(config)
        # Taken before the connector reads anything: a file changed while the inventory
        # runs makes the next `voxlake run` plan the source again.
        fingerprint = source_fingerprint(config, project.directory, limits)
        planned = 0

        def log_unit(plan: UnitPlan) -> None:
            nonlocal planned
            planned += 1
            if planned % 50 == 1:
                context.log.info(
                    f"planned unit {plan.unit} ({plan.n_inputs} inputs); {planned} so far"
                )

        plans = inventory_source(config, project.directory, project.lake, limits, log_unit)
        keys = [p.unit for p in plans]
        existing = set(context.instance.get_dynamic_partitions(UNITS_PARTITIONS_NAME))
        new = [k for k in keys if k not in existing]
        if new:
            context.instance.add_dynamic_partitions(UNITS_PARTITIONS_NAME, new)
        gone = [k for k in existing if source_of_unit(k) == source.name and k not in set(keys)]
        for key in gone:
            context.instance.delete_dynamic_partition(UNITS_PARTITIONS_NAME, key)
        n_inputs = sum(p.n_inputs for p in plans)
        context.log.info(
            f"{source.name}: {n_inputs} input utterances in {len(plans)} units "
            f"({len(new)} new, {len(gone)} removed)"
        )
        units_index = project.lake.units_index(source.name)
        return dg.MaterializeResult(
            metadata={
                "units": len(plans),
                "inputs": n_inputs,
                "declared_hours": round(sum(p.declared_duration_s for p in plans) / 3600, 4),
                "new_units": len(new),
                "removed_units": len(gone),
                "units_index": dg.MetadataValue.path(str(units_index)),
                SOURCE_FINGERPRINT_KEY: fingerprint,
            },
            data_version=dg.DataVersion(file_sha256(units_index)[:16]),
        )

    return inventory


def build_manifest_asset(
    sources: list[SourceConfig], settings: ExecutionSettings
) -> dg.AssetsDefinition:
    """The `manifest` asset, partitioned by unit, downstream of every inventory."""

    @dg.asset(
        key="manifest",
        group_name=INGEST_GROUP,
        deps=[inventory_key(s.name) for s in sources],
        description="One row per input utterance of the unit: accepted by ingest (`ok`) or "
        "rejected with a reason. Writes lake/manifests/<source>/<unit>.parquet.",
        check_specs=[
            dg.AssetCheckSpec(
                "accounting",
                asset="manifest",
                blocking=True,
                description="inputs == manifest rows + rejections, and utterance ids are unique",
            )
        ],
        kinds={"parquet"},
        **unit_asset_policies(settings),
    )
    def manifest(context: dg.AssetExecutionContext, voxlake_project: VoxlakeProject):
        yield from materialize_units(
            context, voxlake_project, _manifest_unit, batch_metadata=_manifest_totals
        )

    return manifest


def _manifest_unit(run: UnitRun) -> UnitResult:
    project, unit, source = run.project, run.unit, run.source
    try:
        plan = planned_unit(project.lake, source.name, unit)
    except UnitNotPlannedError as error:
        raise dg.Failure(str(error)) from error
    summary = build_manifest(source, project.directory, project.lake, unit, plan.n_inputs)
    path = project.lake.manifest(source.name, unit)
    frame = pl.read_parquet(path)
    preview = frame.head(PREVIEW_ROWS).select(PREVIEW_COLUMNS)
    return UnitResult(
        sha256=file_sha256(path),
        inputs={"inventory": plan.items_sha256},
        metadata={
            "inputs": plan.n_inputs,
            "ok": summary.n_ok,
            "rejected": summary.n_rejected,
            "ok_hours": round(summary.ok_duration_s / 3600, 4),
            "languages": dg.MetadataValue.json(dict(summary.languages)),
            "rejections": dg.MetadataValue.json(dict(summary.rejections)),
            "path": dg.MetadataValue.path(str(path)),
            "preview": dg.MetadataValue.md(_markdown_table(preview)),
        },
        checks={"accounting": check_accounting(plan.n_inputs, summary, frame)},
        summary=f"{summary.n_ok} ok, {summary.n_rejected} rejected of {plan.n_inputs} inputs",
    )


def _manifest_totals(results: dict[str, UnitResult]) -> dict[str, object]:
    return {
        key: sum(r.metadata[key] for r in results.values()) for key in ("inputs", "ok", "rejected")
    }


def _markdown_table(frame: pl.DataFrame) -> str:
    """A small markdown table for asset metadata previews."""
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    lines = [header, rule]
    for row in frame.iter_rows():
        cells = [json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v for v in row]
        lines.append("| " + " | ".join(c.replace("|", "\\|")[:60] for c in cells) + " |")
    return "\n".join(lines)
