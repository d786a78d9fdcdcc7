"""Quality assets: `quality[unit]` measures and judges every utterance of a unit;
`quality_report` renders the lake-wide HTML report.

Their work is `pipelines/steps/quality.py` and `pipelines/steps/quality_report.py`.
`quality` carries two checks: `accounting` (blocking: every manifest row has
exactly one decision) and `distribution` (a warning when a unit's SNR or
duration distribution is implausible). Its code version includes the policy
version, so editing the policy in voxlake.yaml marks quality, and everything
downstream, stale in the UI.
"""

import dagster as dg

from assets.checks import check_result
from assets.partitions import units_partitions
from assets.resources import VoxlakeProject
from assets.units import unit_run
from pipelines.steps.quality import assess_unit, check_accounting, check_distribution
from pipelines.steps.quality_report import report_path, write_report
from quality.report.summary import markdown_summary
from schemas import QualityPolicy

QUALITY_GROUP = "quality"
# Bumped when the measures or the decision logic change meaningfully.
QUALITY_CODE_VERSION = "1"


def build_quality_asset(policy: QualityPolicy) -> dg.AssetsDefinition:
    """The `quality` asset, versioned by the policy in force when definitions load."""

    @dg.asset(
        key="quality",
        group_name=QUALITY_GROUP,
        partitions_def=units_partitions,
        deps=["manifest"],
        code_version=f"{QUALITY_CODE_VERSION}-policy-{policy.version()}",
        description="Decode → mono → 16 kHz → measure (WADA/STNR SNR, clipping, silence, "
        "levels, bandwidth, ...) → accept or reject under the versioned policy. Writes "
        "lake/quality/<source>/<unit>.parquet.",
        check_specs=[
            dg.AssetCheckSpec(
                "accounting",
                asset="quality",
                blocking=True,
                description="manifest rows == accepted + rejected, one decision per utterance",
            ),
            dg.AssetCheckSpec(
                "distribution",
                asset="quality",
                description="SNR and duration distributions are plausible",
            ),
        ],
        kinds={"parquet", "numpy"},
    )
    def quality(
        context: dg.AssetExecutionContext, voxlake_project: VoxlakeProject
    ) -> dg.MaterializeResult:
        run = unit_run(context, voxlake_project)
        summary = assess_unit(
            run.project, run.source, run.unit, on_progress=run.progress("utterances assessed")
        )
        context.log.info(
            f"{run.unit}: {summary.n_accepted} accepted, {summary.n_rejected} rejected "
            f"(policy {summary.policy_version})"
        )
        return dg.MaterializeResult(
            metadata={
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
            data_version=dg.DataVersion(summary.sha256[:16]),
            check_results=[
                check_result("accounting", check_accounting(summary)),
                check_result("distribution", check_distribution(summary.frame)),
            ],
        )

    return quality


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
