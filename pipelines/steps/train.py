"""Plan, launch and register training stages: the step of the four `train_*` assets and the CLI.

`plan_stage` resolves what a stage trains on and from (the release and profile in
voxlake.yaml's `training:`, the stage recipe, the text tokenizer, the previous stage's
checkpoint), names the run and builds the real `deepspeed` launcher command.
`start_run`/`finish_run` write the run's `RunRecord` to `lake/runs/<run_id>.json` and
register it in the catalogue.

The run id is a function of its inputs (stage, release, resolved config, base
checkpoint hash, text tokenizer hash), so a stage that was killed and is started again
finds its run folder and resumes from its last DeepSpeed checkpoint, and a changed
input gives a new run.

The trainer and torch are imported inside the functions that use them: the
Dagster definitions import this module, and every step process would otherwise
pay for loading torch and transformers.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.catalogue.build import update_catalogue
from pipelines.lake.atomic import write_bytes_atomic
from pipelines.project import Project
from pipelines.version import code_version
from schemas.hashing import bytes_sha256
from schemas.training import (
    CHECKPOINT_INFO,
    DEEPSPEED_DIR,
    HF_DIR,
    RESULT_FILE,
    STAGE_ORDER,
    TRAIN_LOG,
    RunRecord,
    StageConfig,
    StageName,
)


class TrainingError(Exception):
    """A stage that cannot be planned or did not finish; the message says what to do."""


@dataclass(frozen=True)
class StagePlan:
    """Everything needed to launch one stage and record it."""

    stage: StageName
    run_id: str
    run_dir: Path
    release: str
    profile: str
    config_path: Path
    config: StageConfig
    base_checkpoint: Path | None
    base_run_id: str | None
    text_tokenizer: Path
    tokenizer_sha256: str
    command: list[str]
    env: dict[str, str]

    @property
    def checkpoint(self) -> Path:
        """Where the stage's final Hugging Face checkpoint goes."""
        return self.run_dir / HF_DIR


def lake_relative(project: Project, path: Path) -> str:
    """`path` relative to the lake root when inside it, else absolute."""
    resolved = path.resolve()
    try:
        return resolved.relative_to(project.lake.root.resolve()).as_posix()
    except ValueError:
        return str(resolved)


def load_runs(project: Project) -> list[RunRecord]:
    """Every RunRecord in the lake, oldest first."""
    folder = project.lake.runs_dir()
    if not folder.is_dir():
        return []
    records = []
    for path in sorted(folder.glob("*.json")):
        try:
            records.append(RunRecord.model_validate_json(path.read_bytes()))
        except ValueError as error:
            raise TrainingError(f"{path}: not a valid run record: {error}") from error
    return sorted(records, key=lambda r: r.started_at)


def latest_succeeded_run(project: Project, stage: StageName, release: str) -> RunRecord | None:
    """The newest succeeded run of `stage` on `release`, if any."""
    done = [
        r
        for r in load_runs(project)
        if r.stage == stage and r.release == release and r.status == "succeeded"
    ]
    return max(done, key=lambda r: r.finished_at or r.started_at) if done else None


def _training_release(project: Project) -> str:
    release = project.config.training.release
    if release is None:
        raise TrainingError(
            f"{project.config_path}: set `training.release` to the release to train on"
        )
    if not (project.lake.release_dir(release) / "release.json").is_file():
        raise TrainingError(
            f"release {release!r} (training.release) does not exist yet; "
            "materialise the `release` asset (or run `voxlake release create`) first"
        )
    return release


def ensure_text_tokenizer(project: Project, release: str) -> Path:
    """The text tokenizer folder: the configured one, or a demo BPE trained on the release.

    The demo tokenizer is trained once per release on its train transcripts and kept in
    `lake/tokenizers/<release>/`; it is deterministic, so rebuilding gives the same files.
    """
    from trainer.data.release_split import load_release_split
    from trainer.data.stream import iter_release_samples
    from trainer.text_tokenizer import train_demo_text_tokenizer

    configured = project.config.training.text_tokenizer
    if configured is not None:
        folder = (project.directory / configured).resolve()
        if not folder.is_dir():
            raise TrainingError(f"training.text_tokenizer: {folder} is not a folder")
        return folder
    folder = project.lake.text_tokenizer_dir(release)
    if (folder / "tokenizer.json").is_file():
        return folder
    split = load_release_split(project.lake.root, release, "train")
    texts = [s.text for s in iter_release_samples(split) if s.text]
    if not texts:
        raise TrainingError(f"release {release!r} has no train transcripts to train a tokenizer")
    train_demo_text_tokenizer(texts, folder)
    return folder


def _base_checkpoint(
    project: Project, stage: StageName, release: str
) -> tuple[Path | None, str | None]:
    if stage == "stage1":
        base = project.config.training.base_model
        if base is None:
            return None, None
        folder = (project.directory / base).resolve()
        if not (folder / "config.json").is_file():
            raise TrainingError(f"training.base_model: {folder} holds no config.json")
        return folder, None
    previous = STAGE_ORDER[STAGE_ORDER.index(stage) - 1]
    run = latest_succeeded_run(project, previous, release)
    if run is None or run.checkpoint is None:
        raise TrainingError(
            f"stage {stage} starts from a finished {previous} run on release {release!r}; "
            f"materialise train_{previous} first"
        )
    return project.lake.root / run.checkpoint, run.run_id


def deepspeed_launcher() -> list[str]:
    """The real `deepspeed` launcher of this Python environment."""
    script = Path(sys.executable).parent / "deepspeed"
    if script.is_file():
        return [str(script)]
    found = shutil.which("deepspeed")
    if found is None:
        raise TrainingError("the `deepspeed` launcher is not installed in this environment")
    return [found]


