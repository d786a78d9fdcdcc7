"""The config-driven `release` asset: creates the releases listed in voxlake.yaml.

Releases are immutable: one that exists is left as it is (a changed spec for
an existing name is reported, never applied). Check `shards_intact`: every
shard of every release still has the sha256 recorded when it was released.
"""

import dagster as dg

from assets.resources import VoxlakeProject
from pipelines.catalogue.build import update_catalogue
from pipelines.releases.audit import verify_release_shards
from pipelines.releases.create import create_release, load_release, release_summary

RELEASE_GROUP = "releases"


@dg.asset(
    key="release",
    group_name=RELEASE_GROUP,
    deps=["catalogue"],
    pool="catalogue",
    description="Creates the releases named under `releases:` in voxlake.yaml "
    "(immutable selections of shards with lineage) and registers them in the catalogue.",
    check_specs=[
        dg.AssetCheckSpec(
            "shards_intact",
            asset="release",
            blocking=True,
            description="every release shard's sha256 equals the one recorded at release time",
        )
    ],
    kinds={"json", "parquet"},
)
def release(context: dg.AssetExecutionContext, project: VoxlakeProject) -> dg.MaterializeResult:
    """Create missing releases, verify all configured ones."""
    loaded = project.load()
    created, kept, problems = [], [], []
    for spec in loaded.config.releases:
        if loaded.lake.release_dir(spec.name).exists():
            existing, _ = load_release(loaded, spec.name)
            same = (existing.where, existing.split_by, existing.dev_fraction,
                    existing.test_fraction, existing.dedup) == (
                spec.where, spec.split_by, spec.dev, spec.test, spec.dedup)
            if not same:
                context.log.warning(
                    f"release {spec.name!r} exists with other parameters; releases are "
                    "immutable: give the new selection a new name"
                )
            kept.append(spec.name)
            continue
        made = create_release(loaded, spec)
        created.append(spec.name)
        context.log.info(
            f"release {spec.name}: {made.release.n_utterances} utterances, "
            f"{made.release.duration_s / 3600:.4f} h in {len(made.release.shards)} shards"
        )
    update_catalogue(loaded)
    summaries = {}
    for name in created + kept:
        problems += verify_release_shards(loaded, name)
        _, utterances = load_release(loaded, name)
        summaries[name] = release_summary(utterances).to_dicts()
    return dg.MaterializeResult(
        metadata={
            "created": dg.MetadataValue.json(created),
            "existing": dg.MetadataValue.json(kept),
            "summary": dg.MetadataValue.json(summaries),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="shards_intact",
                passed=not problems,
                metadata={"problems": dg.MetadataValue.json(problems[:20])},
            )
        ],
    )
