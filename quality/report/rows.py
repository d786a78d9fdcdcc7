"""The rows the quality report reads, and which utterances its listening tables show.

`normalize_rows` gives any frame of quality decisions every `QualityRecord` column plus
`text` and `speaker`, typed as in the lake. `select_clips` picks the utterances of the
two listening tables (`SECTIONS`); the page (`quality.report.html`) and the step that
decodes their audio (`pipelines.steps.quality_report`) both ask it, so they agree on
which utterances get a player (a `Clip`).

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

from dataclasses import dataclass
from typing import Literal

import polars as pl

from schemas.quality import QUALITY_ARROW_SCHEMA

Section = Literal["lowest_snr", "borderline"]
SECTIONS: tuple[Section, ...] = ("lowest_snr", "borderline")
# How many utterances each listening table holds.
EXAMPLES_PER_SECTION = 10
# Floor on |threshold| in the relative margin, so a threshold of 0 does not divide by zero.
MARGIN_FLOOR = 1e-9
# Columns the report adds to the QualityRecord columns (from the manifest).
EXTRA_COLUMNS: dict[str, pl.DataType] = {"text": pl.String(), "speaker": pl.String()}


@dataclass(frozen=True)
class Clip:
    """The audio of one example utterance, for one listening table.

    `wav_bytes` is a complete WAV file (16 kHz, 16-bit mono from
    `pipelines.steps.quality_report`); `duration_s` is the length of that audio in
    seconds when known, so the page can say when a clip holds only the start of a
    longer utterance.

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
