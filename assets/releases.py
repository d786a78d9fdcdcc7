"""The config-driven `release` asset: creates the releases listed in voxlake.yaml.

Its work is `pipelines/steps/release.py`. Releases are immutable: one that exists
is left as it is (a changed spec for an existing name is reported, never applied).
Check `shards_intact`: every audio shard and code shard of every release still has
the sha256 recorded when it was released.
"""

import dagster as dg

from assets.checks import check_result
from assets.pools import CATALOGUE_POOL
from assets.resources import VoxlakeProject
from pipelines.steps.release import check_shards_intact, create_configured_releases

RELEASE_GROUP = "releases"


@dg.asset(
    key="release",
    group_name=RELEASE_GROUP,
    deps=["catalogue"],
    pool=CATALOGUE_POOL,
    description="Creates the releases named under `releases:` in voxlake.yaml "
    "(immutable selections of audio and code shards with lineage) and registers them in the "
    "catalogue.",
    check_specs=[
        dg.AssetCheckSpec(
            "shards_intact",
            asset="release",
            blocking=True,
            description="every release audio and code shard exists with the sha256 recorded at "
            "release time",
        )
    ],
    kinds={"json", "parquet"},
)
def release(
    context: dg.AssetExecutionContext, voxlake_project: VoxlakeProject
) -> dg.MaterializeResult:
    """Create missing releases, verify all configured ones."""
    outcome = create_configured_releases(
        voxlake_project.load(), info=context.log.info, warn=context.log.warning
    )
    return dg.MaterializeResult(
        metadata={
            "created": dg.MetadataValue.json(outcome.created),
            "existing": dg.MetadataValue.json(outcome.kept),
            "summary": dg.MetadataValue.json(outcome.summaries),
            "audit_reports": dg.MetadataValue.json(outcome.audit_reports),
            "audit_problems": dg.MetadataValue.json(
                {name: problems[:20] for name, problems in outcome.audit_problems.items()}
            ),
        },
        check_results=[check_result("shards_intact", check_shards_intact(outcome.problems))],
    )
