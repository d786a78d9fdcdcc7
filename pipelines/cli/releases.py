"""Commands on releases: `release create | show | list`, `audit`,
`export vita-jsonl | hf | lhotse`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from pipelines.cli import render
from pipelines.cli.options import ProjectOption, fail, load
from pipelines.project import format_validation_error
from schemas import ReleaseSpec
from schemas.release import RELEASE_FILE


def release_create(
    name: Annotated[str, typer.Argument(help="release name (immutable once created)")],
    where: Annotated[str, typer.Option("--where", help="SQL predicate over utterances")] = "TRUE",
    split_by: Annotated[str, typer.Option("--split-by", help="speaker | utterance")] = "speaker",
    dev: Annotated[float, typer.Option("--dev", help="share of speakers in dev")] = 0.0,
    test: Annotated[float, typer.Option("--test", help="share of speakers in test")] = 0.0,
    dedup: Annotated[bool, typer.Option("--dedup", help="drop exact PCM duplicates")] = False,
    project_dir: ProjectOption = None,
) -> None:
    """Create an immutable release from the catalogue and register it."""
    from pipelines.releases.create import ReleaseError, load_release, release_summary
    from pipelines.steps.release import create_and_register

    project = load(project_dir)
    try:
        spec = ReleaseSpec(
            name=name, where=where, split_by=split_by, dev=dev, test=test, dedup=dedup
        )
    except ValidationError as error:
        raise fail(format_validation_error(Path("release"), error)) from error
    # The same path as the `release` asset: create, then register in the catalogue.
    try:
        made = create_and_register(project, spec)
    except ReleaseError as error:
        raise fail(str(error)) from error
    release = made.release
    render.print_message(
        f"release {name}: {release.n_utterances} utterances, "
        f"{release.duration_s / 3600:.4f} h, {len(release.shards)} audio shards, "
        f"{len(release.code_shards)} code shards, "
        f"{release.n_duplicates_dropped} duplicates dropped -> {made.folder}"
    )
    sets = ", ".join(f"{name} ({n})" for name, n in release.eval_sets.items()) or "none"
    render.print_message(
        f"evaluation sets (test only): {sets}; {release.n_held_back} utterances held back "
        "from every split (same PCM as an evaluation-set utterance)"
    )
    if release.tokenizer_is_demo:
        render.print_warning("codes come from the random-weight demo tokenizer")
    render.print_arrow(release_summary(load_release(project, name)[1]).to_arrow(), "table")


def release_show(
    name: Annotated[str, typer.Argument(help="release name")],
    project_dir: ProjectOption = None,
) -> None:
    """Print a release's lineage and hours per split, source and language."""
    from pipelines.releases.create import ReleaseError, load_release, release_summary

    project = load(project_dir)
    try:
        release, utterances = load_release(project, name)
    except ReleaseError as error:
        raise fail(str(error)) from error
    render.print_message(
        f"release {release.name} (created {release.created_at:%Y-%m-%d %H:%M} UTC)\n"
        f"  where:       {release.where}\n"
        f"  split by:    {release.split_by} (dev {release.dev_fraction}, "
        f"test {release.test_fraction}), dedup {release.dedup}\n"
        f"  utterances:  {release.n_utterances} ({release.duration_s / 3600:.4f} h), "
        f"{release.n_duplicates_dropped} duplicates dropped\n"
        f"  shards:      {len(release.shards)} audio, {len(release.code_shards)} codes\n"
        f"  policy:      {', '.join(release.policy_versions)}\n"
        f"  tokenizer:   {', '.join(t[:16] for t in release.tokenizer_sha256)}"
        f"{' (DEMO: random weights)' if release.tokenizer_is_demo else ''}\n"
        f"  code:        {release.code_version}"
    )
    render.print_arrow(release_summary(utterances).to_arrow(), "table")


def release_list(project_dir: ProjectOption = None) -> None:
    """List the releases in the lake."""
    from pipelines.releases.create import load_release

    project = load(project_dir)
    folder = project.lake.releases_dir()
    paths = sorted(folder.glob(f"*/{RELEASE_FILE}")) if folder.exists() else []
    render.print_release_list(load_release(project, path.parent.name)[0] for path in paths)


