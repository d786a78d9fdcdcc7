"""Render the quality report: one self-contained HTML page over a set of quality decisions.

The page needs nothing but itself: CSS is inline, plots are PNGs drawn with
matplotlib's Agg canvas and embedded as base64 `data:` URIs, and the example
clips are 16-bit WAVs embedded the same way. A Content-Security-Policy meta tag
forbids every network fetch and every script, so a report opened from disk (or
mailed around) can neither phone home nor run anything a transcript smuggled in;
every string that comes from data is HTML-escaped as well.

This module only renders. Reading the lake, joining manifests and decoding
audio is `pipelines.report`'s job; both share `select_clips`, which decides
which utterances get a player.

>>> frame = pl.DataFrame({
...     "utterance_id": ["s/a", "s/b", "s/c"], "source": ["s"] * 3,
...     "status": ["accepted", "accepted", "rejected"],
...     "reject_stage": [None, None, "policy"], "reject_rule": [None, None, "min_snr_db"],
...     "reject_value": [None, None, 4.9], "reject_threshold": [None, None, 5.0],
...     "wada_snr_db": [20.0, 8.0, 4.9], "policy_version": ["v1"] * 3,
... })
>>> select_clips(frame)
{'lowest_snr': ['s/b', 's/a'], 'borderline': ['s/c']}
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from schemas.quality import QUALITY_ARROW_SCHEMA

Section = Literal["lowest_snr", "borderline"]
SECTIONS: tuple[Section, ...] = ("lowest_snr", "borderline")
# How many utterances each listening table holds.
EXAMPLES_PER_SECTION = 10
# Floor on |threshold| in the relative margin, so a threshold of 0 does not divide by zero.
MARGIN_FLOOR = 1e-9
# Stages in pipeline order: the rejections table reads top to bottom like the pipeline.
STAGE_ORDER = {"ingest": 0, "decode": 1, "policy": 2}
# Transcripts longer than this (characters) are cut in the tables; the page stays readable.
MAX_TEXT_CHARS = 300
# Bins per histogram, shared by the accepted and rejected series of one plot.
HISTOGRAM_BINS = 30
# Plot size in pixels (figure inches × dpi), also written into the <img> tag.
PLOT_WIDTH_PX, PLOT_HEIGHT_PX, PLOT_DPI = 400, 250, 100
ACCEPTED_COLOR = "#1f77b4"
REJECTED_COLOR = "#d62728"
# Columns the report adds to the QualityRecord columns (from the manifest).
EXTRA_COLUMNS: dict[str, pl.DataType] = {"text": pl.String(), "speaker": pl.String()}

# Everything the page may load is inline; no fetch, no script, no form, no frame.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src data:; media-src data:; style-src 'unsafe-inline'; "
    "script-src 'none'; base-uri 'none'; form-action 'none'"
)


@dataclass(frozen=True)
class Histogram:
    """One measured quantity plotted per source: its column, label, unit and narrowest x range.

    `min_span` (in `unit`) keeps a plot of nearly equal values (every clipping
    ratio 0, every duration 3 s) from zooming into rounding noise.
    """

    column: str
    label: str
    unit: str
    min_span: float


HISTOGRAMS: tuple[Histogram, ...] = (
    Histogram("wada_snr_db", "WADA SNR", "dB", min_span=2.0),
    Histogram("duration_s", "Duration", "s", min_span=0.2),
    Histogram("clipping_ratio", "Clipping ratio", "fraction of samples", min_span=1e-3),
    Histogram("bandwidth_hz", "Effective bandwidth", "Hz", min_span=200.0),
)


@dataclass(frozen=True)
class Clip:
    """The audio of one example utterance, for one listening table.

    `wav_bytes` is a complete WAV file (16 kHz, 16-bit mono from `pipelines.report`);
    `duration_s` is the length of that audio in seconds when known, so the page
    can say when a clip holds only the start of a longer utterance.

    >>> Clip("s/a", "borderline", b"RIFF").section
    'borderline'
    """

    utterance_id: str
    section: Section
    wav_bytes: bytes
    duration_s: float | None = None

    def __post_init__(self) -> None:
        if self.section not in SECTIONS:
            raise ValueError(f"clip section must be one of {SECTIONS}, got {self.section!r}")


def _report_schema() -> dict[str, pl.DataType]:
    schema = dict(pl.from_arrow(QUALITY_ARROW_SCHEMA.empty_table()).schema)  # type: ignore[union-attr]
    schema.update(EXTRA_COLUMNS)
    return schema


def normalize_rows(rows: pl.DataFrame) -> pl.DataFrame:
    """`rows` with every QualityRecord column plus `text` and `speaker`, typed as in the lake.

    Missing columns are added as nulls, numeric columns are cast to the lake's
    types, and NaN becomes null in float columns (a NaN measure means "not
    measured"; infinities are kept and filtered where they would matter).
    """
    schema = _report_schema()
    columns = []
    for name, dtype in schema.items():
        if name not in rows.columns:
            # A Series, not a literal: a literal would give a frame without columns one row.
            columns.append(pl.lit(pl.Series(name, [None] * rows.height, dtype=dtype)))
        elif dtype == pl.Float64:
            columns.append(pl.col(name).cast(pl.Float64).fill_nan(None))
        else:
            columns.append(pl.col(name).cast(dtype))
    extra = [pl.col(c) for c in rows.columns if c not in schema]
    return rows.select(columns + extra)


def _borderline(frame: pl.DataFrame, n: int) -> pl.DataFrame:
    """The `n` policy rejections closest to their threshold, with their relative margin."""
    margin = (pl.col("reject_value") - pl.col("reject_threshold")).abs() / pl.max_horizontal(
        pl.col("reject_threshold").abs(), pl.lit(MARGIN_FLOOR)
    )
    # Lazy, so that sort + head runs as a top-k instead of sorting every rejection.
    return (
        frame.lazy()
        .filter(
            (pl.col("status") == "rejected")
            & (pl.col("reject_stage") == "policy")
            & pl.col("reject_value").is_finite()
            & pl.col("reject_threshold").is_finite()
        )
        .with_columns(margin.alias("relative_margin"))
        .sort(["relative_margin", "utterance_id"])
        .head(n)
        .collect()
    )


def _lowest_snr(frame: pl.DataFrame, n: int) -> pl.DataFrame:
    """The `n` accepted utterances with the lowest finite WADA SNR."""
    return (
        frame.lazy()
        .filter((pl.col("status") == "accepted") & pl.col("wada_snr_db").is_finite())
        .sort(["wada_snr_db", "utterance_id"])
        .head(n)
        .collect()
    )


def select_clips(rows: pl.DataFrame, n: int = EXAMPLES_PER_SECTION) -> dict[str, list[str]]:
    """The utterance ids of both listening tables, in table order, at most `n` each.

    - `lowest_snr`: accepted utterances with the lowest finite WADA SNR (dB);
      ties broken by utterance id.
    - `borderline`: utterances rejected at stage `policy` with the smallest
      relative margin |reject_value − reject_threshold| / max(|reject_threshold|, 1e-9)
      (a dimensionless fraction of the threshold); rows without a finite value
      and threshold have no margin and are left out.
    """
    frame = normalize_rows(rows)
    return {
        "lowest_snr": _lowest_snr(frame, n)["utterance_id"].to_list(),
        "borderline": _borderline(frame, n)["utterance_id"].to_list(),
    }


# ---------------------------------------------------------------- formatting helpers


def _esc(value: object) -> str:
    """HTML-escape a data value (quotes included); None becomes an empty string."""
    return "" if value is None else html.escape(str(value), quote=True)


def _num(value: float | int | None, digits: int = 1) -> str:
    """A number with `digits` decimals; an em dash for missing or NaN, 'inf' spelled out."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "−inf"
    return f"{value:,.{digits}f}"


def _general(value: float | None) -> str:
    """A rule's value or threshold, whatever its scale: 4.8, 0.0011, 39565, 1.5e+07."""
    if value is None or math.isnan(value):
        return "—"
    return f"{value:.6g}"


def _margin(relative_margin: float, threshold: float) -> str:
    """The relative margin as a percentage of the threshold; none for a zero threshold."""
    if abs(threshold) < MARGIN_FLOOR:
        return "threshold 0: no relative margin"
    return f"margin {100.0 * relative_margin:.3g} %"


def _sci(value: float | None) -> str:
    """Small ratios (clipping) in a compact form: 0, 1.2e-04, 0.031."""
    if value is None or math.isnan(value):
        return "—"
    if value == 0:
        return "0"
    return f"{value:.2e}" if abs(value) < 0.01 else f"{value:.3f}"


def _hours(seconds: float | None) -> str:
    """Seconds as hours with three decimals (the report's unit for amounts of audio)."""
    return f"{(seconds or 0.0) / 3600.0:,.3f}"


def _text(value: str | None) -> str:
    """A transcript, cut to MAX_TEXT_CHARS before escaping (never inside an entity)."""
    if value is None:
        return '<span class="muted">(no text)</span>'
    if len(value) > MAX_TEXT_CHARS:
        return _esc(value[:MAX_TEXT_CHARS]) + "…"
    return _esc(value)


def _table(
    headers: Sequence[str], body: Iterable[str], css_class: str = "", numeric_from: int = 99
) -> str:
    """An HTML table; `headers` are trusted markup, `body` are complete `<tr>` rows."""
    cells = "".join(
        f'<th class="num">{h}</th>' if i >= numeric_from else f"<th>{h}</th>"
        for i, h in enumerate(headers)
    )
    rows = "\n".join(body)
    return (
        f'<table class="{css_class}"><thead><tr>{cells}</tr></thead>'
        f"<tbody>\n{rows}\n</tbody></table>"
    )


def _finite(values: pl.Series) -> np.ndarray:
    array = values.drop_nulls().cast(pl.Float64).to_numpy()
    return array[np.isfinite(array)]


# ---------------------------------------------------------------- sections


def _header(frame: pl.DataFrame, title: str, generated_by: str, generated_at: dt.datetime) -> str:
    accepted = frame.filter(pl.col("status") == "accepted")
    versions = sorted(v for v in frame["policy_version"].unique().to_list() if v is not None)
    versions_html = ", ".join(f"<code>{_esc(v)}</code>" for v in versions) or "—"
    total_s = _finite(frame["duration_s"]).sum()
    accepted_s = _finite(accepted["duration_s"]).sum()
    facts = [
        ("generated", _esc(generated_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))),
        ("generated by", _esc(generated_by)),
        ("policy version" + ("s" if len(versions) > 1 else ""), versions_html),
        ("sources", str(frame["source"].n_unique())),
        ("utterances", f"{frame.height:,}"),
        ("accepted", f'<span id="total-accepted">{accepted.height:,}</span>'),
        ("rejected", f'<span id="total-rejected">{frame.height - accepted.height:,}</span>'),
        ("hours, accepted / all", f"{_hours(accepted_s)} / {_hours(total_s)}"),
    ]
    items = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
    warning = ""
    if len(versions) > 1:
        warning = (
            '<p class="warn">These decisions were made under more than one policy version: '
            "re-run the quality step for the older units to compare like with like.</p>"
        )
    return f'<header><h1>{_esc(title)}</h1><dl class="facts">{items}</dl>{warning}</header>'


