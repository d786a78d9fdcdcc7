"""Evaluation of a checkpoint on a release's held-out split: the losses equal a direct
computation on the same examples, text and audio targets partition the targets, every
MCTP module is scored, Vanilla agrees with itself, schedules a model cannot run are
skipped with the reason; and `voxlake eval` registers the result in the catalogue."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tiny_release import build_tiny_release
from typer.testing import CliRunner

from pipelines.catalogue.read import query_catalogue
from pipelines.cli.app import app
from pipelines.project import init_project
from schemas import ProjectConfig
from schemas.training import EvalSettings, MixtureItem, StageConfig, TinyModelShape, TrainingConfig
from trainer.checkpoints import export_checkpoint, prepare_model
from trainer.data.mixture import eval_examples
from trainer.data.release_split import load_release_split
from trainer.evaluate import EVAL_TASKS, decode_prompt, evaluate_checkpoint
from trainer.model import IGNORE_INDEX
from trainer.text_tokenizer import load_text_tokenizer, train_demo_text_tokenizer

SETTINGS = EvalSettings(split="dev", max_examples=3, decode_prompts=2, max_new_tokens=24)


def _checkpoint(folder: Path, texts: list[str], mctp_modules: int) -> Path:
    tokenizer_dir = train_demo_text_tokenizer(texts, folder / "tokenizer", vocab_size=300)
    tokenizer, vocab = load_text_tokenizer(tokenizer_dir)
    stage = StageConfig(
        stage="stage1",
        mctp_modules=mctp_modules,
        trainable="all",
        max_steps=1,
        lr=1e-3,
        seq_len=256,
        mixture=[MixtureItem(task="asr")],
        init_model=TinyModelShape(hidden_size=32, intermediate_size=64),
    )
    model = prepare_model(stage, None, vocab.vocab_size, vocab.pad)
    out = folder / f"k{mctp_modules}" / "hf"
    export_checkpoint(model, tokenizer, out, {"stage": "test"})
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, tiny_release) -> tuple:
    folder = tmp_path_factory.mktemp("eval")
    texts = [u.text for u in tiny_release.by_key.values() if u.text]
    return folder, _checkpoint(folder, texts, 10), _checkpoint(folder, texts, 1)


def test_losses_equal_a_direct_computation(setup: tuple, tiny_release) -> None:
    _, checkpoint, _ = setup
    result = evaluate_checkpoint(checkpoint, tiny_release.lake_root, "tiny-v1", SETTINGS)
    metrics = result.as_metrics()

    from trainer.checkpoints import load_base_model

    model = load_base_model(checkpoint).eval()
    tokenizer, vocab = load_text_tokenizer(checkpoint)
    split = load_release_split(tiny_release.lake_root, "tiny-v1", "dev")
    examples = eval_examples(split, tokenizer, vocab, EVAL_TASKS)
    chosen = [e for task in EVAL_TASKS for e in [x for x in examples if x.task == task][:3]]
    total, count, module_hits = 0.0, 0, [0] * 10
    module_counts = [0] * 10
    with torch.no_grad():
        for example in chosen:
            ids = torch.tensor([example.input_ids])
            labels = torch.tensor(example.labels)
            out = model(ids)
            targets = labels[1:]
            keep = targets != IGNORE_INDEX
            total += float(
                F.cross_entropy(out.logits[0, :-1][keep], targets[keep], reduction="sum")
            )
            count += int(keep.sum())
            for k, head in enumerate(out.mctp_logits):
                t = labels[k + 2 :]
                keep_k = t != IGNORE_INDEX
                module_hits[k] += int((head[0, : len(t)][keep_k].argmax(-1) == t[keep_k]).sum())
                module_counts[k] += int(keep_k.sum())
    assert metrics["n_examples"] == len(chosen) == 9
    assert metrics["n_target_tokens"] == count
    assert metrics["main_loss"] == pytest.approx(total / count, rel=1e-5)
    assert metrics["n_text_targets"] + metrics["n_audio_targets"] == count
    assert metrics["n_text_targets"] > 0 and metrics["n_audio_targets"] > 0
    assert metrics["mctp_top1"] == pytest.approx(
        [h / c for h, c in zip(module_hits, module_counts, strict=True)]
    )
    assert set(metrics["task_loss"]) == set(EVAL_TASKS)

    rows = {row["schedule"]: row for row in metrics["schedules"]}
    assert list(rows) == ["vanilla", "balance", "boost", "turbo"]
    assert rows["vanilla"]["agreement_with_vanilla"] == 1.0
    assert rows["vanilla"]["speedup_vs_vanilla"] == pytest.approx(1.0)
    for row in rows.values():
        assert row["skipped"] is None
        assert 0.0 <= row["agreement_with_vanilla"] <= 1.0 and row["tokens_per_s"] > 0
        assert row["tokens"] == SETTINGS.decode_prompts * (SETTINGS.max_new_tokens - 1)


def test_schedules_needing_more_modules_are_skipped(setup: tuple, tiny_release) -> None:
    _, _, one_module = setup
    result = evaluate_checkpoint(one_module, tiny_release.lake_root, "tiny-v1", SETTINGS)
    rows = {row["schedule"]: row for row in result.as_metrics()["schedules"]}
    assert rows["vanilla"]["skipped"] is None
    for name in ("balance", "boost", "turbo"):
        assert "1 MCTP module" in rows[name]["skipped"]


def test_decode_prompt_ends_at_the_assistant_header(setup: tuple, tiny_release) -> None:
    _, checkpoint, _ = setup
    tokenizer, vocab = load_text_tokenizer(checkpoint)
    split = load_release_split(tiny_release.lake_root, "tiny-v1", "dev")
    example = next(e for e in eval_examples(split, tokenizer, vocab, ["tts"]))
    prompt = decode_prompt(example)
    assert tokenizer.decode(prompt).endswith("<|im_start|>assistant\n")
    assert all(label == IGNORE_INDEX for label in example.labels[: len(prompt)])


def test_voxlake_eval_registers_the_evaluation(setup: tuple, tmp_path: Path) -> None:
    _, checkpoint, _ = setup
    project_dir = tmp_path / "project"
    build_tiny_release(project_dir)
    init_project(project_dir, ProjectConfig(training=TrainingConfig(eval=SETTINGS)))
    result = CliRunner().invoke(
        app, ["eval", str(checkpoint), "--release", "tiny-v1", "--project", str(project_dir)]
    )
    assert result.exit_code == 0, result.output
    assert "boost" in result.output and "registered evaluation" in result.output
    rows = query_catalogue(
        project_dir / "catalogue.duckdb", "SELECT eval_id, split, metrics FROM evals"
    ).to_pylist()
    assert len(rows) == 1 and rows[0]["split"] == "dev"
    assert len(json.loads(rows[0]["metrics"])["mctp_top1"]) == 10

    missing = CliRunner().invoke(
        app, ["eval", str(tmp_path / "nope"), "--release", "tiny-v1", "--project", str(project_dir)]
    )
    assert missing.exit_code != 0 and "no such checkpoint folder" in " ".join(
        missing.output.split()
    )
