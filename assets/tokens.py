"""The `tokens` asset: code shards (GLM-4-Voice codes) aligned with a unit's audio shards.

Its work is `pipelines/steps/tokens.py`: it reads the audio shards the quality step
wrote, never the source. Runs in the `gpu` pool. Its code version carries the
tokenizer checkpoint's content hash, so pointing `tokenizer.checkpoint` at another
checkpoint makes exactly the tokens (and what is downstream of them) stale; the new
codes go to the new tokenizer's folder and no audio shard is rewritten. Asset check
`code_rate`: every audio sample has codes, exactly as many as its sample count implies
(12.5 per second, per 30 s window, padding rule included).
"""

import dagster as dg

from assets.executors import gpu_step_tags
from assets.pools import GPU_POOL
from assets.resources import VoxlakeProject
from assets.units import UnitResult, UnitRun, materialize_units, summed, unit_asset_policies
from pipelines.steps.tokens import check_code_rate, tokenize_unit
from schemas.project import ExecutionSettings

TOKENS_GROUP = "tokens"
TOKENS_CODE_VERSION = "1"


def build_tokens_asset(
    tokenizer_sha256: str | None, settings: ExecutionSettings
) -> dg.AssetsDefinition:
    """The `tokens` asset, versioned by the checkpoint in force when definitions load."""

    @dg.asset(
        key="tokens",
        group_name=TOKENS_GROUP,
        deps=["quality"],
        pool=GPU_POOL,
        op_tags=gpu_step_tags(settings),
        code_version=f"{TOKENS_CODE_VERSION}-tokenizer-{(tokenizer_sha256 or 'missing')[:16]}",
        description="GLM-4-Voice speech codes (12.5 Hz, 16384-way) of every sample of the "
        "unit's audio shards, as code shards with the same keys and boundaries "
        "(<key>.codes.npy, <key>.json) in lake/codes/<tokenizer>/<source>/<unit>/.",
        check_specs=[
            dg.AssetCheckSpec(
                "code_rate",
                asset="tokens",
                blocking=True,
                description="every audio sample has codes, expected_code_count(n_samples) of them",
            ),
        ],
        kinds={"webdataset", "pytorch"},
        **unit_asset_policies(settings),
    )
    def tokens(context: dg.AssetExecutionContext, voxlake_project: VoxlakeProject):
        demo_units: list[str] = []

        def work(run: UnitRun) -> UnitResult:
            result = _tokens_unit(run)
            if result.metadata["tokenizer_is_demo"]:
                demo_units.append(run.unit)
            return result

        yield from materialize_units(context, voxlake_project, work, batch_metadata=summed("codes"))
        if demo_units:
            # Once per run, not per unit: the whole run used the same checkpoint.
            context.log.warning(
                f"{len(demo_units)} units tokenized with the random-weight DEMO tokenizer: "
                "their codes carry no meaning"
            )

    return tokens


def _tokens_unit(run: UnitRun) -> UnitResult:
    summary = tokenize_unit(
        run.project, run.source, run.unit, on_progress=run.progress("utterances tokenized")
    )
    shard_files = {row.shard: row.shard_bytes for row in summary.rows}
    return UnitResult(
        sha256=summary.index_sha256,
        inputs={"quality": summary.audio_index_sha256},
        metadata={
            "utterances": len(summary.rows),
            "audio_hours": round(summary.audio_s / 3600, 4),
            "codes": summary.n_codes,
            "code_shards": len(shard_files),
            "bytes": sum(shard_files.values()),
            "tokenizer_sha256": summary.tokenizer_sha256,
            "tokenizer_is_demo": summary.tokenizer_is_demo,
            "reused": summary.reused,
            "folder": dg.MetadataValue.path(str(summary.folder)),
        },
        checks={"code_rate": check_code_rate(summary)},
        summary=f"{len(summary.rows)} utterances in {len(shard_files)} code shards"
        f"{' (unchanged audio: kept as they are)' if summary.reused else ''}",
    )