def _per_source(frame: pl.DataFrame) -> str:
    stats = (
        frame.group_by("source")
        .agg(
            pl.len().alias("inputs"),
            (pl.col("status") == "accepted").sum().alias("accepted"),
            (pl.col("status") == "rejected").sum().alias("rejected"),
            pl.col("duration_s").filter(pl.col("status") == "accepted").sum().alias("acc_s"),
            pl.col("duration_s").filter(pl.col("status") == "rejected").sum().alias("rej_s"),
            pl.col("wada_snr_db")
            .filter((pl.col("status") == "accepted") & pl.col("wada_snr_db").is_finite())
            .median()
            .alias("median_snr_db"),
        )
        .sort("source")
    )
    body = []
    for row in stats.iter_rows(named=True):
        share = 100.0 * row["accepted"] / row["inputs"] if row["inputs"] else 0.0
        body.append(
            f'<tr data-source="{_esc(row["source"])}"><td>{_esc(row["source"])}</td>'
            f'<td class="num n-inputs">{row["inputs"]}</td>'
            f'<td class="num n-accepted">{row["accepted"]}</td>'
            f'<td class="num n-rejected">{row["rejected"]}</td>'
            f'<td class="num">{share:.1f} %</td>'
            f'<td class="num">{_hours(row["acc_s"])}</td>'
            f'<td class="num">{_hours(row["rej_s"])}</td>'
            f'<td class="num">{_num(row["median_snr_db"])}</td></tr>'
        )
    headers = [
        "source",
        "inputs",
        "accepted",
        "rejected",
        "accepted share",
        "accepted hours",
        "rejected hours",
        "median WADA SNR of accepted (dB)",
    ]
    return (
        '<section id="per-source"><h2>Per source</h2>'
        + _table(headers, body, "per-source", numeric_from=1)
        + "</section>"
    )


