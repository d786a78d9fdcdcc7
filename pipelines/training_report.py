"""Plots of training and evaluation runs for Dagster metadata (markdown with PNG data URIs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from quality.report import png_data_uri
from trainer.train import TRAIN_LOG


def read_train_log(run_dir: Path) -> list[dict[str, Any]]:
    """The trainer's logged steps (`train_log.jsonl`), in order; empty when absent."""
    path = run_dir / TRAIN_LOG
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def loss_curve_markdown(run_dir: Path) -> str:
    """Markdown with a plot of total, main and per-module MCTP loss against the step."""
    rows = read_train_log(run_dir)
    if not rows:
        return "_no logged steps_"
    figure = Figure(figsize=(6, 3.2), dpi=100)
    axes = figure.add_subplot()
    steps = [r["step"] for r in rows]
    axes.plot(steps, [r["loss"] for r in rows], label="loss", color="black", linewidth=2)
    if any(r.get("main_loss") is not None for r in rows):
        axes.plot(steps, [r.get("main_loss") for r in rows], label="main CE", linestyle="--")
    n_modules = max(len(r.get("mctp_losses") or []) for r in rows)
    for k in range(n_modules):
        values = [(r.get("mctp_losses") or [None] * n_modules)[k] for r in rows]
        axes.plot(steps, values, label=f"MCTP {k}", linewidth=0.8, alpha=0.8)
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("cross-entropy (nats/token)")
    axes.legend(fontsize=6, ncol=3)
    figure.tight_layout()
    return f"![loss]({png_data_uri(figure)})"


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "–" if value is None else format(value, spec)


def schedule_rows(metrics: dict[str, Any]) -> list[list[str]]:
    """Rows (schedule, tokens/s, speed-up, agreement, prefix agreement) of an eval's table."""
    rows = []
    for row in metrics.get("schedules", []):
        if row.get("skipped"):
            rows.append([row["schedule"], "skipped", "", "", row["skipped"]])
            continue
        rows.append(
            [
                row["schedule"],
                _fmt(row["tokens_per_s"], ".1f"),
                _fmt(row["speedup_vs_vanilla"], ".2f") + "×",
                _fmt(row["agreement_with_vanilla"]),
                _fmt(row["prefix_agreement_with_vanilla"]),
            ]
        )
    return rows


SCHEDULE_HEADERS = ["schedule", "tokens/s", "speed-up", "agreement", "prefix agreement"]


def eval_markdown(metrics: dict[str, Any]) -> str:
    """The evaluation as markdown: losses, per-module accuracy, schedules, and a plot."""
    lines = [
        "| measure | value |",
        "| --- | --- |",
        f"| main loss (nats/token) | {_fmt(metrics.get('main_loss'))} |",
        f"| text loss / perplexity | {_fmt(metrics.get('text_loss'))} / "
        f"{_fmt(metrics.get('text_ppl'), '.1f')} |",
        f"| audio loss / perplexity | {_fmt(metrics.get('audio_loss'))} / "
        f"{_fmt(metrics.get('audio_ppl'), '.1f')} |",
        f"| main head top-1 | {_fmt(metrics.get('main_top1'))} |",
        "",
        "| " + " | ".join(SCHEDULE_HEADERS) + " |",
        "| " + " | ".join("---" for _ in SCHEDULE_HEADERS) + " |",
        *["| " + " | ".join(row) + " |" for row in schedule_rows(metrics)],
    ]
    figure = Figure(figsize=(8, 3), dpi=100)
    left, right = figure.subplots(1, 2)
    top1 = metrics.get("mctp_top1") or []
    left.plot(range(len(top1)), [v if v is not None else float("nan") for v in top1], "o-")
    if metrics.get("main_top1") is not None:
        left.axhline(metrics["main_top1"], color="grey", linestyle="--", label="main head")
        left.legend(fontsize=7)
    left.set_xlabel("MCTP module k (predicts token t+k+2)")
    left.set_ylabel("top-1 accuracy")
    done = [r for r in metrics.get("schedules", []) if not r.get("skipped")]
    right.bar(
        [r["schedule"] for r in done], [r["speedup_vs_vanilla"] or 0.0 for r in done], color="C0"
    )
    right.set_ylabel("decode speed-up vs Vanilla")
    for index, row in enumerate(done):
        agreement = row["agreement_with_vanilla"]
        right.annotate(f"agree {_fmt(agreement, '.2f')}", (index, 0), fontsize=7, ha="center")
    figure.tight_layout()
    lines += ["", f"![evaluation]({png_data_uri(figure)})"]
    return "\n".join(lines)
