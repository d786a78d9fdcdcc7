"""Formatting helpers of the quality report: escaped values, numbers, hours, transcripts, tables.

Every string that comes from data goes through `_esc` (HTML-escaped, quotes included).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence

import numpy as np
import polars as pl

from quality.report.rows import MARGIN_FLOOR

# Transcripts longer than this (characters) are cut in the tables; the page stays readable.
MAX_TEXT_CHARS = 300


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
