"""The `catalogue[unit]` asset: registers the unit's lake files in `catalogue.duckdb`.

Its work is `pipelines/steps/catalogue.py`. It runs in the `catalogue` pool
(limit 1): DuckDB allows one writing process per file, and the pool keeps unit
runs from writing at once.
"""

import dagster as dg

from assets.partitions import units_partitions
from assets.pools import CATALOGUE_POOL
from assets.resources import VoxlakeProject
from assets.units import unit_run
from pipelines.steps.catalogue import catalogue_unit

CATALOGUE_GROUP = "catalogue"


@dg.asset(
    key="catalogue",
    group_name=CATALOGUE_GROUP,
    partitions_def=units_partitions,
    deps=["manifest", "quality", "tokens", "shards"],
    pool=CATALOGUE_POOL,
    description="Registers the unit in catalogue.duckdb (utterances, shards, ...): the only "
    "writer of the catalogue, one at a time.",
    kinds={"duckdb"},
)
def catalogue(
    context: dg.AssetExecutionContext, voxlake_project: VoxlakeProject
) -> dg.MaterializeResult:
    """Refresh the unit's rows in the catalogue."""
    run = unit_run(context, voxlake_project)
    stats = catalogue_unit(run.project, run.unit)
    context.log.info(
        f"catalogue {stats.path}: {stats.n_utterances} utterances, {stats.n_shards} shards "
        f"({stats.mode}, {stats.seconds:.2f} s)"
    )
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(stats.path)),
            "utterances": stats.n_utterances,
            "accepted": stats.n_accepted,
            "rejected": stats.n_rejected,
            "shards": stats.n_shards,
            "mode": stats.mode,
        }
    )