def audit(
    release: Annotated[str | None, typer.Option("--release", help="audit one release")] = None,
    source: Annotated[str | None, typer.Option("--source", help="audit one source")] = None,
    sample: Annotated[
        int,
        typer.Option(
            "--sample", min=0, help="utterances per source to re-measure, re-tokenize and play"
        ),
    ] = 20,
    seed: Annotated[int, typer.Option("--seed", help="seed of the sample's draw")] = 0,
    out: Annotated[
        Path | None, typer.Option("--out", help="HTML report (default lake/reports/audit.html)")
    ] = None,
    project_dir: ProjectOption = None,
) -> None:
    """Verify audio and code shards against the catalogue; re-measure, re-tokenize and
    write a report to listen to for a seeded sample per source."""
    from pipelines.catalogue.errors import CatalogueError
    from pipelines.releases.audit import audit as run_audit
    from pipelines.releases.create import ReleaseError

    project = load(project_dir)
    try:
        with render.status("auditing shards"):
            result = run_audit(
                project, release=release, source=source, sample=sample, seed=seed, report=out
            )
    except (CatalogueError, ReleaseError) as error:
        raise fail(str(error)) from error
    render.print_message(
        f"audit of {result.scope}: {result.shards} audio shards ({result.samples} samples), "
        f"{result.code_shards} code shards ({result.code_samples} samples), "
        f"{result.remeasured} re-measured, {result.retokenized} re-tokenized"
    )
    render.print_mismatches(result.problems[:50])
    render.print_message(f"audit report: {result.report_path}")
    if not result.passed:
        raise fail(f"{len(result.problems)} mismatches")
    render.print_passed("audit passed")


def export_vita(
    out: Annotated[Path, typer.Argument(help="output folder")],
    release: Annotated[str, typer.Option("--release", help="release name")],
    project_dir: ProjectOption = None,
) -> None:
    """VITA-Audio training JSONL (ASR + TTS), FLAC files and upstream code caches."""
    from pipelines.releases.create import ReleaseError
    from pipelines.releases.export.staging import ExportError
    from pipelines.releases.export.vita_jsonl import export_vita_jsonl

    try:
        stats = export_vita_jsonl(load(project_dir), release, out)
    except (ExportError, ReleaseError) as error:
        raise fail(str(error)) from error
    render.print_message(f"exported release {release} to {out}: {json.dumps(stats.counts())}")


def export_hf_command(
    out: Annotated[Path, typer.Argument(help="output folder (save_to_disk)")],
    release: Annotated[str, typer.Option("--release", help="release name")],
    codes_only: Annotated[
        bool,
        typer.Option(
            "--codes-only", help="no audio column: read the code shards only (much smaller)"
        ),
    ] = False,
    project_dir: ProjectOption = None,
) -> None:
    """A Hugging Face dataset (save_to_disk) with an Audio column and the codes."""
    from pipelines.releases.create import ReleaseError
    from pipelines.releases.export.hf import export_hf
    from pipelines.releases.export.staging import ExportError

    try:
        stats = export_hf(load(project_dir), release, out, with_audio=not codes_only)
    except (ExportError, ReleaseError) as error:
        raise fail(str(error)) from error
    render.print_message(f"exported release {release} to {out}: {json.dumps(stats.counts())}")


def export_lhotse_command(
    out: Annotated[Path, typer.Argument(help="output folder")],
    release: Annotated[str, typer.Option("--release", help="release name")],
    shar: Annotated[
        bool, typer.Option("--shar", help="lhotse Shar (audio inside tars) instead of manifests")
    ] = False,
    shard_size: Annotated[
        int, typer.Option("--shard-size", min=1, help="cuts per Shar shard")
    ] = 1000,
    relative_paths: Annotated[
        bool, typer.Option("--relative-paths", help="audio paths relative to the output folder")
    ] = False,
    project_dir: ProjectOption = None,
) -> None:
    """A lhotse CutSet: recordings, supervisions and cuts manifests with FLAC files, or Shar."""
    from pipelines.releases.create import ReleaseError
    from pipelines.releases.export.lhotse import export_lhotse
    from pipelines.releases.export.staging import ExportError
    from pipelines.sources.lhotse import LhotseMissingError

    try:
        stats = export_lhotse(
            load(project_dir),
            release,
            out,
            shar=shar,
            shard_size=shard_size,
            absolute_paths=not relative_paths,
        )
    except (ExportError, ReleaseError, LhotseMissingError) as error:
        raise fail(str(error)) from error
    render.print_message(f"exported release {release} to {out}: {json.dumps(stats.counts())}")
