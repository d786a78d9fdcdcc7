"""The training assets through a real Dagster instance: `train_stage1` and `train_mtp1`
materialised on a tiny release launch the real `deepspeed` launcher through
`PipesSubprocessClient`; rank 0 streams Pipes log events; each run is registered in the
catalogue; the frozen stage leaves every language-model weight as stage 1 wrote it; and
`evaluation` scores the final checkpoint into the `evals` table. A stage killed halfway
resumes from its last DeepSpeed checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml
from safetensors.torch import load_file

from assets.resources import PROJECT_RESOURCE_KEY, VoxlakeProject
from assets.runner import open_instance
from assets.training import TRAIN_ASSETS
from pipelines.catalogue.read import query_catalogue
from pipelines.project import Project, init_project
from pipelines.steps.train import load_runs, plan_stage
from schemas import ProjectConfig
from schemas.training import DEEPSPEED_DIR, HF_DIR, RESULT_FILE, TRAIN_LOG, TrainingConfig
from trainer.recipes import RECIPES_DIR

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "trainer"))
from tiny_release import build_tiny_release

pytestmark = pytest.mark.slow


def _project(folder: Path, recipes: Path | None = None) -> Project:
    build_tiny_release(folder)
    training = TrainingConfig(
        release="tiny-v1",
        profile="tiny",
        recipes=str(recipes) if recipes else None,
        master_port=29511,
    )
    return init_project(folder, ProjectConfig(training=training))


def _pipes_step_logs(instance: dg.DagsterInstance, run_id: str, stage: str) -> list[str]:
    """Log messages of the run that rank 0 of `stage` sent through Pipes."""
    messages = []
    for entry in instance.all_logs(run_id):
        if entry.dagster_event is None and entry.step_key == f"train_{stage}":
            messages.append(entry.user_message)
    return [m for m in messages if m.startswith("step ") and " loss " in m]


def test_stages_materialise_through_deepspeed_and_pipes(tmp_path: Path) -> None:
    project = _project(tmp_path / "project")
    instance = open_instance(project)
    result = dg.materialize(
        TRAIN_ASSETS[:2],
        instance=instance,
        resources={
            PROJECT_RESOURCE_KEY: VoxlakeProject(project_dir=str(project.directory)),
            "pipes_subprocess_client": dg.PipesSubprocessClient(),
        },
        raise_on_error=False,
    )
    assert result.success, [e.message for e in result.all_events if e.is_failure]

    # Rank 0 streamed loss/throughput as Pipes log events while it trained.
    stage1_logs = _pipes_step_logs(instance, result.run_id, "stage1")
    assert len(stage1_logs) >= 2, stage1_logs
    assert all("tokens/s" in m for m in stage1_logs)
    assert any(m.startswith("step 10/10") for m in stage1_logs)

    # The materialisation carries the trainer's reported metrics and the lineage keys.
    materialization = result.asset_materializations_for_node("train_mtp1")[0]
    metadata = materialization.metadata
    assert metadata["steps"].value == 8 and metadata["num_mctp_modules"].value == 1
    assert metadata["run_id"].value.startswith("mtp1-tiny-v1-")
    assert "![loss](data:image/png;base64," in metadata["loss_curve"].value

    # Both runs are in the catalogue, chained by their checkpoints.
    rows = query_catalogue(
        project.catalogue_path,
        "SELECT run_id, stage, status, release, checkpoint, base_checkpoint, base_run_id, "
        "config_sha256, tokenizer_sha256, code_version, dagster_run_id, "
        "metrics->>'$.final_loss' AS final_loss FROM runs ORDER BY started_at",
    ).to_pylist()
    assert [(r["stage"], r["status"]) for r in rows] == [
        ("stage1", "succeeded"),
        ("mtp1", "succeeded"),
    ]
    stage1, mtp1 = rows
    assert mtp1["base_checkpoint"] == stage1["checkpoint"]
    assert mtp1["base_run_id"] == stage1["run_id"]
    assert all(r["dagster_run_id"] == result.run_id and r["release"] == "tiny-v1" for r in rows)
    assert all(len(r["config_sha256"]) == 64 and len(r["tokenizer_sha256"]) == 64 for r in rows)
    assert float(stage1["final_loss"]) > 0

    # The frozen stage changed only MCTP parameters: every stage-1 tensor is unchanged.
    before = load_file(project.lake.root / stage1["checkpoint"] / "model.safetensors")
    after = load_file(project.lake.root / mtp1["checkpoint"] / "model.safetensors")
    assert set(before) < set(after)
    new = set(after) - set(before)
    assert any(k.startswith("mtp_projs.0") for k in new)
    assert any(k.startswith("model.layers.2.") for k in new)  # module 0's decoder layer
    for key, tensor in before.items():
        assert after[key].equal(tensor), key


def _recipes_with_slow_stage1(folder: Path) -> Path:
    """Recipes whose tiny stage 1 saves every 2 steps and runs long enough to be killed."""
    folder.mkdir()
    for path in RECIPES_DIR.glob("*.yaml"):
        (folder / path.name).write_text(path.read_text())
    lines = (folder / "stage1.yaml").read_text().splitlines()
    header = lines[0]
    config = yaml.safe_load("\n".join(lines[1:]))
    config["profiles"]["tiny"].update(max_steps=40, save_every_steps=2, log_every_steps=2)
    (folder / "stage1.yaml").write_text(header + "\n" + yaml.safe_dump(config))
    return folder


def test_killed_stage_resumes_from_its_last_deepspeed_checkpoint(tmp_path: Path) -> None:
    project = _project(tmp_path / "project", _recipes_with_slow_stage1(tmp_path / "recipes"))
    plan = plan_stage(project, "stage1")
    ds_dir = plan.run_dir / DEEPSPEED_DIR
    process = subprocess.Popen(
        plan.command,
        env=plan.env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not (ds_dir / "latest").is_file():
        assert process.poll() is None, "the stage ended before its first checkpoint"
        assert time.monotonic() < deadline, "no DeepSpeed checkpoint within 5 minutes"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the launcher and every rank, mid-training
    process.wait(timeout=60)
    assert not (plan.run_dir / RESULT_FILE).exists() and not (plan.run_dir / HF_DIR).exists()
    saved_step = int((ds_dir / "latest").read_text().strip().removeprefix("step"))
    assert 2 <= saved_step < 40

    # The same plan (same run id, same folder) started again picks up where it was.
    again = plan_stage(project, "stage1")
    assert again.run_id == plan.run_id
    done = subprocess.run(again.command, env=again.env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((plan.run_dir / RESULT_FILE).read_text())
    assert result["resumed_from_step"] is not None and result["resumed_from_step"] >= saved_step
    assert result["steps"] == 40
    assert "resumed from DeepSpeed checkpoint" in done.stdout
    logged = [
        json.loads(line)["step"] for line in (plan.run_dir / TRAIN_LOG).read_text().splitlines()
    ]
    assert logged == list(range(2, 41, 2))  # steps after the checkpoint logged once, not twice
    assert (plan.run_dir / HF_DIR / "model.safetensors").is_file()
    assert not load_runs(project)  # launched by hand: registration is the asset's job
