"""The audit's HTML report: a page an auditor reads and listens to, built from an `AuditResult`.

Sections: the verdict and what was checked; every problem; a table per shard
field (audio, codes) with each shard's sha256 match, members, samples and
duration; the sampled utterances' stored against re-measured values, with one
plot of the differences per measure; the re-tokenized codes' agreement with the
stored ones; a seeded random sample per source with a player for the FLAC
exactly as the audio shard stores it (what training sees), its transcript,
speaker, measures and code count; a link to the quality report.

The page needs nothing but itself (one file, opened from a `file://` URL or
mailed around): plots are PNG and the audio FLAC, both embedded as `data:` URIs,
and the quality report's Content-Security-Policy applies (no fetch, no script).
Every string that comes from data is HTML-escaped.

The page is built from `pipelines.releases.audit_records` alone; matplotlib is
imported only when a plot is drawn.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import math
import os
from collections.abc import Iterable
from pathlib import Path

from pipelines.lake.atomic import write_bytes_atomic
from pipelines.releases.audit_records import AuditResult, SampledUtterance, ShardCheck

# Measures compared between the catalogue and the re-measured audio: label, unit.
MEASURE_LABELS = {
    "wada_snr_db": ("WADA SNR", "dB"),
    "rms_dbfs": ("RMS level", "dB"),
    "silence_ratio": ("Silence ratio", "fraction"),
    "clipping_ratio": ("Clipping ratio", "fraction"),
    "bandwidth_hz": ("Effective bandwidth", "Hz"),
}
# Shards listed per field; the others are counted (a shard with a problem is always listed).
MAX_SHARD_ROWS = 500
MAX_PROBLEMS_SHOWN = 1000

# The quality report's policy, plus media from data: URIs only.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src data:; media-src data:; style-src 'unsafe-inline'; "
    "script-src 'none'; base-uri 'none'; form-action 'none'"
)

STYLE = """
body { font: 14px/1.45 system-ui, "DejaVu Sans", "Noto Sans", "Noto Sans CJK SC", sans-serif;
       color: #222; margin: 0 auto; padding: 1.5em 2em; max-width: 1400px; background: #fff; }
h1 { font-size: 1.6em; margin: 0 0 .4em; }
h2 { font-size: 1.25em; margin: 1.6em 0 .5em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.05em; margin: 1em 0 .3em; }
code { font-family: "DejaVu Sans Mono", monospace; font-size: .92em; }
.verdict { font-size: 1.4em; font-weight: 700; }
.ok { color: #1a7f37; } .bad { color: #cf222e; } .muted { color: #666; }
table { border-collapse: collapse; margin: .4em 0; }
th, td { border: 1px solid #ddd; padding: .3em .55em; vertical-align: top; text-align: left; }
th { background: #f3f3f3; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.text { max-width: 36em; }
.plots { display: flex; flex-wrap: wrap; gap: .8em; }
figure.plot { margin: 0; border: 1px solid #e3e3e3; padding: .3em; }
figure.plot figcaption { font-weight: 600; font-size: .92em; }
audio { width: 260px; }
"""


def _esc(value: object) -> str:
    return "" if value is None else html.escape(str(value), quote=True)


def _num(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}g}"


def _tick(ok: bool | None, missing: str = "missing") -> str:
    if ok is None:
        return f'<span class="bad">{missing}</span>'
    return '<span class="ok">match</span>' if ok else '<span class="bad">differs</span>'


def _shard_table(checks: list[ShardCheck]) -> str:
    if not checks:
        return "<p class='muted'>no shards in scope</p>"
    # Shards with a problem first, so that a cut list never hides one.
    ordered = sorted(checks, key=lambda c: (c.problems == 0, c.shard))
    shown = ordered[:MAX_SHARD_ROWS]
    rows = []
    for c in shown:
        members = (
            '<span class="ok">ok</span>'
            if c.wrong_members == 0
            else f'<span class="bad">{c.wrong_members} wrong</span>'
        )
        samples_ok = "ok" if c.samples == c.expected else "bad"
        rows.append(
            f"<tr><td><code>{_esc(c.shard)}</code></td>"
            f"<td>{_tick(c.sha256_matches if c.exists else None)}</td><td>{members}</td>"
            f'<td class="num {samples_ok}">{c.samples} / {c.expected}</td>'
            f'<td class="num">{c.duration_s:.2f}</td>'
            f'<td class="num {"bad" if c.problems else "ok"}">{c.problems}</td></tr>'
        )
    more = (
        f"<p class='muted'>{len(ordered) - len(shown)} more shards without problems not listed</p>"
        if len(ordered) > len(shown)
        else ""
    )
    total_s = sum(c.duration_s for c in checks)
    return (
        "<table><thead><tr><th>shard</th><th>sha256</th><th>members</th>"
        '<th class="num">samples (compared / catalogue)</th><th class="num">duration (s)</th>'
        '<th class="num">problems</th></tr></thead><tbody>'
        + "".join(rows)
        + f"</tbody><tfoot><tr><th>{len(checks)} shards</th><th></th><th></th>"
        f'<th class="num">{sum(c.samples for c in checks)} / {sum(c.expected for c in checks)}'
        f'</th><th class="num">{total_s:.2f}</th>'
        f'<th class="num">{sum(c.problems for c in checks)}</th></tr></tfoot></table>' + more
    )


def _difference_plot(name: str, differences: list[float], tolerance: float) -> str:
    """A histogram of re-measured − stored for one measure, with the tolerance marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from quality.report.plots import PLOT_DPI, PLOT_HEIGHT_PX, PLOT_WIDTH_PX, png_data_uri

    label, unit = MEASURE_LABELS[name]
    figure = Figure(
        figsize=(PLOT_WIDTH_PX / PLOT_DPI, PLOT_HEIGHT_PX / PLOT_DPI),
        dpi=PLOT_DPI,
        layout="constrained",
    )
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    # The axis spans at least the tolerance band, so "all inside" reads at a glance.
    span = max([tolerance * 1.5, *(abs(d) for d in differences)])
    axes.hist(differences, bins=25, range=(-span, span), color="#1f77b4", alpha=0.8)
    for edge in (-tolerance, tolerance):
        axes.axvline(edge, color="#d62728", linestyle="--", linewidth=1)
    axes.set_xlabel(f"re-measured − stored ({unit})")
    axes.set_ylabel("utterances")
    axes.set_title(f"{label}: tolerance ±{tolerance:g}", fontsize="small")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.ticklabel_format(axis="x", style="sci", scilimits=(-2, 5), useOffset=False)
    return png_data_uri(figure)


def _remeasure_section(result: AuditResult, tolerances: dict[str, float]) -> str:
    if not result.remeasures:
        return "<p class='muted'>no utterance was re-measured</p>"
    figures, rows = [], []
    for name, tolerance in tolerances.items():
        differences = [
            float(r.fresh[name] - r.stored[name])  # type: ignore[operator]
            for r in result.remeasures
            if r.stored.get(name) is not None and r.fresh.get(name) is not None
        ]
        label, unit = MEASURE_LABELS[name]
        if not differences:
            figures.append(
                f'<figure class="plot"><figcaption>{_esc(label)}</figcaption>'
                "<p class='muted'>no value to compare</p></figure>"
            )
            continue
        worst = max(abs(d) for d in differences)
        figures.append(
            f'<figure class="plot"><figcaption>{_esc(label)} ({_esc(unit)}): largest '
            f"|difference| {_num(worst)}</figcaption>"
            f'<img alt="{_esc(label)} differences" width="400" height="250" '
            f'src="{_difference_plot(name, differences, tolerance)}"></figure>'
        )
    head = "".join(f'<th class="num">{_esc(MEASURE_LABELS[n][0])}</th>' for n in tolerances)
    for r in result.remeasures:
        cells = []
        for name, tolerance in tolerances.items():
            stored, fresh = r.stored.get(name), r.fresh.get(name)
            off = (
                stored is not None and fresh is not None and abs(fresh - stored) > tolerance
            ) or ((stored is None) != (fresh is None))
            cells.append(
                f'<td class="num{" bad" if off else ""}">{_num(stored)} → {_num(fresh)}</td>'
            )
        rows.append(f"<tr><td><code>{_esc(r.utterance_id)}</code></td>{''.join(cells)}</tr>")
    return (
        f'<div class="plots">{"".join(figures)}</div>'
        "<h3>Stored → re-measured, per utterance</h3>"
        f"<table><thead><tr><th>utterance</th>{head}</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _codes_section(result: AuditResult) -> str:
    if not result.code_agreement:
        return (
            "<p class='muted'>no utterance was re-tokenized (no sampled utterance has codes "
            "from the project's tokenizer)</p>"
        )
    identical = sum(1 for a in result.code_agreement.values() if a == 1.0)
    n = len(result.code_agreement)
    mean = sum(result.code_agreement.values()) / n
    rows = "".join(
        f'<tr><td><code>{_esc(u)}</code></td><td class="num {"ok" if a == 1.0 else "bad"}">'
        f"{a:.2%}</td></tr>"
        for u, a in sorted(result.code_agreement.items())
    )
    return (
        f"<p>{identical} of {n} re-tokenized utterances give exactly the stored codes; "
        f"mean agreement {mean:.2%} of code positions.</p>"
        "<table><thead><tr><th>utterance</th><th class='num'>codes equal to the stored ones"
        f"</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _player(flac: bytes | None) -> str:
    if flac is None:
        return "<span class='bad'>audio unavailable</span>"
    uri = "data:audio/flac;base64," + base64.b64encode(flac).decode("ascii")
    return f'<audio controls preload="metadata" src="{uri}"></audio>'


def _measures(measures: dict[str, float | None]) -> str:
    return "<br>".join(
        f"{_esc(MEASURE_LABELS[n][0])} {_num(v)} {_esc(MEASURE_LABELS[n][1])}"
        for n, v in measures.items()
        if n in MEASURE_LABELS
    )


def _listening_section(sample: Iterable[SampledUtterance], seed: int, per_source: int) -> str:
    by_source: dict[str, list[SampledUtterance]] = {}
    for utterance in sample:
        by_source.setdefault(utterance.source, []).append(utterance)
    if not by_source:
        return "<p class='muted'>nothing to listen to: no utterance in scope</p>"
    parts = [
        f"<p class='muted'>Up to {per_source} utterances per source drawn with seed {seed} "
        "(<code>--sample N --seed S</code> draws another); each player holds the FLAC exactly "
        "as its audio shard stores it: what training sees.</p>"
    ]
    for source, utterances in sorted(by_source.items()):
        rows = "".join(
            f"<tr><td>{_player(u.flac)}</td><td><code>{_esc(u.utterance_id)}</code></td>"
            f'<td class="text">{_esc(u.text)}</td><td>{_esc(u.speaker)}</td>'
            f"<td>{_esc(u.language)}</td><td>{_esc(u.split)}</td>"
            f'<td class="num">{u.duration_s:.2f}</td><td>{_measures(u.measures)}</td>'
            f'<td class="num">{"–" if u.n_codes is None else u.n_codes}</td></tr>'
            for u in utterances
        )
        parts.append(
            f"<h3>{_esc(source)} ({len(utterances)})</h3><table><thead><tr><th>listen</th>"
            "<th>utterance</th><th>transcript</th><th>speaker</th><th>language</th>"
            "<th>split</th><th class='num'>duration (s)</th><th>measures (catalogue)</th>"
            f"<th class='num'>codes</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    return "".join(parts)


def _quality_link(report: Path, quality_report: Path | None) -> str:
    if quality_report is None or not quality_report.exists():
        return (
            "<p class='muted'>no quality report yet: <code>voxlake report</code> writes one "
            "(the <code>quality_report</code> asset too).</p>"
        )
    relative = Path(os.path.relpath(quality_report, report.parent)).as_posix()
    return (
        f'<p>Distributions, rejections and more examples: <a href="{_esc(relative)}">the '
        f"quality report</a> (<code>{_esc(quality_report)}</code>).</p>"
    )


def render_audit_report(
    result: AuditResult,
    tolerances: dict[str, float],
    report: Path,
    quality_report: Path | None = None,
    generated_at: dt.datetime | None = None,
) -> str:
    """The audit report of `result` as one self-contained HTML page.

    `tolerances`: the allowed |re-measured − stored| per measure; `report`: where
    the page will be written (the quality report link is relative to it).
    """
    when = generated_at or dt.datetime.now(dt.UTC)
    verdict = "PASSED" if result.passed else f"FAILED: {len(result.problems)} problems"
    shown = result.problems[:MAX_PROBLEMS_SHOWN]
    problems = (
        "<ol>" + "".join(f"<li><code>{_esc(p)}</code></li>" for p in shown) + "</ol>"
        if shown
        else "<p>none</p>"
    )
    if len(result.problems) > len(shown):
        problems += f"<p class='muted'>{len(result.problems) - len(shown)} more not shown</p>"
    audio = [c for c in result.shard_checks if c.kind == "audio"]
    codes = [c for c in result.shard_checks if c.kind == "code"]
    title = f"voxlake audit: {result.scope}"
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">
<title>{_esc(title)}</title><style>{STYLE}</style></head><body><main>
<h1>{_esc(title)}</h1>
<p class="verdict {"ok" if result.passed else "bad"}">{_esc(verdict)}</p>
<table><tbody>
<tr><td>generated</td><td>{when:%Y-%m-%d %H:%M:%S} UTC</td></tr>
<tr><td>audio shards checked (sha256, members)</td><td class="num">{result.shards}</td></tr>
<tr><td>audio samples decoded and compared</td><td class="num">{result.samples}</td></tr>
<tr><td>code shards checked (sha256, members, alignment)</td>
<td class="num">{result.code_shards}</td></tr>
<tr><td>code samples compared</td><td class="num">{result.code_samples}</td></tr>
<tr><td>utterances re-measured</td><td class="num">{result.remeasured}</td></tr>
<tr><td>utterances re-tokenized</td><td class="num">{result.retokenized}</td></tr>
</tbody></table>
{_quality_link(report, quality_report)}
<h2>Problems</h2>{problems}
<h2>Audio shards</h2>{_shard_table(audio)}
<h2>Code shards</h2>{_shard_table(codes)}
<h2>Stored and re-measured values</h2>
<p class='muted'>The sampled utterances' measures, computed again from the FLAC in the audio
shard, against those in the catalogue. Dashed lines: the tolerance (16-bit quantisation).</p>
{_remeasure_section(result, tolerances)}
<h2>Re-tokenized codes</h2>{_codes_section(result)}
<h2>Listen</h2>{_listening_section(result.sampled, result.seed, result.sample_per_source)}
</main></body></html>
"""


def write_audit_report(
    result: AuditResult,
    tolerances: dict[str, float],
    path: Path,
    quality_report: Path | None = None,
) -> Path:
    """Render the report of `result` and write it to `path` atomically; return the path."""
    page = render_audit_report(result, tolerances, path, quality_report)
    write_bytes_atomic(path, page.encode("utf-8"))
    return path
