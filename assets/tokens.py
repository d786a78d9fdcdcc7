"""The `tokens` asset: GLM-4-Voice codes for every accepted utterance of a unit.

Runs in the `gpu` pool. Its code version carries the tokenizer checkpoint's
content hash, so pointing `tokenizer.checkpoint` at another checkpoint makes
exactly the tokens (and what is downstream of them) stale. Asset check
`code_rate`: every row holds exactly the number of codes its sample count
implies (12.5 per second, per 30 s window, padding rule included).
"""

import dagster as dg

from assets.partitions import units_partitions
from assets.resources import VoxlakeProject
from inference.glm4voice import expected_code_count
from pipelines.steps.tokens import tokenize_unit
from pipelines.units import source_of_unit

TOKENS_GROUP = "tokens"
TOKENS_CODE_VERSION = "1"


def build_tokens_asset(tokenizer_sha256: str | None) -> dg.AssetsDefinition:
    """The `tokens` asset, versioned by the checkpoint in force when definitions load."""

    @dg.asset(
        key="tokens",
        group_name=TOKENS_GROUP,
        partitions_def=units_partitions,
        deps=["quality"],
        pool="gpu",
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
    def tokens(context: dg.AssetExecutionContext, project: VoxlakeProject) -> dg.MaterializeResult:
        loaded = project.load()
        unit = context.partition_key
        source = loaded.config.source(source_of_unit(unit))

        def progress(done: int, total: int) -> None:
            context.log.info(f"{unit}: {done}/{total} utterances tokenized")

        summary = tokenize_unit(loaded, source, unit, on_progress=progress)
        if summary.tokenizer_is_demo:
            context.log.warning(
                f"{unit}: codes from the random-weight DEMO tokenizer: they carry no meaning"
            )
        frame = summary.frame
        wrong = [
            row["utterance_id"]
            for row in frame.select("utterance_id", "n_samples", "n_codes").iter_rows(named=True)
            if row["n_codes"] != expected_code_count(row["n_samples"])
        ]
        complete = frame.height == summary.n_accepted
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
            check_results=[
                dg.AssetCheckResult(
                    check_name="code_rate",
                    passed=not wrong and complete,
                    metadata={
                        "rows": frame.height,
                        "accepted": summary.n_accepted,
                        "wrong_count": len(wrong),
                        "examples": dg.MetadataValue.json(wrong[:10]),
                    },
                )
            ],
        )

    return tokens
