"""Commands on releases: `release create | show | list`, `audit`,
`export vita-jsonl | hf | lhotse`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError

from pipelines.cli import render, render_tables
from pipelines.cli.options import FAILURE, ProjectOption, check_sources, fail, known, load
from pipelines.project import Project, format_validation_error
from schemas import ReleaseSpec
from schemas.release import RELEASE_FILE

if TYPE_CHECKING:
    import polars as pl

OverwriteOption = Annotated[
    bool,
    typer.Option("--overwrite", help="replace an earlier export in the output folder"),
]


def release_names(project: Project) -> list[str]:
    """The releases in the lake, by name."""
    folder = project.lake.releases_dir()
    return (
        sorted(p.parent.name for p in folder.glob(f"*/{RELEASE_FILE}")) if folder.exists() else []
    )


def require_release(project: Project, name: str, example: Callable[[str], str]) -> None:
    """Exit with a user error unless release `name` exists; `example(known name)` is the
    command to try instead."""
    names = release_names(project)
    if name in names:
        return
    hint = (
        example(names[0])
        if names
        else "voxlake release create v1 --where \"language = 'en'\"   (no release yet)"
    )
    raise fail(f"no release named {name!r} (known: {known(names)})", example=hint)


def release_rows(utterances: pl.DataFrame) -> tuple[list[str], list[list[str]]]:
    """A release's utterances per source and language: per split, hours, speakers."""
    import polars as pl

    kept = utterances.filter(pl.col("split").is_not_null())
    splits = [s for s in ("train", "dev", "test") if s in set(kept["split"].to_list())]
    splits += sorted(set(kept["split"].to_list()) - set(splits))
    groups = (
        kept.group_by("source", "language")
        .agg(
            *[(pl.col("split") == split).sum().alias(split) for split in splits],
            (pl.col("duration_s").sum() / 3600).alias("hours"),
            pl.col("speaker").n_unique().alias("speakers"),
        )
        .sort("source", "language", nulls_last=True)
    )
    rows = [
        [
            row["source"],
            row["language"] or "",
            *[str(row[split]) for split in splits],
            f"{row['hours']:.4f}",
            str(row["speakers"]),
        ]
        for row in groups.iter_rows(named=True)
    ]
    return ["source", "language", *splits, "hours", "speakers"], rows


def print_release_table(utterances: pl.DataFrame) -> None:
    """The utterances of a release per source and language, with a note on the columns."""
    headers, rows = release_rows(utterances)
    render_tables.print_rows(
        headers, rows, notes=["train, dev, test: utterances per split; hours: all splits"]
    )


def _export_error(error: Exception, command: str) -> typer.Exit:
    """An export refused: in the command line's words (the exporters speak of their Python
    keyword `overwrite=True`)."""
    message = str(error).replace("pass overwrite=True to", "--overwrite would")
    message = message.replace("overwrite=True", "--overwrite")
    example = f"{command} --overwrite   (or an empty folder)" if "not empty" in message else None
    return fail(message, example=example)


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
    from pipelines.releases.create import ReleaseError, load_release
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
    print_release_table(load_release(project, name)[1])


def release_show(
    name: Annotated[str, typer.Argument(help="release name")],
    project_dir: ProjectOption = None,
) -> None:
    """Print a release's lineage and hours per split, source and language."""
    from pipelines.lineage import short_sha256
    from pipelines.releases.create import load_release

    project = load(project_dir)
    require_release(project, name, lambda known: f"voxlake release show {known}")
    release, utterances = load_release(project, name)
    render.print_message(
        f"release {release.name} (created {release.created_at:%Y-%m-%d %H:%M} UTC)\n"
        f"  where:       {release.where}\n"
        f"  split by:    {release.split_by} (dev {release.dev_fraction}, "
        f"test {release.test_fraction}), dedup {release.dedup}\n"
        f"  utterances:  {release.n_utterances} ({release.duration_s / 3600:.4f} h), "
        f"{release.n_duplicates_dropped} duplicates dropped\n"
        f"  shards:      {len(release.shards)} audio, {len(release.code_shards)} codes\n"
        f"  policy:      {', '.join(short_sha256(p) for p in release.policy_versions)}\n"
        f"  tokenizer:   {', '.join(short_sha256(t) for t in release.tokenizer_sha256)}"
        f"{' (DEMO: random weights)' if release.tokenizer_is_demo else ''}\n"
        f"  code:        {release.code_version}\n"
        f"  (policy, tokenizer: the first 12 hex digits of their sha256)"
    )
    print_release_table(utterances)


def release_list(project_dir: ProjectOption = None) -> None:
    """List the releases in the lake."""
    from pipelines.releases.create import load_release

    project = load(project_dir)
    render_tables.print_release_list(
        load_release(project, name)[0] for name in release_names(project)
    )


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
    if release is not None:
        require_release(project, release, lambda known: f"voxlake audit --release {known}")
    check_sources(project, [source] if source else None, "voxlake audit")
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
        raise fail(f"{len(result.problems)} mismatches", code=FAILURE)
    render.print_passed("audit passed")


def export_vita(
    out: Annotated[Path, typer.Argument(help="output folder")],
    release: Annotated[str, typer.Option("--release", help="release name")],
    overwrite: OverwriteOption = False,
    project_dir: ProjectOption = None,
) -> None:
    """VITA-Audio training JSONL (ASR + TTS), FLAC files and upstream code caches."""
    from pipelines.releases.create import ReleaseError
    from pipelines.releases.export.staging import ExportError
    from pipelines.releases.export.vita_jsonl import export_vita_jsonl

    project = load(project_dir)
    command = f"voxlake export vita-jsonl {out} --release {release}"
    require_release(
        project, release, lambda known: f"voxlake export vita-jsonl {out} --release {known}"
    )
    try:
        stats = export_vita_jsonl(project, release, out, overwrite=overwrite)
    except (ExportError, ReleaseError) as error:
        raise _export_error(error, command) from error
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
    overwrite: OverwriteOption = False,
    project_dir: ProjectOption = None,
) -> None:
    """A Hugging Face dataset (save_to_disk) with an Audio column and the codes."""
    from pipelines.releases.create import ReleaseError
    from pipelines.releases.export.hf import export_hf
    from pipelines.releases.export.staging import ExportError

    project = load(project_dir)
    command = f"voxlake export hf {out} --release {release}"
    require_release(project, release, lambda known: f"voxlake export hf {out} --release {known}")
    try:
        stats = export_hf(project, release, out, with_audio=not codes_only, overwrite=overwrite)
    except (ExportError, ReleaseError) as error:
        raise _export_error(error, command) from error
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
    overwrite: OverwriteOption = False,
    project_dir: ProjectOption = None,
) -> None:
    """A lhotse CutSet: recordings, supervisions and cuts manifests with FLAC files, or Shar."""
    from pipelines.releases.create import ReleaseError
    from pipelines.releases.export.lhotse import export_lhotse
    from pipelines.releases.export.staging import ExportError
    from pipelines.sources.lhotse import LhotseMissingError

    project = load(project_dir)
    command = f"voxlake export lhotse {out} --release {release}"
    require_release(
        project, release, lambda known: f"voxlake export lhotse {out} --release {known}"
    )
    try:
        stats = export_lhotse(
            project,
            release,
            out,
            shar=shar,
            shard_size=shard_size,
            absolute_paths=not relative_paths,
            overwrite=overwrite,
        )
    except (ExportError, ReleaseError, LhotseMissingError) as error:
        raise _export_error(error, command) from error
    render.print_message(f"exported release {release} to {out}: {json.dumps(stats.counts())}")
