"""The `shards[unit]` asset: WebDataset tars of the unit's accepted, tokenized utterances.

Its work is `pipelines/steps/shards.py`: tars with `index.parquet`; check
`complete`: every accepted utterance with codes is in exactly one shard.
"""

import dagster as dg

from assets.resources import VoxlakeProject
from assets.units import UnitResult, UnitRun, materialize_units, summed, unit_asset_policies
from pipelines.steps.shards import check_complete, read_tokenized_ids, shard_unit
from schemas.hashing import file_sha256
from schemas.project import ExecutionSettings

SHARDS_GROUP = "shards"


def build_shards_asset(settings: ExecutionSettings) -> dg.AssetsDefinition:
    """The `shards` asset, partitioned by unit."""

    @dg.asset(
        key="shards",
        group_name=SHARDS_GROUP,
        deps=["tokens"],
        description="WebDataset shards (<key>.flac 16 kHz 16-bit, <key>.codes.npy, <key>.json) "
        "of the unit's accepted utterances, with index.parquet (member offsets, shard sha256).",
        check_specs=[
            dg.AssetCheckSpec(
                "complete",
                asset="shards",
                blocking=True,
                description="every accepted utterance with codes is in exactly one shard",
            )
        ],
        kinds={"webdataset", "parquet"},
        **unit_asset_policies(settings),
    )
    def shards(context: dg.AssetExecutionContext, voxlake_project: VoxlakeProject):
        """Write each unit's shards and index."""
        yield from materialize_units(
            context, voxlake_project, _shards_unit, batch_metadata=summed("samples")
        )

    return shards


def _shards_unit(run: UnitRun) -> UnitResult:
    lake, source = run.project.lake, run.source
    inputs = {
        "quality": file_sha256(lake.quality(source.name, run.unit)),
        "tokens": file_sha256(lake.tokens(source.name, run.unit)),
    }
    summary = shard_unit(run.project, source, run.unit, on_progress=run.progress("samples encoded"))
    complete = check_complete(summary, read_tokenized_ids(run.project, source, run.unit))
    shard_files = sorted({row.shard for row in summary.rows})
    return UnitResult(
        sha256=summary.index_sha256,
        inputs=inputs,
        metadata={
            "samples": len(summary.rows),
            "shards": len(shard_files),
            "bytes": sum({row.shard: row.shard_bytes for row in summary.rows}.values()),
            "folder": dg.MetadataValue.path(str(summary.folder)),
        },
        checks={"complete": complete},
        summary=f"{len(summary.rows)} samples in {len(shard_files)} shards",
    )
