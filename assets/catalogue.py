"""The `catalogue` asset: folds the lake's new and changed files into `catalogue.duckdb`.

Its work is `pipelines/steps/catalogue.py`. It is lake-wide, not per unit: unit
runs write lake files only and never wait for the catalogue's single writer. It
runs when a `voxlake run` ends, and by itself (its automation condition, evaluated
by `catalogue_sensor` while a Dagster daemon runs) once units have materialised
and none is in progress. It runs in the `catalogue` pool (limit 1): DuckDB allows
one writing process per file.
"""

import dagster as dg

from assets.pools import CATALOGUE_POOL
from assets.resources import VoxlakeProject
from pipelines.steps.catalogue import catalogue_lake

CATALOGUE_GROUP = "catalogue"
CATALOGUE_SENSOR = "catalogue_sensor"

# After any unit's lake files change, once nothing upstream is still running and the
# catalogue is not already being refreshed. Partitioned parents map to the
# catalogue through all their partitions, so one refresh folds in every new unit.
CATALOGUE_CONDITION = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("units changed, none in progress")


@dg.asset(
    key="catalogue",
    group_name=CATALOGUE_GROUP,
    deps=["manifest", "quality", "tokens"],
    pool=CATALOGUE_POOL,
    automation_condition=CATALOGUE_CONDITION,
    description="Folds new and changed lake files (units, releases, runs, evaluations) into "
    "catalogue.duckdb, incrementally; always equal to a rebuild. The catalogue's only writer.",
    kinds={"duckdb"},
)
def catalogue(
    context: dg.AssetExecutionContext, voxlake_project: VoxlakeProject
) -> dg.MaterializeResult:
    """Bring the catalogue up to date with the lake."""
    stats = catalogue_lake(voxlake_project.load())
    context.log.info(
        f"catalogue {stats.path}: {stats.n_utterances} utterances, {stats.n_shards} audio "
        f"shards, {stats.n_code_shards} code shards ({stats.mode}, {stats.seconds:.2f} s)"
    )
    # A content version, not Dagster's default (new with every run): a refresh that folds
    # in nothing new from upstream (the sensor's, racing a `voxlake run`'s own) keeps it,
    # so what reads the catalogue stays current (`assets.plan`).
    return dg.MaterializeResult(
        data_version=dg.DataVersion(stats.upstream_sha256),
        metadata={
            "path": dg.MetadataValue.path(str(stats.path)),
            "utterances": stats.n_utterances,
            "accepted": stats.n_accepted,
            "rejected": stats.n_rejected,
            "shards": stats.n_shards,
            "code_shards": stats.n_code_shards,
            "tokenizer_sha256": stats.tokenizer_sha256 or "",
            "mode": stats.mode,
        }
    )


catalogue_sensor = dg.AutomationConditionSensorDefinition(
    CATALOGUE_SENSOR,
    target=dg.AssetSelection.assets(catalogue),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Refreshes the catalogue after units materialise (its automation condition).",
)
