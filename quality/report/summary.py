"""A short markdown summary of quality decisions per source, for Dagster metadata."""

from __future__ import annotations

import numpy as np
import polars as pl

from quality.report.formatting import _finite, _hours
from quality.report.rows import normalize_rows


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