def _by_language(frame: pl.DataFrame) -> str:
    stats = (
        frame.with_columns(pl.col("language").fill_null("und"))
        .group_by("source", "language")
        .agg(
            (pl.col("status") == "accepted").sum().alias("accepted"),
            pl.col("duration_s").filter(pl.col("status") == "accepted").sum().alias("acc_s"),
            (pl.col("status") == "rejected").sum().alias("rejected"),
            pl.col("duration_s").filter(pl.col("status") == "rejected").sum().alias("rej_s"),
        )
        .sort("source", "language")
    )
    body = [
        f'<tr data-source="{_esc(row["source"])}" data-language="{_esc(row["language"])}">'
        f"<td>{_esc(row['source'])}</td><td>{_esc(row['language'])}</td>"
        f'<td class="num n-accepted">{row["accepted"]}</td>'
        f'<td class="num">{_hours(row["acc_s"])}</td>'
        f'<td class="num n-rejected">{row["rejected"]}</td>'
        f'<td class="num">{_hours(row["rej_s"])}</td></tr>'
        for row in stats.iter_rows(named=True)
    ]
    headers = [
        "source",
        "language",
        "accepted utterances",
        "accepted hours",
        "rejected utterances",
        "rejected hours",
    ]
    return (
        '<section id="by-language"><h2>Hours and utterances by source, language and status</h2>'
        '<p class="muted">Hours are measured durations (declared ones where audio was never '
        'decoded); language "und" means the corpus does not say.</p>'
        + _table(headers, body, "by-language", numeric_from=2)
        + "</section>"
    )


