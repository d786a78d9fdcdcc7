"""The quality report's plots: histograms drawn with matplotlib's Agg canvas, as PNG data URIs.

`png_data_uri` is voxlake's one PNG data-URI helper (the training and evaluation
summaries embed their plots with it too); it writes no "Software" tag, so the same
figure gives the same bytes whatever the matplotlib version.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

# Bins per histogram, shared by the accepted and rejected series of one plot.
HISTOGRAM_BINS = 30
# Plot size in pixels (figure inches × dpi), also written into the <img> tag.
PLOT_WIDTH_PX, PLOT_HEIGHT_PX, PLOT_DPI = 400, 250, 100
ACCEPTED_COLOR = "#1f77b4"
REJECTED_COLOR = "#d62728"


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
