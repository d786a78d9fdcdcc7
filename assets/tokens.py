"""The `tokens` asset: GLM-4-Voice codes for every accepted utterance of a unit.

Its work is `pipelines/steps/tokens.py`. Runs in the `gpu` pool. Its code version
carries the tokenizer checkpoint's content hash, so pointing `tokenizer.checkpoint`
at another checkpoint makes exactly the tokens (and what is downstream of them)
stale. Asset check `code_rate`: every row holds exactly the number of codes its
sample count implies (12.5 per second, per 30 s window, padding rule included).
"""

import dagster as dg

from assets.checks import check_result
from assets.partitions import units_partitions
from assets.pools import GPU_POOL
from assets.resources import VoxlakeProject
from assets.units import unit_run
from pipelines.steps.tokens import check_code_rate, tokenize_unit

TOKENS_GROUP = "tokens"
TOKENS_CODE_VERSION = "1"


def build_tokens_asset(tokenizer_sha256: str | None) -> dg.AssetsDefinition:
    """The `tokens` asset, versioned by the checkpoint in force when definitions load."""

    @dg.asset(
        key="tokens",
        group_name=TOKENS_GROUP,
        partitions_def=units_partitions,
        deps=["quality"],
        pool=GPU_POOL,
        code_version=f"{TOKENS_CODE_VERSION}-tokenizer-{(tokenizer_sha256 or 'missing')[:16]}",
        description="GLM-4-Voice speech codes (12.5 Hz, 16384-way) of every accepted "
        "utterance. Writes lake/tokens/<source>/<unit>.parquet.",
        check_specs=[
            dg.AssetCheckSpec(
                "code_rate",
                asset="tokens",
                blocking=True,
                description="n_codes == expected_code_count(n_samples) for every row",
            ),
        ],
        kinds={"parquet", "pytorch"},
    )
    def tokens(
        context: dg.AssetExecutionContext, voxlake_project: VoxlakeProject
    ) -> dg.MaterializeResult:
        run = unit_run(context, voxlake_project)
        summary = tokenize_unit(
            run.project, run.source, run.unit, on_progress=run.progress("utterances tokenized")
        )
        if summary.tokenizer_is_demo:
            context.log.warning(
                f"{run.unit}: codes from the random-weight DEMO tokenizer: they carry no meaning"
            )
        frame = summary.frame
        return dg.MaterializeResult(
            metadata={
                "utterances": frame.height,
                "audio_hours": round(summary.audio_s / 3600, 4),
                "codes": int(frame["n_codes"].sum()) if frame.height else 0,
                "tokenizer_sha256": summary.tokenizer_sha256,
                "tokenizer_is_demo": summary.tokenizer_is_demo,
                "path": dg.MetadataValue.path(str(summary.path)),
            },
            data_version=dg.DataVersion(summary.sha256[:16]),
            check_results=[check_result("code_rate", check_code_rate(summary))],
        )

    return tokens
