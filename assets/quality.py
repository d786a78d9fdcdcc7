"""Quality assets: `quality[unit]` decodes a unit once, measures and judges every
utterance and writes the accepted audio as audio shards; `quality_report` renders
the lake-wide HTML report.

Their work is `pipelines/steps/quality.py` and `pipelines/steps/quality_report.py`.
`quality` carries two checks: `accounting` (blocking: every manifest row has
exactly one decision) and `distribution` (a warning when a unit's SNR or
duration distribution is implausible). Its code version includes the policy
version, so editing the policy in voxlake.yaml marks quality, and everything
downstream, stale in the UI.
"""

import dagster as dg

from assets.resources import VoxlakeProject
from assets.units import UnitResult, UnitRun, materialize_units, unit_asset_policies
from pipelines.steps.quality import assess_unit, check_accounting, check_distribution
from pipelines.steps.quality_report import report_path, write_report
from quality.report.summary import markdown_summary
from schemas import QualityPolicy
from schemas.hashing import file_sha256
from schemas.project import ExecutionSettings

QUALITY_GROUP = "quality"
# Bumped when the measures or the decision logic change meaningfully.
QUALITY_CODE_VERSION = "1"


def build_quality_asset(policy: QualityPolicy, settings: ExecutionSettings) -> dg.AssetsDefinition:
    """The `quality` asset, versioned by the policy in force when definitions load."""

    @dg.asset(
        key="quality",
        group_name=QUALITY_GROUP,
        deps=["manifest"],
        code_version=f"{QUALITY_CODE_VERSION}-policy-{policy.version()}",
        description="Decode once → mono → 16 kHz → measure (WADA/STNR SNR, clipping, "
        "silence, levels, bandwidth, ...) → accept or reject under the versioned policy. "
        "Writes lake/quality/<source>/<unit>.parquet and the accepted audio as WebDataset "
        "audio shards (<key>.flac 16 kHz 16-bit, <key>.json) in lake/shards/<source>/<unit>/.",
        check_specs=[
            dg.AssetCheckSpec(
                "accounting",
                asset="quality",
                blocking=True,
                description="manifest rows == accepted + rejected, one decision per "
                "utterance; every accepted utterance in exactly one audio shard",
            ),
            dg.AssetCheckSpec(
                "distribution",
                asset="quality",
                description="SNR and duration distributions are plausible",
            ),
        ],
        kinds={"parquet", "webdataset"},
        **unit_asset_policies(settings),
    )
    def quality(context: dg.AssetExecutionContext, voxlake_project: VoxlakeProject):
        yield from materialize_units(
            context, voxlake_project, _quality_unit, batch_metadata=_quality_totals
        )

    return quality


def _quality_unit(run: UnitRun) -> UnitResult:
    manifest_sha256 = file_sha256(run.project.lake.manifest(run.source.name, run.unit))
    summary = assess_unit(
        run.project, run.source, run.unit, on_progress=run.progress("utterances assessed")
    )
    shard_files = {row.shard: row.shard_bytes for row in summary.audio_rows}
    how = "decoded" if summary.decoded else "re-judged from stored measures"
    return UnitResult(
        # What the tokens step reads is the audio shards: a policy edit that changes no
        # decision leaves their index, and so the tokens, as they are.
        sha256=summary.audio_index_sha256,
        inputs={"manifest": manifest_sha256},
        metadata={
            "decisions_sha256": summary.sha256,
            "audio_samples": len(summary.audio_rows),
            "audio_shards": len(shard_files),
            "audio_bytes": sum(shard_files.values()),
            "decoded": summary.decoded,
            "audio_written": summary.audio_written,
            "manifest_rows": summary.n_manifest_rows,
            "accepted": summary.n_accepted,
            "rejected": summary.n_rejected,
            "accepted_hours": round(summary.accepted_duration_s / 3600, 4),
            "policy_version": summary.policy_version,
            "rejections": dg.MetadataValue.json(summary.rejections),
            "summary": dg.MetadataValue.md(markdown_summary(summary.frame)),
            "path": dg.MetadataValue.path(str(summary.path)),
            "report": dg.MetadataValue.path(str(report_path(run.project))),
        },
        checks={
            "accounting": check_accounting(summary),
            "distribution": check_distribution(summary.frame),
        },
        summary=f"{summary.n_accepted} accepted, {summary.n_rejected} rejected "
        f"(policy {summary.policy_version}, {how}; {len(shard_files)} audio shards"
        f"{'' if summary.audio_written else ' unchanged'})",
    )


def _quality_totals(results: dict[str, UnitResult]) -> dict[str, object]:
    return {
        "accepted": sum(r.metadata["accepted"] for r in results.values()),
        "rejected": sum(r.metadata["rejected"] for r in results.values()),
        "accepted_hours": round(sum(r.metadata["accepted_hours"] for r in results.values()), 4),
    }


@dg.asset(
    key="quality_report",
    group_name=QUALITY_GROUP,
    deps=["quality"],
    description="Self-contained HTML report over every unit: hours, distributions, "
    "rejections by rule, and the worst accepted and borderline-rejected utterances to listen to.",
    kinds={"html"},
)
def quality_report(
    context: dg.AssetExecutionContext, voxlake_project: VoxlakeProject
) -> dg.MaterializeResult:
    """Render `lake/reports/quality.html` from every unit's quality decisions."""
    path = write_report(voxlake_project.load())
    context.log.info(f"quality report written to {path}")
    return dg.MaterializeResult(
        metadata={"path": dg.MetadataValue.path(str(path)), "bytes": path.stat().st_size}
    )
