"""The tables of particular data: query results, the lake summary, sources, releases,
training runs, evaluations and their comparison.

Every one goes through `render.print_table`, so it fits the terminal and never cuts an
id; long hashes are shown as their first 12 hex digits, and the table says so. The
command modules hand these functions plain data (Arrow tables, dicts, rows of strings).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from pipelines.cli import render
from pipelines.lineage import short_sha256

if TYPE_CHECKING:
    import pyarrow as pa

    from schemas import Release, SourceConfig

_SHA256_LIST = re.compile(r"^[0-9a-f]{64}(,[0-9a-f]{64})*$")
SHORT_HASH_NOTE = "sha256 shown as its first 12 hex digits"


def _short_hashes(
    headers: Sequence[str], rows: list[list[str]]
) -> tuple[list[list[str]], list[str]]:
    """Rows with every all-sha256 column shortened, and the note that says which."""
    hashed = [
        i
        for i in range(len(headers))
        if any(row[i] for row in rows)
        and all(not row[i] or _SHA256_LIST.match(row[i]) for row in rows)
    ]
    if not hashed:
        return rows, []
    for row in rows:
        for i in hashed:
            row[i] = ",".join(short_sha256(h) for h in row[i].split(",")) if row[i] else ""
    names = ", ".join(headers[i] for i in hashed)
    return rows, [f"{names}: {SHORT_HASH_NOTE} (--format csv or json prints them whole)"]


def print_arrow(table: Any, fmt: str, *, title: str | None = None) -> None:
    """An Arrow table as a table that fits the terminal, or as CSV or JSON on stdout
    (`fmt`: table | csv | json; those two print every value whole)."""
    import polars as pl

    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    if fmt == "csv":
        sys.stdout.write(frame.write_csv())
        return
    if fmt == "json":
        sys.stdout.write(json.dumps(frame.to_dicts(), ensure_ascii=False, default=str) + "\n")
        return
    rows = [["" if v is None else str(v) for v in row] for row in frame.iter_rows()]
    rows, notes = _short_hashes(frame.columns, rows)
    render.print_table(frame.columns, rows, title=title, notes=notes)


def print_summary(
    per_source: pa.Table,
    ingest_rejections: pa.Table,
    quality: pa.Table,
    quality_rejections: pa.Table | None,
) -> None:
    """The lake summary: one row per source (inputs, rejections, what was accepted), then
    every rejection reason and rule with the sources it hit."""
    sources = per_source.to_pylist()
    judged = {r["source"]: r for r in quality.to_pylist()}
    later = quality_rejections.to_pylist() if quality_rejections is not None else []
    later_by_source: dict[str, int] = {}
    for row in later:
        later_by_source[row["source"]] = later_by_source.get(row["source"], 0) + row["n"]
    policies = sorted({p for r in judged.values() for p in (r["policy"] or "").split(",") if p})
    notes = []
    if not judged:
        headers = ["source", "inputs", "ok at ingest", "rejected at ingest", "hours", "languages"]
        rows = [
            [
                r["source"],
                str(r["inputs"]),
                str(r["ok"]),
                str(r["rejected"]),
                f"{r['ok_hours']:.4f}",
                r["languages"] or "",
            ]
            for r in sources
        ]
        notes.append("the quality step has not run yet: hours are the declared ones")
    else:
        headers = [
            "source",
            "inputs",
            "ingest rejected",
            "quality rejected",
            "accepted",
            "hours",
            "SNR dB",
            "languages",
        ]
        rows = []
        for r in sources:
            q = judged.get(r["source"])
            rows.append(
                [
                    r["source"],
                    str(r["inputs"]),
                    str(r["rejected"]),
                    str(later_by_source.get(r["source"], 0)) if q else "–",
                    str(q["accepted"]) if q else "–",
                    f"{q['accepted_hours']:.4f}" if q else "–",
                    "" if not q or q["median_snr_db"] is None else f"{q['median_snr_db']:.1f}",
                    r["languages"] or "",
                ]
            )
        judged_note = "hours, median SNR: of the accepted"
        if len(policies) == 1:
            notes.append(
                f"{judged_note}; policy {short_sha256(policies[0])} (sha256, first 12 hex)"
            )
        else:
            notes.append(judged_note)
        if len(policies) > 1:
            notes.append(
                f"quality policies {', '.join(short_sha256(p) for p in policies)} "
                f"({SHORT_HASH_NOTE}): `voxlake query` shows which utterance had which"
            )
    render.print_table(headers, rows, title="per source", notes=notes)
    reasons: dict[tuple[str, str], dict[str, int]] = {}
    for row in ingest_rejections.to_pylist():
        reasons.setdefault(("ingest", row["reject_reason"]), {})[row["source"]] = row["n"]
    for row in later:
        reasons.setdefault((row["stage"], row["rule"]), {})[row["source"]] = row["n"]
    if not reasons:
        return
    order = sorted(reasons, key=lambda k: (k[0] != "ingest", k[0], -sum(reasons[k].values()), k[1]))
    render.print_table(
        ["stage", "reason or rule", "n", "sources (n)"],
        [
            [
                stage,
                reason,
                str(sum(reasons[(stage, reason)].values())),
                ", ".join(f"{s} {n}" for s, n in sorted(reasons[(stage, reason)].items())),
            ]
            for stage, reason in order
        ],
        title="rejections",
    )


def print_sources(sources: Iterable[SourceConfig]) -> None:
    """The project's sources: name, kind, path and the options that are set."""
    rows = []
    for source in sources:
        options = {k: v for k, v in source.options.items() if v is not None}
        rows.append([source.name, source.kind.value, source.path, json.dumps(options)])
    render.print_table(["name", "kind", "path", "options"], rows)


