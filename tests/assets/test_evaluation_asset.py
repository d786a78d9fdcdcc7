"""The `evaluation` asset after a retraining: it evaluates the newest SFT checkpoint on
training.release, and its metadata carries the per-set error rates, the HTML report and,
from the second checkpoint on, the comparison with the previous one (paired bootstrap)."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import dagster as dg

from assets.resources import PROJECT_RESOURCE_KEY, VoxlakeProject
from assets.training import evaluation
from pipelines.lake.atomic import write_bytes_atomic
from pipelines.project import Project, init_project
from schemas import ProjectConfig
from schemas.training import (
    EvalSettings,
    MixtureItem,
    RunRecord,
    StageConfig,
    TinyModelShape,
    TrainingConfig,
)
from trainer.checkpoints import export_checkpoint, model_checkpoint_sha256, prepare_model
from trainer.text_tokenizer import load_text_tokenizer, train_demo_text_tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "trainer"))
from tiny_release import build_tiny_release

SETTINGS = EvalSettings(
    split="dev",
    max_examples=2,
    decode_prompts=1,
    max_new_tokens=4,
    schedules=["vanilla"],
    asr_max_new_tokens=8,
    bootstrap_samples=100,
    report_worst=2,
)


def _sft_run(project: Project, texts: list[str], run_id: str, seed: int, hour: int) -> None:
    """A finished SFT run record whose checkpoint is a random tiny model (as training leaves)."""
    folder = project.lake.run_dir(run_id)
    tokenizer_dir = train_demo_text_tokenizer(texts, folder / "tok", vocab_size=300)
    tokenizer, vocab = load_text_tokenizer(tokenizer_dir)
    stage = StageConfig(
        stage="stage1",
        mctp_modules=0,
        trainable="all",
        max_steps=1,
        lr=1e-3,
        seq_len=128,
        mixture=[MixtureItem(task="asr")],
        init_model=TinyModelShape(hidden_size=16, intermediate_size=32, seed=seed),
    )
    hf = folder / "hf"
    export_checkpoint(prepare_model(stage, None, vocab.vocab_size, vocab.pad), tokenizer, hf, {})
    started = dt.datetime(2026, 1, 1, hour, tzinfo=dt.UTC)
    record = RunRecord(
        run_id=run_id,
        stage="sft",
        profile="tiny",
        release="tiny-v1",
        base_checkpoint=None,
        checkpoint=hf.relative_to(project.lake.root).as_posix(),
        checkpoint_sha256=model_checkpoint_sha256(hf),
        config_path="sft.yaml",
        config_sha256="0" * 64,
        tokenizer_sha256="0" * 64,
        code_version="test",
        deepspeed_config={},
        status="succeeded",
        started_at=started,
        finished_at=started + dt.timedelta(minutes=5),
    )
    write_bytes_atomic(project.lake.run_record(run_id), record.model_dump_json().encode())


def test_evaluation_metadata_compares_with_the_previous_checkpoint(tmp_path: Path) -> None:
    tiny = build_tiny_release(tmp_path / "p")
    config = ProjectConfig(training=TrainingConfig(release="tiny-v1", eval=SETTINGS))
    project = init_project(tmp_path / "p", config)
    texts = [u.text for u in tiny.by_key.values() if u.text]
    resources = {PROJECT_RESOURCE_KEY: VoxlakeProject(project_dir=str(project.directory))}

    _sft_run(project, texts, "run-a", seed=0, hour=1)
    first = dg.materialize([evaluation], resources=resources)
    meta = first.asset_materializations_for_node("evaluation")[0].metadata
    sets = meta["eval_sets"].value
    assert {(s["eval_set"], s["task"]) for s in sets} >= {("tiny-v1/dev", "asr")}
    assert "compared_with" not in meta
    assert Path(meta["html_report"].value).is_file()

    _sft_run(project, texts, "run-b", seed=1, hour=2)
    second = dg.materialize([evaluation], resources=resources)
    meta = second.asset_materializations_for_node("evaluation")[0].metadata
    assert (
        meta["compared_with"].value
        == first.asset_materializations_for_node("evaluation")[0].metadata["eval_id"].value
    )
    comparison = meta["comparison"].value
    (asr,) = [s for s in comparison["sets"] if s["task"] == "asr" and s["metric"] == "wer"]
    assert asr["n_utterances"] > 0 and asr["ci_low"] <= asr["difference"] <= asr["ci_high"]
    assert "B − A [95 % CI]" in meta["comparison_report"].value