def png_data_uri(figure: Figure) -> str:
    """The figure as a `data:image/png;base64,…` URI with stable bytes."""
    buffer = io.BytesIO()
    # No "Software" tag: the same data gives the same bytes whatever matplotlib version.
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def histogram_png(
    accepted: np.ndarray, rejected: np.ndarray, xlabel: str, min_span: float = 1.0
) -> str:
    """Overlaid histograms of accepted and rejected values, as a `data:image/png` URI.

    Both series share one set of HISTOGRAM_BINS bins spanning their finite values
    (widened symmetrically to at least `min_span`, in the values' unit), so bar
    heights compare directly. Needs at least one value in either series.
    """
    values = np.concatenate([accepted, rejected])
    if values.size == 0:
        raise ValueError("histogram_png needs at least one finite value")
    low, high = float(values.min()), float(values.max())
    if high - low < min_span:
        middle = (low + high) / 2.0
        low, high = middle - min_span / 2.0, middle + min_span / 2.0
        if low < 0.0 <= float(values.min()):  # no negative axis for non-negative data
            low, high = 0.0, high - low
    bins = np.linspace(low, high, HISTOGRAM_BINS + 1)
    figure = Figure(
        figsize=(PLOT_WIDTH_PX / PLOT_DPI, PLOT_HEIGHT_PX / PLOT_DPI),
        dpi=PLOT_DPI,
        layout="constrained",
    )
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for series, label, color in (
        (accepted, "accepted", ACCEPTED_COLOR),
        (rejected, "rejected", REJECTED_COLOR),
    ):
        if series.size:
            # One filled step outline per series: drawing cost does not grow with the bins.
            counts, _ = np.histogram(series, bins=bins)
            axes.stairs(
                counts, bins, fill=True, alpha=0.55, color=color, label=f"{label} ({series.size})"
            )
    axes.set_xlabel(xlabel)
    axes.set_ylabel("utterances")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    # Small ratios (clipping) read better as "×1e-3" than as 0.0002, 0.0004, ...
    axes.ticklabel_format(axis="x", style="sci", scilimits=(-2, 5), useOffset=False)
    # Above the axes, so the legend never hides a bar.
    axes.legend(
        loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=2, fontsize="small", frameon=False
    )
    axes.grid(axis="y", alpha=0.3)
    return png_data_uri(figure)


