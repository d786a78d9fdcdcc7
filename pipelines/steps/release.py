"""The `release` step: create the releases voxlake.yaml names, register and verify them.

Releases are immutable: `create_configured_releases` creates each configured
release that does not exist yet and keeps an existing one as it is (a changed
spec for an existing name is reported, never applied), then registers them in
the catalogue in one update and verifies every configured release's audio and code
shards. Each release it creates is then audited (`pipelines.releases.audit`), and
the audit's HTML report written to `lake/reports/audit-<release>.html`.
`create_and_register` creates ONE release from a `ReleaseSpec` and registers it:
what `voxlake release create` does.

Check of the `release` asset: `check_shards_intact`, every audio shard and every code
shard of every configured release still exists with the sha256 recorded when it was
released.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pipelines.catalogue.build import update_catalogue
from pipelines.project import Project
from pipelines.releases.audit import audit, verify_release_shards
from pipelines.releases.create import (
    CreatedRelease,
    create_release,
    load_release,
    release_summary,
)
from pipelines.steps.checks import CheckOutcome
from schemas import Release, ReleaseSpec

# Shard problems listed in the check's metadata; the count is unbounded.
MAX_PROBLEMS_SHOWN = 20
# Utterances per source the audit of a new release re-measures, re-tokenizes and plays.
AUDIT_SAMPLE_PER_SOURCE = 10
AUDIT_SEED = 0


@dataclass
class ReleasesOutcome:
    """What `create_configured_releases` did: names created and kept, shard problems."""

    created: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # Hours and utterances per split, source and language, by release name.
    summaries: dict[str, list[dict]] = field(default_factory=dict)
    # By release created: its audit report, and the audit's problems.
    audit_reports: dict[str, str] = field(default_factory=dict)
    audit_problems: dict[str, list[str]] = field(default_factory=dict)


def matches_spec(release: Release, spec: ReleaseSpec) -> bool:
    """True when an existing release was made with exactly `spec`'s selection and split."""
    return (
        release.where,
        release.split_by,
        release.dev_fraction,
        release.test_fraction,
        release.dedup,
    ) == (spec.where, spec.split_by, spec.dev, spec.test, spec.dedup)


def create_and_register(project: Project, spec: ReleaseSpec) -> CreatedRelease:
    """Create the release `spec` and register it in the catalogue.

    Raises `ReleaseError` when the release exists (releases are immutable) or the
    catalogue cannot give it a selection.
    """
    made = create_release(project, spec)
    update_catalogue(project)
    return made


def create_configured_releases(
    project: Project,
    info: Callable[[str], None] = lambda message: None,
    warn: Callable[[str], None] = lambda message: None,
) -> ReleasesOutcome:
    """Create the configured releases that do not exist, register all, verify their shards.

    `info` hears of each release created, `warn` of each existing release whose
    spec in voxlake.yaml differs from the one it was made with.
    """
    outcome = ReleasesOutcome()
    for spec in project.config.releases:
        if project.lake.release_dir(spec.name).exists():
            existing, _ = load_release(project, spec.name)
            if not matches_spec(existing, spec):
                warn(
                    f"release {spec.name!r} exists with other parameters; releases are "
                    "immutable: give the new selection a new name"
                )
            outcome.kept.append(spec.name)
            continue
        made = create_release(project, spec)
        outcome.created.append(spec.name)
        info(
            f"release {spec.name}: {made.release.n_utterances} utterances, "
            f"{made.release.duration_s / 3600:.4f} h in {len(made.release.shards)} audio and "
            f"{len(made.release.code_shards)} code shards"
        )
    # One update registers every release created above; each was selected from the
    # catalogue as it stood before this step.
    update_catalogue(project)
    for name in outcome.created + outcome.kept:
        outcome.problems += verify_release_shards(project, name)
        _, utterances = load_release(project, name)
        outcome.summaries[name] = release_summary(utterances).to_dicts()
    for name in outcome.created:
        report = project.lake.reports_dir() / f"audit-{name}.html"
        result = audit(
            project, release=name, sample=AUDIT_SAMPLE_PER_SOURCE, seed=AUDIT_SEED, report=report
        )
        outcome.audit_reports[name] = str(report)
        outcome.audit_problems[name] = result.problems
        if result.passed:
            info(f"release {name}: audit passed, report {report}")
        else:
            warn(f"release {name}: audit found {len(result.problems)} problems, report {report}")
    return outcome


def check_shards_intact(problems: list[str]) -> CheckOutcome:
    """Passes when no audio or code shard of a release is missing or changed (`problems` from
    `verify_release_shards`)."""
    return CheckOutcome(passed=not problems, metadata={"problems": problems[:MAX_PROBLEMS_SHOWN]})
