"""The lineage of a checkpoint as rich renderables: the full tree (`voxlake lineage`) and the
demo's compact form (the chain of runs one line, the release one line).

The model and the catalogue walk are `pipelines/lineage.py`; `render.print_lineage` and
`render.print_lineage_summary` print what this module builds.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.tree import Tree

from pipelines.lineage import short_sha256

if TYPE_CHECKING:
    from pipelines.lineage import Lineage, ReleaseLink
    from schemas.training import RunRecord


def _when(value: dt.datetime | None) -> str:
    return f"{value.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC" if value else "-"


_KEY_METRICS = (
    "steps",
    "final_loss",
    "final_main_loss",
    "tokens_per_s",
    "main_loss",
    "text_ppl",
    "audio_ppl",
    "main_top1",
)


def _key_metrics(metrics: dict[str, Any]) -> str:
    """The headline numbers of a run or eval (`--json` has them all)."""
    parts = []
    for key in _KEY_METRICS:
        value = metrics.get(key)
        if isinstance(value, float):
            parts.append(f"{key} {value:.4g}")
        elif value is not None:
            parts.append(f"{key} {value}")
    for row in metrics.get("schedules") or []:
        if row.get("speedup_vs_vanilla") is not None and row["schedule"] != "vanilla":
            parts.append(f"{row['schedule']} {row['speedup_vs_vanilla']:.2f}×")
    return ", ".join(parts) or _compact(metrics)


def _deepspeed_summary(config: dict[str, Any]) -> str:
    """ZeRO stage, precision, batch and accumulation, clipping: what decides a run."""
    zero = (config.get("zero_optimization") or {}).get("stage")
    bf16 = (config.get("bf16") or {}).get("enabled")
    return (
        f"ZeRO-{zero}, {'bf16' if bf16 else 'fp32'}, micro batch "
        f"{config.get('train_micro_batch_size_per_gpu')} × accumulation "
        f"{config.get('gradient_accumulation_steps')}, clip {config.get('gradient_clipping')}"
    )


def _compact(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    # Metrics, not an id: the rest is one `--json` away.
    return text if len(text) <= limit else text[:limit] + " ... (--json has all)"


def _run_node(parent: Tree, run: RunRecord) -> Tree:
    took = ""
    if run.finished_at is not None:
        minutes = (run.finished_at - run.started_at).total_seconds() / 60
        took = f" ({minutes:.1f} min)"
    node = parent.add(
        f"[bold]run {escape(run.run_id)}[/]: {escape(run.stage)}, profile "
        f"{escape(run.profile)}, {escape(run.status)}, world size {run.world_size}"
    )
    node.add(f"trained on release {escape(run.release)}")
    node.add(
        f"checkpoint {escape(run.checkpoint or '-')} (sha256 {short_sha256(run.checkpoint_sha256)})"
    )
    node.add(f"config {escape(run.config_path)} (sha256 {short_sha256(run.config_sha256)})")
    node.add(f"text tokenizer sha256 {short_sha256(run.tokenizer_sha256)}")
    node.add(f"code {escape(run.code_version)}")
    node.add(f"DeepSpeed {escape(_deepspeed_summary(run.deepspeed_config))}")
    resumed = (
        f", resumed from step {run.resumed_from_step}" if run.resumed_from_step is not None else ""
    )
    node.add(f"started {_when(run.started_at)}, finished {_when(run.finished_at)}{took}{resumed}")
    if run.dagster_run_id:
        node.add(f"Dagster run {escape(run.dagster_run_id)}")
    node.add(f"metrics {escape(_key_metrics(run.metrics))}")
    return node


def _more(node: Tree, shown: int, total: int) -> None:
    if total > shown:
        node.add(f"[dim]... and {total - shown} more (--json lists all)[/]")


def _release_node(parent: Tree, release: ReleaseLink, max_items: int) -> None:
    demo = " [bold yellow](DEMO: random weights)[/]" if release.tokenizer_is_demo else ""
    node = parent.add(
        f"[bold]release {escape(release.name)}[/] (created {_when(release.created_at)}): "
        f"{release.n_utterances} utterances, {release.duration_s / 3600:.4f} h"
    )
    node.add(
        f"where {escape(release.where)}; split by {escape(release.split_by)} "
        f"(dev {release.dev_fraction}, test {release.test_fraction}), dedup {release.dedup}"
    )
    node.add(f"policy {escape(', '.join(release.policy_versions) or '-')}")
    tokenizers = ", ".join(short_sha256(t) for t in release.tokenizer_sha256) or "-"
    node.add(f"audio tokenizer sha256 {tokenizers}{demo}")
    node.add(f"code {escape(release.code_version)}")
    for title, listed in (("audio shards", release.shards), ("code shards", release.code_shards)):
        shards = node.add(f"{title} ({len(listed)})")
        for shard in listed[:max_items]:
            shards.add(
                f"{escape(shard.shard)} sha256 {short_sha256(shard.sha256)}, {shard.bytes} bytes"
            )
        _more(shards, min(max_items, len(listed)), len(listed))
    units = node.add(f"units ({len(release.units)})")
    for unit in release.units[:max_items]:
        inputs = f"{unit.n_inputs} inputs" if unit.n_inputs is not None else "not inventoried"
        units.add(
            f"{escape(unit.unit)} ({escape(unit.source)}): {unit.n_shards} audio + "
            f"{unit.n_code_shards} code shards, {unit.n_utterances} utterances, {inputs}"
        )
    _more(units, min(max_items, len(release.units)), len(release.units))
    sources = node.add(f"sources ({len(release.sources)})")
    for source in release.sources:
        if source.configured:
            sources.add(
                f"{escape(source.name)} ({escape(source.kind or '-')}) {escape(source.path or '-')}"
            )
        else:
            sources.add(f"{escape(source.name)} [yellow](no longer in voxlake.yaml)[/]")


def lineage_tree(result: Lineage, max_items: int = 20) -> Tree:
    """The lineage as a rich Tree; shards and units beyond `max_items` are counted only."""
    root = Tree(
        f"[bold]checkpoint {escape(result.checkpoint or '(none yet)')}[/] "
        f"(sha256 {short_sha256(result.checkpoint_sha256)})"
    )
    parent = root
    for index, run in enumerate(result.runs):
        node = _run_node(parent, run)
        if run.base_checkpoint is None:
            node.add("base: freshly initialised model")
        elif index + 1 < len(result.runs):
            base = result.runs[index + 1]
            parent = node.add(f"base {escape(run.base_checkpoint)} <- run {escape(base.run_id)}")
        else:
            node.add(f"base {escape(run.base_checkpoint)} (not made by a run in the catalogue)")
    for release in result.releases:
        _release_node(root, release, max_items)
    evals = root.add(f"evaluations ({len(result.evals)})")
    for evaluation in result.evals:
        evals.add(
            f"{escape(evaluation.eval_id)}: {escape(evaluation.release)} {evaluation.split}, "
            f"{_when(evaluation.created_at)}, metrics {escape(_key_metrics(evaluation.metrics))}"
        )
    return root


def lineage_summary(result: Lineage, project_option: str = "") -> list[str]:
    """The lineage in two lines: the checkpoint, its chain of stages back to the release
    and what the release holds; then the command that prints the whole tree (with the
    hashes, shards, units and evaluations)."""
    parts = [
        f"lineage: {result.checkpoint or '(no checkpoint yet)'} "
        f"(sha256 {short_sha256(result.checkpoint_sha256)})"
    ]
    parts += [run.stage for run in result.runs]
    if result.runs:
        first = result.runs[-1]
        parts.append(first.base_checkpoint or "a fresh model")
    text = " <- ".join(parts)
    for release in result.releases[:1]:
        text += (
            f", on release {release.name} ({len(release.shards)} audio + "
            f"{len(release.code_shards)} code shards, {len(release.units)} units, "
            f"{len(release.sources)} sources)"
        )
    if len(result.releases) > 1:
        text += f" and {len(result.releases) - 1} more releases"
    target = result.runs[0].run_id if result.runs else result.query
    return [text, f"the whole tree: voxlake lineage {target}{project_option}"]