def _distributions(frame: pl.DataFrame) -> str:
    blocks = []
    for source in sorted(frame["source"].unique().to_list()):
        of_source = frame.filter(pl.col("source") == source)
        accepted = of_source.filter(pl.col("status") == "accepted")
        rejected = of_source.filter(pl.col("status") == "rejected")
        plots = []
        for spec in HISTOGRAMS:
            caption = f"{spec.label} ({spec.unit})"
            acc, rej = _finite(accepted[spec.column]), _finite(rejected[spec.column])
            if acc.size + rej.size == 0:
                plots.append(
                    f'<figure class="plot nodata"><figcaption>{caption}</figcaption>'
                    '<p class="muted">no data</p></figure>'
                )
                continue
            uri = histogram_png(acc, rej, caption, spec.min_span)
            plots.append(
                f'<figure class="plot"><figcaption>{caption}</figcaption>'
                f'<img src="{uri}" alt="{_esc(source)}: histogram of {caption}" '
                f'width="{PLOT_WIDTH_PX}" height="{PLOT_HEIGHT_PX}"></figure>'
            )
        blocks.append(
            f'<div class="source-plots" data-source="{_esc(source)}">'
            f'<h3>{_esc(source)}</h3><div class="plots">{"".join(plots)}</div></div>'
        )
    return (
        '<section id="distributions"><h2>Distributions per source</h2>'
        '<p class="muted">Accepted in blue, rejected in red, on shared bins. Utterances '
        "that were never measured (rejected at ingest or decode) are not in these plots.</p>"
        + "".join(blocks)
        + "</section>"
    )


def _rejections(frame: pl.DataFrame) -> str:
    rejected = frame.filter(pl.col("status") == "rejected").with_columns(
        pl.col("reject_stage").fill_null("(unknown)"), pl.col("reject_rule").fill_null("(none)")
    )
    if rejected.height == 0:
        return '<section id="rejections"><h2>Rejections</h2><p>No rejections.</p></section>'
    stats = (
        rejected.sort("utterance_id")
        .group_by("reject_stage", "reject_rule")
        .agg(
            pl.len().alias("count"),
            pl.col("utterance_id").first().alias("example_id"),
            pl.col("reject_message").first().alias("example_message"),
            pl.col("source").alias("sources"),
        )
        .with_columns(
            pl.col("reject_stage").replace_strict(STAGE_ORDER, default=9).alias("stage_order")
        )
        .sort(["stage_order", "count", "reject_rule"], descending=[False, True, False])
    )
    body = []
    for row in stats.iter_rows(named=True):
        per_source: dict[str, int] = {}
        for name in row["sources"]:
            per_source[name] = per_source.get(name, 0) + 1
        sources = ", ".join(f"{_esc(k)}: {v}" for k, v in sorted(per_source.items()))
        share = 100.0 * row["count"] / rejected.height
        body.append(
            f'<tr data-stage="{_esc(row["reject_stage"])}" data-rule="{_esc(row["reject_rule"])}">'
            f"<td>{_esc(row['reject_stage'])}</td><td><code>{_esc(row['reject_rule'])}</code></td>"
            f'<td class="num n-rejected">{row["count"]}</td><td class="num">{share:.1f} %</td>'
            f"<td>{sources}</td>"
            f"<td><code>{_esc(row['example_id'])}</code><br>{_esc(row['example_message'])}</td>"
            "</tr>"
        )
    headers = ["stage", "rule", "utterances", "share of rejections", "per source", "example"]
    return (
        '<section id="rejections"><h2>Rejections by stage and rule</h2>'
        '<p class="muted">The rule is the first one that fired; the example is the '
        "rejected utterance with the smallest id.</p>"
        + _table(headers, body, "rejections")
        + "</section>"
    )


def _player(clip: Clip | None, duration_s: float | None) -> str:
    if clip is None:
        return '<span class="muted">audio unavailable</span>'
    uri = "data:audio/wav;base64," + base64.b64encode(clip.wav_bytes).decode("ascii")
    note = ""
    # A clip shorter than its utterance holds only its start (pipelines.report caps clips).
    if clip.duration_s is not None and duration_s is not None:
        if duration_s - clip.duration_s > 0.05:
            note = f'<br><span class="muted">first {clip.duration_s:.1f} s</span>'
    return f'<audio controls preload="metadata" src="{uri}"></audio>{note}'


