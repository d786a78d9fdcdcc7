"""Shard and catalogue assets.

- `shards[unit]`: WebDataset tars of the unit's accepted, tokenized utterances
  with `index.parquet`; check `complete`: every accepted utterance with codes
  is in exactly one shard.
- `catalogue[unit]`: registers the unit's lake files in `catalogue.duckdb`.
  It runs in the `catalogue` pool (limit 1): DuckDB allows one writing
  process per file, and the pool keeps unit runs from writing at once.
"""

from collections import Counter

import dagster as dg
import polars as pl

from assets.partitions import units_partitions
from assets.resources import VoxlakeProject
from pipelines.catalogue.build import update_catalogue
from pipelines.steps.shards import shard_unit
from pipelines.units import source_of_unit

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
def shards(context: dg.AssetExecutionContext, project: VoxlakeProject) -> dg.MaterializeResult:
    """Write the unit's shards and index."""
    loaded = project.load()
    unit = context.partition_key
    source = loaded.config.source(source_of_unit(unit))

    def progress(done: int, total: int) -> None:
        context.log.info(f"{unit}: {done}/{total} samples encoded")

    summary = shard_unit(loaded, source, unit, on_progress=progress)
    tokens = pl.read_parquet(loaded.lake.tokens(source.name, unit), columns=["utterance_id"])
    in_shards = Counter(row.utterance_id for row in summary.rows)
    missing = sorted(set(tokens["utterance_id"]) - set(in_shards))
    repeated = sorted(u for u, n in in_shards.items() if n > 1)
    shard_files = sorted({row.shard for row in summary.rows})
    context.log.info(f"{unit}: {len(summary.rows)} samples in {len(shard_files)} shards")
    return dg.MaterializeResult(
        metadata={
            "samples": len(summary.rows),
            "shards": len(shard_files),
            "bytes": sum({row.shard: row.shard_bytes for row in summary.rows}.values()),
            "folder": dg.MetadataValue.path(str(summary.folder)),
        },
        data_version=dg.DataVersion(summary.index_sha256[:16]),
        check_results=[
            dg.AssetCheckResult(
                check_name="complete",
                passed=not missing and not repeated and len(in_shards) == summary.n_expected,
                metadata={
                    "accepted_with_codes": tokens.height,
                    "in_shards": len(in_shards),
                    "missing": dg.MetadataValue.json(missing[:10]),
                    "repeated": dg.MetadataValue.json(repeated[:10]),
                },
            )
        ],
    )


@dg.asset(
    key="catalogue",
    group_name=SHARDS_GROUP,
    partitions_def=units_partitions,
    deps=["manifest", "quality", "tokens", "shards"],
    pool="catalogue",
    description="Registers the unit in catalogue.duckdb (utterances, shards, ...): the only "
    "writer of the catalogue, one at a time.",
    kinds={"duckdb"},
)
def catalogue(context: dg.AssetExecutionContext, project: VoxlakeProject) -> dg.MaterializeResult:
    """Refresh the unit's rows in the catalogue."""
    loaded = project.load()
    unit = context.partition_key
    stats = update_catalogue(loaded, units=[unit])
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