def print_release_list(releases: Iterable[Release]) -> None:
    """One row per release: name, creation time, utterances, hours, audio and code shards."""
    render.print_table(
        ["name", "created (UTC)", "utterances", "hours", "audio shards", "code shards"],
        [
            [
                release.name,
                f"{release.created_at:%Y-%m-%d %H:%M}",
                str(release.n_utterances),
                f"{release.duration_s / 3600:.4f}",
                str(len(release.shards)),
                str(len(release.code_shards)),
            ]
            for release in releases
        ],
    )


def print_rows(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    title: str | None = None,
    notes: Sequence[str] = (),
) -> None:
    """Rows a command built itself (plain strings), as a table that fits the terminal."""
    render.print_table(headers, rows, title=title, notes=notes)


def print_training_runs(runs: pa.Table) -> None:
    """The catalogue's training runs (the demo's closing report)."""
    print_arrow(runs, "table", title="training runs (catalogue table `runs`)")


def print_eval_table(metrics: dict[str, Any], title: str) -> None:
    """An evaluation's losses, per-module accuracy and schedule comparison."""
    from pipelines.steps.evaluation import SCHEDULE_HEADERS, schedule_rows

    def fmt(value: Any, spec: str = ".3f") -> str:
        return "–" if value is None else format(value, spec)

    top1 = metrics.get("mctp_top1") or []
    render.print_table(
        ["measure", "value"],
        [
            ["main loss (nats/token)", fmt(metrics.get("main_loss"))],
            [
                "text loss / perplexity",
                f"{fmt(metrics.get('text_loss'))} / {fmt(metrics.get('text_ppl'), '.1f')}",
            ],
            [
                "audio loss / perplexity",
                f"{fmt(metrics.get('audio_loss'))} / {fmt(metrics.get('audio_ppl'), '.1f')}",
            ],
            ["main head top-1", fmt(metrics.get("main_top1"))],
            ["MCTP top-1 by module", " ".join(fmt(v, ".2f") for v in top1) or "–"],
        ],
        title=title,
    )
    render.print_table(
        SCHEDULE_HEADERS,
        schedule_rows(metrics),
        title="decoding schedules (same prompts, one run)",
    )
