"""The evaluation report: one self-contained HTML page a curator can act on.

`render_report(data)` lays out what `pipelines.steps.evaluation.write_eval_report`
gathers: the error rate of every evaluation set with its 95 % bootstrap interval and
S/D/I; the breakdown plots and tables (source, language, 5 dB WADA-SNR bucket,
duration bucket) from the catalogue's `eval_by_*` views; the worst utterances with
their audio (FLAC from the audio shards, embedded as data URIs), the reference and the
hypothesis aligned unit by unit with substitutions, deletions and insertions marked;
optionally a comparison with another evaluation; and the TTS side, measured without a
speech decoder (teacher-forced audio-token accuracy, the decoding schedules' agreement
and speed-up), saying so. Nothing is fetched when the page is opened: styles, plots
and audio are inline.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipelines.evaluation.compare import Comparison, difference_cells
from pipelines.evaluation.summary import METRIC_LABELS, percent, rate_with_interval
from schemas.training import EvalRecord

BREAKDOWN_VIEWS: dict[str, tuple[str, str]] = {
    # view: (bucket column, heading)
    "eval_by_snr": ("snr_db_from", "WADA-SNR (5 dB buckets, lower edge)"),
    "eval_by_duration": ("duration_s_from", "duration (s, lower edge)"),
    "eval_by_source": ("source", "source"),
    "eval_by_language": ("language", "language"),
}
"""The catalogue views the report shows, in order: the bucket column and its heading."""

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 80em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; font-size: 0.9em; }
th { background: #f3f3f3; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.5em 1em; }
.align { border: none; margin: 0.3em 0; }
.align td { border: none; padding: 0 0.25em; font-family: monospace; white-space: nowrap; }
.equal { color: #444; }
.substitute { background: #ffe0b2; }
.delete { background: #ffcdd2; }
.insert { background: #c8e6c9; }
.label { color: #888; }
img { max-width: 100%; }
"""


@dataclass(frozen=True)
class AlignedStep:
    """One column of an aligned reference/hypothesis pair."""

    op: str  # equal, substitute, delete, insert
    reference: str | None
    hypothesis: str | None


@dataclass(frozen=True)
class WorstUtterance:
    """One of the worst-scored utterances, with what the report shows of it."""

    utterance_id: str
    eval_set: str
    metric: str
    error_rate: float | None
    n_errors: int
    n_ref_units: int
    substitutions: int
    deletions: int
    insertions: int
    reference: str
    hypothesis: str
    aligned: list[AlignedStep]
    audio_flac: bytes | None = None
    audio_note: str | None = None  # why there is no audio
    wada_snr_db: float | None = None
    duration_s: float | None = None


@dataclass
class ReportData:
    """Everything the report shows of one evaluation."""

    record: EvalRecord
    sets: list[dict[str, Any]]
    breakdowns: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    worst: list[WorstUtterance] = field(default_factory=list)
    comparison: Comparison | None = None
    notes: list[str] = field(default_factory=list)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def aligned_html(steps: Sequence[AlignedStep]) -> str:
    """Reference over hypothesis, one column per alignment step, errors coloured by kind."""
    refs = "".join(
        f'<td class="{s.op}">{_e(s.reference) if s.reference is not None else "*"}</td>'
        for s in steps
    )
    hyps = "".join(
        f'<td class="{s.op}">{_e(s.hypothesis) if s.hypothesis is not None else "*"}</td>'
        for s in steps
    )
    return (
        '<table class="align"><tr><td class="label">REF</td>'
        f'{refs}</tr><tr><td class="label">HYP</td>{hyps}</tr></table>'
    )


def _sets_section(sets: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        [
            s["eval_set"],
            s["task"],
            METRIC_LABELS.get(s["metric"], s["metric"]),
            s["n_utterances"],
            s["n_ref_units"],
            rate_with_interval(s),
            s["substitutions"],
            s["deletions"],
            s["insertions"],
            "–" if s.get("mean_loss") is None else f"{s['mean_loss']:.3f}",
        ]
        for s in sets
    ]
    headers = [
        "evaluation set",
        "task",
        "metric",
        "utterances",
        "reference units",
        "error rate [95 % CI]",
        "S",
        "D",
        "I",
        "mean loss",
    ]
    return "<h2>Error rates per evaluation set</h2>" + _table(headers, rows)


