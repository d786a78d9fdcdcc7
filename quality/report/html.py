"""Assemble the quality report: one self-contained HTML page over a set of quality decisions.

The page needs nothing but itself: CSS is inline, plots are PNGs drawn with
matplotlib's Agg canvas and embedded as base64 `data:` URIs, and the example
clips are 16-bit WAVs embedded the same way. A Content-Security-Policy meta tag
forbids every network fetch and every script, so a report opened from disk (or
mailed around) can neither phone home nor run anything a transcript smuggled in;
every string that comes from data is HTML-escaped as well.

This package only renders. Reading the lake, joining manifests and decoding
audio is `pipelines.steps.quality_report`'s job; both share `select_clips`
(`quality.report.rows`), which decides which utterances get a player.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from quality.report.formatting import _esc
from quality.report.rows import EXAMPLES_PER_SECTION, Clip, normalize_rows, select_clips
from quality.report.sections import (
    _by_language,
    _distributions,
    _examples,
    _header,
    _per_source,
    _rejections,
)

# Everything the page may load is inline; no fetch, no script, no form, no frame.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src data:; media-src data:; style-src 'unsafe-inline'; "
    "script-src 'none'; base-uri 'none'; form-action 'none'"
)


STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", "Noto Sans",
       "Noto Sans CJK SC", sans-serif; color: #222; margin: 0 auto; padding: 1.5em 2em;
       max-width: 1400px; background: #fff; }
h1 { font-size: 1.6em; margin: 0 0 .4em; }
h2 { font-size: 1.25em; margin: 1.6em 0 .5em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.05em; margin: 1em 0 .3em; }
code { font-family: "DejaVu Sans Mono", monospace; font-size: .92em; }
.muted { color: #666; }
.warn { color: #8a3b00; font-weight: 600; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: .15em 1.2em; margin: 0; }
dl.facts dt { color: #555; }
dl.facts dd { margin: 0; }
table { border-collapse: collapse; margin: .4em 0; }
th, td { border: 1px solid #ddd; padding: .3em .55em; vertical-align: top; text-align: left; }
th { background: #f3f3f3; }
tbody tr:nth-child(even) { background: #fafafa; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.text { max-width: 32em; }
.plots { display: flex; flex-wrap: wrap; gap: .8em; }
figure.plot { margin: 0; border: 1px solid #e3e3e3; padding: .3em; }
figure.plot figcaption { font-weight: 600; font-size: .92em; }
figure.nodata { width: 400px; }
audio { width: 230px; }
"""


def render_report(
    rows: pl.DataFrame,
    clips: list[Clip],
    title: str,
    generated_by: str,
    *,
    generated_at: dt.datetime | None = None,
) -> str:
    """One self-contained HTML document reporting on quality decisions.

    `rows`: one row per utterance with the QualityRecord columns plus `text` and
    `speaker` (missing columns count as null); `duration_s` is in seconds and
    is what the hours add up. `clips`: example audio for the utterances that
    `select_clips(rows)` picks; a clip for an utterance not in its section is a
    ValueError (it would otherwise silently disappear). Utterances of a section
    without a clip are listed with "audio unavailable". `generated_at` defaults
    to now (UTC).
    """
    frame = normalize_rows(rows)
    generated_at = generated_at or dt.datetime.now(dt.UTC)
    chosen = select_clips(frame, EXAMPLES_PER_SECTION)
    by_key: dict[tuple[str, str], Clip] = {}
    for clip in clips:
        if clip.utterance_id not in chosen[clip.section]:
            raise ValueError(
                f"clip for {clip.utterance_id!r} in section {clip.section!r}: that utterance "
                "is not one select_clips picks for the section"
            )
        by_key[(clip.section, clip.utterance_id)] = clip
    if frame.height == 0:
        sections = [
            "<section><h2>No quality records</h2><p>Nothing to report yet: run the "
            "quality step first.</p></section>"
        ]
    else:
        sections = [
            _per_source(frame),
            _by_language(frame),
            _distributions(frame),
            _rejections(frame),
            _examples(frame, by_key, "lowest_snr", EXAMPLES_PER_SECTION),
            _examples(frame, by_key, "borderline", EXAMPLES_PER_SECTION),
        ]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="{_esc(generated_by)}">\n'
        f"<title>{_esc(title)}</title>\n<style>{STYLE}</style></head>\n<body>\n"
        + _header(frame, title, generated_by, generated_at)
        + "\n<main>\n"
        + "\n".join(sections)
        + "\n</main>\n</body></html>\n"
    )