def _examples(
    frame: pl.DataFrame, clips: dict[tuple[str, str], Clip], section: Section, n: int
) -> str:
    selected = _lowest_snr(frame, n) if section == "lowest_snr" else _borderline(frame, n)
    if section == "lowest_snr":
        title = "Lowest-SNR accepted"
        blurb = "Accepted utterances with the lowest WADA SNR: is the SNR floor high enough?"
    else:
        title = "Borderline rejections"
        blurb = (
            "Policy rejections closest to their threshold (relative margin "
            "|value − threshold| / |threshold|): is the threshold too strict?"
        )
    if selected.height == 0:
        return f'<section id="{section}"><h2>{title}</h2><p>No utterances.</p></section>'
    body = []
    for row in selected.iter_rows(named=True):
        clip = clips.get((section, row["utterance_id"]))
        if row["status"] == "rejected":
            rule = (
                f"<code>{_esc(row['reject_rule'])}</code>: {_general(row['reject_value'])} vs "
                f"{_general(row['reject_threshold'])} "
                f"({_margin(row['relative_margin'], row['reject_threshold'])})"
            )
            also = [r for r in (row["failed_rules"] or []) if r != row["reject_rule"]]
            if also:
                rule += "<br>also failed: " + ", ".join(f"<code>{_esc(r)}</code>" for r in also)
            if row["reject_message"]:
                rule += f'<br><span class="muted">{_esc(row["reject_message"])}</span>'
        else:
            rule = '<span class="muted">accepted</span>'
        body.append(
            f'<tr data-utterance="{_esc(row["utterance_id"])}">'
            f"<td>{_player(clip, row['duration_s'])}</td>"
            f"<td><code>{_esc(row['utterance_id'])}</code><br>"
            f'<span class="muted">{_esc(row["language"] or "und")}'
            f"{' · ' + _esc(row['speaker']) if row['speaker'] else ''}</span></td>"
            f'<td class="text" lang="{_esc(row["language"] or "")}">{_text(row["text"])}</td>'
            f'<td class="num">{_num(row["duration_s"], 2)}</td>'
            f'<td class="num">{_num(row["wada_snr_db"])}</td>'
            f'<td class="num">{_num(row["stnr_snr_db"])}</td>'
            f'<td class="num">{_sci(row["clipping_ratio"])}</td>'
            f'<td class="num">{_num(row["bandwidth_hz"], 0)}</td>'
            f"<td>{rule}</td></tr>"
        )
    headers = [
        "listen",
        "utterance",
        "text",
        "duration (s)",
        "WADA SNR (dB)",
        "STNR (dB)",
        "clipping ratio",
        "bandwidth (Hz)",
        "rule",
    ]
    return (
        f'<section id="{section}"><h2>{title}</h2><p class="muted">{blurb}</p>'
        + _table(headers, body, "examples")
        + "</section>"
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


def _md(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_summary(rows: pl.DataFrame) -> str:
    """A short markdown table per source, for Dagster metadata.

    Columns: accepted and rejected utterances, accepted hours, the median WADA
    SNR of accepted utterances (dB, finite values only) and the most frequent
    rejection as `stage/rule (count)` (ties broken by name). A total row
    follows when there is more than one source.
    """
    frame = normalize_rows(rows)
    lines = [
        "| source | accepted | rejected | accepted h | median WADA SNR (dB) | top rejection |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    sources = sorted(frame["source"].unique().to_list())
    groups = [(s, frame.filter(pl.col("source") == s)) for s in sources]
    if len(sources) > 1:
        groups.append(("**all**", frame))
    for name, part in groups:
        accepted = part.filter(pl.col("status") == "accepted")
        rejected = part.filter(pl.col("status") == "rejected")
        snr = _finite(accepted["wada_snr_db"])
        median = f"{float(np.median(snr)):.1f}" if snr.size else "—"
        top = "—"
        if rejected.height:
            counts = (
                rejected.select(
                    pl.concat_str(
                        pl.col("reject_stage").fill_null("?"),
                        pl.col("reject_rule").fill_null("?"),
                        separator="/",
                    ).alias("rule")
                )
                .group_by("rule")
                .len()
                .sort(["len", "rule"], descending=[True, False])
            )
            top = f"{counts['rule'][0]} ({counts['len'][0]})"
        lines.append(
            f"| {_md(name)} | {accepted.height} | {rejected.height} | "
            f"{_hours(_finite(accepted['duration_s']).sum())} | {median} | {_md(top)} |"
        )
    return "\n".join(lines) + "\n"