def _breakdown_plot(view: str, rows: Sequence[Mapping[str, Any]]) -> str:
    """Bars of the error rate per bucket, one panel per (task, metric)."""
    # Imported here: matplotlib is needed only when a report is drawn.
    from matplotlib.figure import Figure

    from quality.report.plots import png_data_uri

    column, heading = BREAKDOWN_VIEWS[view]
    panels = sorted({(r["task"], r["metric"]) for r in rows})
    figure = Figure(figsize=(4.2 * len(panels), 2.8), dpi=100)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (task, metric) in zip(axes, panels, strict=True):
        mine = sorted(
            (r for r in rows if (r["task"], r["metric"]) == (task, metric)),
            key=lambda r: (r[column] is None, r[column]),
        )
        labels = [str(r[column]) for r in mine]
        ax.bar(labels, [100 * (r["error_rate"] or 0.0) for r in mine], color="C0")
        for index, r in enumerate(mine):
            ax.annotate(f"n={r['n_utterances']}", (index, 0), fontsize=7, ha="center")
        ax.set_title(f"{task} {METRIC_LABELS.get(metric, metric)}", fontsize=9)
        ax.set_xlabel(heading, fontsize=8)
        ax.set_ylabel("error rate (%)", fontsize=8)
        ax.tick_params(axis="x", labelsize=7, rotation=30)
    figure.tight_layout()
    return f'<img alt="{_e(view)}" src="{png_data_uri(figure)}">'


