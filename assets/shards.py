"""The `shards[unit]` asset: WebDataset tars of the unit's accepted, tokenized utterances.

Its work is `pipelines/steps/shards.py`: tars with `index.parquet`; check
`complete`: every accepted utterance with codes is in exactly one shard.
"""

import dagster as dg

from assets.checks import check_result
from assets.partitions import units_partitions
from assets.resources import VoxlakeProject
from assets.units import unit_run
from pipelines.steps.shards import check_complete, read_tokenized_ids, shard_unit

SHARDS_GROUP = "shards"


@dg.asset(
    key="shards",
    group_name=SHARDS_GROUP,
    partitions_def=units_partitions,
    deps=["tokens"],
    description="WebDataset shards (<key>.flac 16 kHz 16-bit, <key>.codes.npy, <key>.json) of "
    "the unit's accepted utterances, with index.parquet (member offsets, shard sha256).",
    check_specs=[
        dg.AssetCheckSpec(
            "complete",
            asset="shards",
            blocking=True,
            description="every accepted utterance with codes is in exactly one shard",
        )
    ],
    kinds={"webdataset", "parquet"},
)
def shards(
    context: dg.AssetExecutionContext, voxlake_project: VoxlakeProject
) -> dg.MaterializeResult:
    """Write the unit's shards and index."""
    run = unit_run(context, voxlake_project)
    summary = shard_unit(
        run.project, run.source, run.unit, on_progress=run.progress("samples encoded")
    )
    complete = check_complete(summary, read_tokenized_ids(run.project, run.source, run.unit))
    shard_files = sorted({row.shard for row in summary.rows})
    context.log.info(f"{run.unit}: {len(summary.rows)} samples in {len(shard_files)} shards")
    return dg.MaterializeResult(
        metadata={
            "samples": len(summary.rows),
            "shards": len(shard_files),
            "bytes": sum({row.shard: row.shard_bytes for row in summary.rows}.values()),
            "folder": dg.MetadataValue.path(str(summary.folder)),
        },
        data_version=dg.DataVersion(summary.index_sha256[:16]),
        check_results=[check_result("complete", complete)],
    )