def plan_stage(project: Project, stage: StageName, max_steps: int | None = None) -> StagePlan:
    """Resolve a stage's inputs, name its run and build its launch command."""
    from trainer.checkpoints import model_checkpoint_sha256
    from trainer.recipes import load_stage_config, recipe_path
    from trainer.text_tokenizer import text_tokenizer_sha256

    training = project.config.training
    release = _training_release(project)
    recipes = (project.directory / training.recipes).resolve() if training.recipes else None
    config_path = recipe_path(stage, recipes)
    config = load_stage_config(config_path, training.profile)
    if max_steps is not None:
        config = config.model_copy(update={"max_steps": max_steps})
    base, base_run_id = _base_checkpoint(project, stage, release)
    if stage == "stage1" and base is None and config.init_model is None:
        raise TrainingError(
            f"stage1 with profile {training.profile!r} needs training.base_model "
            "(a Qwen2.5 checkpoint folder); only profiles with `init_model` start from scratch"
        )
    tokenizer = ensure_text_tokenizer(project, release)
    tok_sha = text_tokenizer_sha256(tokenizer)
    base_sha = model_checkpoint_sha256(base) if base is not None else "random-init"
    key = bytes_sha256(
        json.dumps([stage, release, config.config_sha256(), base_sha, tok_sha]).encode()
    )[:12]
    run_id = f"{stage}-{release}-{key}"
    run_dir = project.lake.run_dir(run_id)
    command = [
        *deepspeed_launcher(),
        "--num_gpus",
        str(training.num_gpus),
        "--master_port",
        str(training.master_port),
        "--module",
        "trainer.train",
        "--config",
        str(config_path),
        "--profile",
        training.profile,
        "--lake",
        str(project.lake.root),
        "--release",
        release,
        "--text-tokenizer",
        str(tokenizer),
        "--out",
        str(run_dir),
    ]
    if base is not None:
        command += ["--base-checkpoint", str(base)]
    if max_steps is not None:
        command += ["--max-steps", str(max_steps)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return StagePlan(
        stage=stage,
        run_id=run_id,
        run_dir=run_dir,
        release=release,
        profile=training.profile,
        config_path=config_path,
        config=config,
        base_checkpoint=base,
        base_run_id=base_run_id,
        text_tokenizer=tokenizer,
        tokenizer_sha256=tok_sha,
        command=command,
        env=env,
    )


def _write_record(project: Project, record: RunRecord) -> Path:
    path = project.lake.run_record(record.run_id)
    write_bytes_atomic(path, record.model_dump_json(indent=1).encode("utf-8"))
    return path


def start_run(project: Project, plan: StagePlan, dagster_run_id: str | None = None) -> RunRecord:
    """Record the run as `running` (before launching) and register it in the catalogue."""
    import torch

    from trainer.train import deepspeed_config

    ds_dir = plan.run_dir / DEEPSPEED_DIR
    record = RunRecord(
        run_id=plan.run_id,
        stage=plan.stage,
        profile=plan.profile,
        release=plan.release,
        base_checkpoint=(
            lake_relative(project, plan.base_checkpoint) if plan.base_checkpoint else None
        ),
        base_run_id=plan.base_run_id,
        config_path=str(plan.config_path),
        config_sha256=plan.config.config_sha256(),
        tokenizer_sha256=plan.tokenizer_sha256,
        code_version=code_version(),
        deepspeed_config=deepspeed_config(
            plan.config, plan.config.bf16 and torch.cuda.is_available()
        ),
        world_size=project.config.training.num_gpus,
        status="running",
        started_at=dt.datetime.now(dt.UTC),
        resumed_from_step=None,
        dagster_run_id=dagster_run_id,
        metrics={"resumable": (ds_dir / "latest").is_file()},
    )
    _write_record(project, record)
    update_catalogue(project)
    return record


def read_result(plan: StagePlan) -> dict[str, Any]:
    """The trainer's `result.json`; TrainingError when the stage did not finish."""
    path = plan.run_dir / RESULT_FILE
    if not path.is_file():
        raise TrainingError(f"stage {plan.stage} did not finish: {path} is missing")
    return json.loads(path.read_text(encoding="utf-8"))


def finish_run(
    project: Project, plan: StagePlan, record: RunRecord, result: dict[str, Any] | None
) -> RunRecord:
    """Rewrite the record as `succeeded` (with the result) or `failed`, and register it."""
    finished = dt.datetime.now(dt.UTC)
    if result is None:
        done = record.model_copy(update={"status": "failed", "finished_at": finished})
    else:
        info_path = plan.checkpoint / CHECKPOINT_INFO
        if not info_path.is_file():
            raise TrainingError(f"{plan.checkpoint}: the exported checkpoint is incomplete")
        metrics = {
            k: v
            for k, v in result.items()
            if k not in ("deepspeed_config", "checkpoint", "checkpoint_sha256")
        }
        done = record.model_copy(
            update={
                "status": "succeeded",
                "finished_at": finished,
                "checkpoint": lake_relative(project, plan.checkpoint),
                "checkpoint_sha256": result["checkpoint_sha256"],
                "deepspeed_config": result.get("deepspeed_config", record.deepspeed_config),
                "world_size": result.get("world_size", record.world_size),
                "resumed_from_step": result.get("resumed_from_step"),
                "metrics": metrics,
            }
        )
    _write_record(project, done)
    update_catalogue(project)
    return done


# --- metadata for the Dagster UI -----------------------------------------------------------


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
    # Imported here: matplotlib costs the code location (which imports this module
    # through the asset definitions) a third of a second it needs only for this plot.
    from matplotlib.figure import Figure

    from quality.report.plots import png_data_uri

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