def _breakdowns_section(breakdowns: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    parts = ["<h2>Breakdowns by the data's own properties</h2>"]
    if not any(breakdowns.values()):
        return (
            parts[0] + '<p class="note">No breakdown: the evaluated utterances are not in the '
            "catalogue's <code>utterances</code> table (a lake built outside voxlake's steps).</p>"
        )
    for view, (column, heading) in BREAKDOWN_VIEWS.items():
        rows = breakdowns.get(view) or []
        if not rows:
            continue
        parts.append(f"<h3>by {_e(heading)} <small>(view <code>{view}</code>)</small></h3>")
        parts.append(_breakdown_plot(view, rows))
        parts.append(
            _table(
                [heading, "task", "metric", "utterances", "units", "error rate", "S", "D", "I"],
                [
                    [
                        r[column],
                        r["task"],
                        METRIC_LABELS.get(r["metric"], r["metric"]),
                        r["n_utterances"],
                        r["n_ref_units"],
                        percent(r["error_rate"]),
                        r["substitutions"],
                        r["deletions"],
                        r["insertions"],
                    ]
                    for r in sorted(
                        rows,
                        key=lambda r: (r["task"], r["metric"], r[column] is None, r[column] or 0),
                    )
                ],
            )
        )
    return "".join(parts)


def _audio_html(worst: WorstUtterance) -> str:
    if worst.audio_flac is None:
        return f'<span class="label">no audio: {_e(worst.audio_note)}</span>'
    data = base64.b64encode(worst.audio_flac).decode("ascii")
    return f'<audio controls preload="none" src="data:audio/flac;base64,{data}"></audio>'


def _worst_section(worst: Sequence[WorstUtterance]) -> str:
    if not worst:
        return ""
    parts = [
        f"<h2>The {len(worst)} worst utterances</h2>",
        "<p>Highest error rate first. Aligned after normalisation: "
        '<span class="substitute">substitution</span>, <span class="delete">deletion</span> '
        '(reference unit, <code>*</code> in the hypothesis), <span class="insert">insertion'
        "</span>.</p>",
    ]
    for w in worst:
        facts = [
            w.eval_set,
            f"{METRIC_LABELS.get(w.metric, w.metric)} {percent(w.error_rate)}",
            f"{w.n_errors} errors / {w.n_ref_units} units (S {w.substitutions}, "
            f"D {w.deletions}, I {w.insertions})",
        ]
        if w.wada_snr_db is not None:
            facts.append(f"WADA-SNR {w.wada_snr_db:.1f} dB")
        if w.duration_s is not None:
            facts.append(f"{w.duration_s:.2f} s")
        parts.append(
            f"<h3><code>{_e(w.utterance_id)}</code></h3><p>{_e(' · '.join(facts))}</p>"
            f"<p>{_audio_html(w)}</p>"
            f"<p><span class='label'>reference:</span> {_e(w.reference)}<br>"
            f"<span class='label'>hypothesis:</span> {_e(w.hypothesis) or '<i>(empty)</i>'}</p>"
            f"{aligned_html(w.aligned)}"
        )
    return "".join(parts)


def _comparison_section(comparison: Comparison | None) -> str:
    if comparison is None:
        return ""
    headers = ["", "task", "metric", "utterances", "A", "B", "B − A [95 % CI]", "verdict"]

    def rows(groups: Sequence[Any]) -> list[list[Any]]:
        return [
            [g.value, g.task, g.metric, g.difference.n_utterances, *difference_cells(g.difference)]
            for g in groups
        ]

    parts = [
        "<h2>Comparison</h2>",
        f"<p>B = <code>{_e(comparison.b.eval_id)}</code> (this evaluation) against A = "
        f"<code>{_e(comparison.a.eval_id)}</code>, on {comparison.n_paired} utterances both "
        "scored; differences in percentage points with a paired bootstrap 95 % interval.</p>",
        _table(["evaluation set", *headers[1:]], rows(comparison.sets)),
    ]
    by_dimension: dict[str, list[Any]] = {}
    for group in comparison.breakdowns:
        by_dimension.setdefault(group.dimension, []).append(group)
    for dimension, groups in by_dimension.items():
        parts.append(f"<h3>by {_e(dimension)}</h3>")
        parts.append(_table([dimension, *headers[1:]], rows(groups)))
    return "".join(parts)


def _tts_section(metrics: Mapping[str, Any]) -> str:
    rows = []
    for row in metrics.get("schedules", []):
        if row.get("skipped"):
            rows.append([row["schedule"], "skipped", "", "", row["skipped"]])
            continue
        speedup = row.get("speedup_vs_vanilla")
        agreement = row.get("agreement_with_vanilla")
        rows.append(
            [
                row["schedule"],
                "–" if row.get("tokens_per_s") is None else f"{row['tokens_per_s']:.1f}",
                "–" if speedup is None else f"{speedup:.2f}×",
                "–" if agreement is None else f"{agreement:.3f}",
                "",
            ]
        )
    audio_top1 = metrics.get("audio_top1")
    return (
        "<h2>TTS side</h2>"
        '<p class="note">No speech decoder is part of this evaluation: generated audio codes '
        "cannot be turned into speech and re-transcribed, so TTS intelligibility (the WER of "
        "re-transcribed synthesis) is not measured. What is measured without one: the "
        "teacher-forced audio-token error per utterance (rows with metric "
        "<code>audio_token_error</code>), the audio loss and perplexity, and each MCTP "
        "decoding schedule's agreement with Vanilla and its speed-up.</p>"
        + _table(
            ["measure", "value"],
            [
                ["audio loss (nats/token)", _fmt(metrics.get("audio_loss"))],
                ["audio perplexity", _fmt(metrics.get("audio_ppl"), ".1f")],
                ["audio-token top-1 (teacher-forced)", _fmt(audio_top1)],
                [
                    "MCTP top-1 by module",
                    " ".join(_fmt(v, ".2f") for v in metrics.get("mctp_top1") or []) or "–",
                ],
            ],
        )
        + _table(["schedule", "tokens/s", "speed-up", "agreement with Vanilla", "note"], rows)
    )


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "–" if value is None else format(value, spec)


def render_report(data: ReportData) -> str:
    """The whole page as one HTML string (UTF-8, no external resources)."""
    r = data.record
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in data.notes)
    header = _table(
        ["evaluation", "checkpoint", "sha256", "run", "release split", "created"],
        [
            [
                r.eval_id,
                r.checkpoint,
                r.checkpoint_sha256[:16],
                r.run_id or "–",
                f"{r.release}/{r.split}",
                f"{r.created_at:%Y-%m-%d %H:%M} UTC",
            ]
        ],
    )
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>voxlake evaluation {_e(r.eval_id)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>Evaluation {_e(r.eval_id)}</h1>{header}{notes}"
        + _sets_section(data.sets)
        + _comparison_section(data.comparison)
        + _breakdowns_section(data.breakdowns)
        + _worst_section(data.worst)
        + _tts_section(r.metrics)
        + "<p class='label'>Metrics, normalisation and tables: docs/evaluation.md.</p>"
        "</body></html>\n"
    )
