"""Assemble the quality report from a project's lake and write it as one HTML file.

`load_report_rows` reads every unit's quality decisions (one `QualityRecord` per
utterance) joined with their manifest rows for the transcript, the speaker and
the audio reference (`pipelines.lake.views.decided_rows`, as every step reads
them). `report_clips` decodes the utterances `quality.report.select_clips` picks
(lowest-SNR accepted, borderline rejections) with `pipelines.audio`, exactly as
the quality step saw them (16 kHz mono, cut to the segment), and encodes each as
a 16-bit WAV. `write_report` renders the page with
`quality.report.render_report` and writes it atomically.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import polars as pl
import soundfile as sf

from pipelines.audio.decode import AudioDecodeError
from pipelines.audio.opener import source_opener
from pipelines.audio.pcm import pcm16
from pipelines.audio.prepare import PreparedAudio, Segment, prepare_many
from pipelines.lake.atomic import write_bytes_atomic
from pipelines.lake.views import decided_rows
from pipelines.project import Project
from quality.report.rows import Clip, normalize_rows, select_clips
from schemas import SourceConfig
from schemas.audio import TARGET_SAMPLE_RATE_HZ

logger = logging.getLogger(__name__)

# Longest audio embedded per example (seconds): 20 clips of 30 s would make a 26 MB page;
# the page says when a clip holds only the start of its utterance.
MAX_CLIP_S = 20.0


def _quality_files(project: Project, source: str | None) -> list[tuple[str, Path]]:
    """(source, file) for every quality file of `source`, or of every source in the lake."""
    quality_root = project.lake.quality_dir()
    if source is not None:
        sources = [source]
    elif quality_root.is_dir():
        sources = sorted(p.name for p in quality_root.iterdir() if p.is_dir())
    else:
        sources = []
    # Temporary files of an interrupted writer are hidden ".<name>.<random>.tmp": not matched.
    return [(s, f) for s in sources for f in sorted((quality_root / s).glob("*.parquet"))]


def load_report_rows(project: Project, source: str | None = None) -> pl.DataFrame:
    """Quality decisions joined with their manifest rows, one row per utterance.

    Columns: those of `pipelines.lake.views.decided_rows` (every `QualityRecord`
    column, the manifest's `text`, `speaker`, `split`, `audio_path`,
    `audio_member`, `offset_s`, `is_segment` and declared duration), except that
    `duration_s` (s) is the measured duration, else the declared one: what the
    report counts as hours. Raises FileNotFoundError when a quality file has no
    manifest (the lake is inconsistent), and ValueError when a join does not
    give exactly one row per decision.
    """
    files = _quality_files(project, source)
    if not files:
        return normalize_rows(pl.DataFrame())
    rows = pl.concat(
        [decided_rows(project.lake, name, quality_file.stem) for name, quality_file in files],
        how="vertical",
    )
    return rows.with_columns(pl.coalesce("duration_s", "declared_duration_s").alias("duration_s"))


def wav16(prepared: PreparedAudio) -> bytes:
    """A prepared utterance as WAV bytes: 16 kHz, 16-bit PCM, mono (samples via `pcm16`)."""
    buffer = io.BytesIO()
    sf.write(buffer, pcm16(prepared.samples), TARGET_SAMPLE_RATE_HZ, format="WAV",
             subtype="PCM_16")  # fmt: skip
    return buffer.getvalue()


def _decode_source(
    project: Project, source: SourceConfig, picked: pl.DataFrame
) -> Iterator[tuple[int, PreparedAudio | AudioDecodeError]]:
    """Decode one source's picked rows (`picked` has a `row` index column)."""
    # The measured duration is what the quality step cut, so the cut always fits the
    # audio; the cap keeps the page small.
    segments = [
        Segment(
            audio_path=row["audio_path"],
            audio_member=row["audio_member"],
            offset_s=row["offset_s"] or 0.0,
            duration_s=min(row["duration_s"], MAX_CLIP_S) if row["duration_s"] else MAX_CLIP_S,
        )
        for row in picked.iter_rows(named=True)
    ]
    rows = picked["row"].to_list()
    with source_opener(source, project.directory) as opener:
        for index, result in prepare_many(segments, opener.open):
            yield rows[index], result


def report_clips(project: Project, rows: pl.DataFrame) -> list[Clip]:
    """Decode the utterances `select_clips(rows)` picks into WAV clips (at most MAX_CLIP_S s each).

    Each clip is the audio the quality step measured: decoded, mixed to mono,
    resampled to 16 kHz and cut at the manifest's offset, for the measured
    duration. An utterance whose audio cannot be decoded now (moved, deleted,
    source no longer configured) gets no clip and a logged warning; the page
    then says "audio unavailable" for it.
    """
    chosen = select_clips(rows)
    wanted = [(section, u) for section, ids in chosen.items() for u in ids]
    if not wanted:
        return []
    order = pl.DataFrame(
        {"row": range(len(wanted)), "section": [s for s, _ in wanted],
         "utterance_id": [u for _, u in wanted]},
        schema_overrides={"row": pl.Int64},
    )  # fmt: skip
    picked = order.join(rows, on="utterance_id", how="left").sort("row")
    configured = {s.name: s for s in project.config.sources}
    results: dict[int, PreparedAudio | AudioDecodeError] = {}
    for (name,), of_source in picked.group_by("source", maintain_order=True):
        if name not in configured:
            logger.warning(
                "quality report: source %r is not in voxlake.yaml; no audio for its %d examples",
                name,
                of_source.height,
            )
            continue
        results.update(_decode_source(project, configured[str(name)], of_source))
    clips = []
    for row in picked.iter_rows(named=True):
        result = results.get(row["row"])
        if isinstance(result, AudioDecodeError):
            logger.warning(
                "quality report: no audio for %s (%s: %s)",
                row["utterance_id"],
                result.reason,
                result.message,
            )
        elif result is not None:
            clips.append(
                Clip(row["utterance_id"], row["section"], wav16(result), result.duration_s)
            )
    return clips


def _generator() -> str:
    try:
        return f"voxlake {metadata.version('voxlake')}"
    except metadata.PackageNotFoundError:
        return "voxlake (not installed; version unknown)"


def report_path(project: Project, source: str | None = None) -> Path:
    """Default report file: `lake/reports/quality.html`, or `quality-<source>.html`."""
    name = "quality.html" if source is None else f"quality-{source}.html"
    return project.lake.reports_dir() / name


def write_report(project: Project, out: Path | None = None, source: str | None = None) -> Path:
    """Render the quality report over the lake (or one `source`) and write it atomically.

    Default `out`: `report_path(project, source)`. A `source` not configured in
    `voxlake.yaml` is a KeyError naming the known ones. With no quality files
    yet, the page says so. Returns the path written.
    """
    if source is not None:
        project.config.source(source)
    rows = load_report_rows(project, source)
    clips = report_clips(project, rows)
    title = f"voxlake quality report: {project.directory.name}"
    if source is not None:
        title += f", source {source}"
    # Imported here: the report's plots load matplotlib, which the code location (every
    # run worker imports this module through the asset definitions) need not pay for.
    from quality.report.html import render_report

    html = render_report(rows, clips, title=title, generated_by=_generator())
    path = out or report_path(project, source)
    write_bytes_atomic(path, html.encode("utf-8"))
    return path
