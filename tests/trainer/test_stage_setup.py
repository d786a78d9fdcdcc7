"""Tests of what a stage is set up with: recipes (upstream defaults, tiny profile, launch
line), the model it starts from (loading, speech-token resize, MCTP growth, freezing),
optimiser groups and the learning-rate schedule, and checkpoint export."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from schemas.training import STAGE_ORDER, MixtureItem, StageConfig
from trainer.checkpoints import export_checkpoint, model_checkpoint_sha256, prepare_model
from trainer.model import Qwen2MCTPForCausalLM
from trainer.recipes import RecipeError, launch_command, load_stage_config, recipe_path
from trainer.train import deepspeed_config, lr_lambda, param_groups

# The stage table of shared/design/VITA_AUDIO_TRAINING.md, written out by hand.
UPSTREAM = {
    # stage: (K, steps, lr, weight decay, trainable, seq len, MCTP lr multiplier)
    "stage1": (0, 8000, 6e-5, 0.0, "all", 8192, 1.0),
    "mtp1": (1, 4000, 1e-3, 0.0, "mctp_only", 8192, 1.0),
    "mtp10": (10, 8000, 1e-3, 0.0, "mctp_only", 8192, 1.0),
    "sft": (10, 4000, 5e-5, 0.1, "all", 2048, 10.0),
}


@pytest.mark.parametrize("stage", STAGE_ORDER)
def test_recipes_hold_upstream_defaults(stage: str) -> None:
    config = load_stage_config(recipe_path(stage), "upstream")
    got = (
        config.mctp_modules,
        config.max_steps,
        config.lr,
        config.weight_decay,
        config.trainable,
        config.seq_len,
        config.mctp_lr_multiplier,
    )
    assert got == UPSTREAM[stage]
    # Shared by all four stages upstream.
    assert (config.micro_batch_size, config.grad_accum_steps) == (1, 16)
    assert config.adam_betas == (0.9, 0.95)
    assert (config.warmup_ratio, config.lr_schedule, config.grad_clip) == (0.03, "cosine", 1.0)
    assert config.bf16 and config.gradient_checkpointing and config.zero_stage == 2
    assert config.interleave_ratio == [1, 10, 4, 10]
    command = launch_command(recipe_path(stage))
    assert command.startswith("deepspeed ") and "--module trainer.train" in command
    assert f"trainer/recipes/{stage}.yaml" in command


@pytest.mark.parametrize("stage", STAGE_ORDER)
def test_tiny_profile_is_small_fp32_and_keeps_the_stage_semantics(stage: str) -> None:
    upstream = load_stage_config(recipe_path(stage), "upstream")
    tiny = load_stage_config(recipe_path(stage), "tiny")
    assert not tiny.bf16 and not tiny.gradient_checkpointing
    assert tiny.max_steps <= 12 and tiny.seq_len <= 512
    assert (tiny.mctp_modules, tiny.trainable) == (upstream.mctp_modules, upstream.trainable)
    if stage == "stage1":
        assert tiny.init_model is not None and tiny.init_model.num_hidden_layers <= 4


def test_recipe_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="no profile 'huge'"):
        load_stage_config(recipe_path("mtp1"), "huge")
    bad = tmp_path / "mtp1.yaml"
    bad.write_text(recipe_path("mtp1").read_text().replace("lr: 1.0e-3", "lr: -1"))
    with pytest.raises(RecipeError, match=rf"{bad}.*lr"):
        load_stage_config(bad, "upstream")
    with pytest.raises(RecipeError, match="unknown stage"):
        recipe_path("stage9")


def test_config_sha256_changes_with_any_setting() -> None:
    config = load_stage_config(recipe_path("stage1"), "tiny")
    assert (
        config.config_sha256() == load_stage_config(recipe_path("stage1"), "tiny").config_sha256()
    )
    assert config.model_copy(update={"lr": 1e-4}).config_sha256() != config.config_sha256()


def _stage(**overrides: object) -> StageConfig:
    base = {
        "stage": "mtp1",
        "mctp_modules": 1,
        "trainable": "mctp_only",
        "max_steps": 10,
        "lr": 1e-3,
        "seq_len": 64,
        "mixture": [MixtureItem(task="asr")],
    }
    return StageConfig.model_validate({**base, **overrides})


def _save_plain_qwen2(folder: Path, vocab_size: int = 96) -> Path:
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        tie_word_embeddings=False,
    )
    Qwen2ForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    return folder


def test_prepare_model_loads_qwen2_resizes_for_speech_tokens_and_grows(tmp_path: Path) -> None:
    base = _save_plain_qwen2(tmp_path / "qwen2")
    model = prepare_model(
        _stage(stage="mtp10", mctp_modules=3), base, vocab_size=130, pad_token_id=0
    )
    assert model.config.vocab_size == 136  # 130 rounded up to a multiple of 8
    assert model.get_input_embeddings().weight.shape[0] == 136
    assert model.num_mctp_modules == 3 and model.num_backbone_layers == 2
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in model.mctp_parameters()}


def test_prepare_model_refuses_pickles_and_shrinking(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="safetensors"):
        prepare_model(_stage(), empty, vocab_size=96, pad_token_id=0)
    base = _save_plain_qwen2(tmp_path / "qwen2")
    grown = prepare_model(_stage(mctp_modules=2), base, vocab_size=96, pad_token_id=0)
    grown.save_pretrained(tmp_path / "k2", safe_serialization=True)
    with pytest.raises(ValueError, match="never dropped"):
        prepare_model(_stage(mctp_modules=1), tmp_path / "k2", vocab_size=96, pad_token_id=0)
    with pytest.raises(ValueError, match="base checkpoint"):
        prepare_model(_stage(stage="stage1", mctp_modules=0), None, vocab_size=96, pad_token_id=0)


def _batch(vocab: int, seq: int = 24) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab, (1, seq), generator=generator)
    return {"input_ids": ids, "labels": ids.clone()}


@pytest.mark.parametrize("trainable", ["mctp_only", "all"])
def test_one_optimizer_step_changes_exactly_the_trainable_parameters(
    tmp_path: Path, trainable: str
) -> None:
    base = _save_plain_qwen2(tmp_path / "qwen2")
    stage = _stage(trainable=trainable, mctp_modules=2, weight_decay=0.1, mctp_lr_multiplier=10.0)
    model = prepare_model(stage, base, vocab_size=96, pad_token_id=0)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(param_groups(model, stage), lr=stage.lr, betas=stage.adam_betas)
    output = model(**_batch(96), freeze_lm=trainable == "mctp_only")
    output.loss.backward()
    optimizer.step()
    mctp = {id(p) for p in model.mctp_parameters()}
    for name, param in model.named_parameters():
        changed = not torch.equal(before[name], param.detach())
        if trainable == "mctp_only":
            assert changed == (id(param) in mctp), name
        elif param.ndim >= 2 and "embed_tokens" not in name:
            # Every matrix gets a gradient when all train (embedding rows of unseen ids
            # still move through weight decay).
            assert changed, name


def test_param_groups_scale_mctp_lr_and_skip_decay_on_norms(tmp_path: Path) -> None:
    base = _save_plain_qwen2(tmp_path / "qwen2")
    stage = _stage(
        stage="sft",
        trainable="all",
        mctp_modules=2,
        lr=5e-5,
        weight_decay=0.1,
        mctp_lr_multiplier=10.0,
    )
    model = prepare_model(stage, base, vocab_size=96, pad_token_id=0)
    groups = {g["name"]: g for g in param_groups(model, stage)}
    assert set(groups) == {"lm", "lm_no_decay", "mctp", "mctp_no_decay"}
    assert groups["mctp"]["lr"] == pytest.approx(5e-4) and groups["lm"]["lr"] == 5e-5
    assert groups["lm"]["weight_decay"] == 0.1 and groups["lm_no_decay"]["weight_decay"] == 0.0
    assert all(p.ndim == 1 for p in groups["mctp_no_decay"]["params"])
    n_grouped = sum(p.numel() for g in groups.values() for p in g["params"])
    assert n_grouped == sum(p.numel() for p in model.parameters())


def test_lr_schedule_warms_up_then_decays_to_zero() -> None:
    stage = _stage(max_steps=100, warmup_ratio=0.03)
    factor = lr_lambda(stage)
    assert factor(0) == pytest.approx(1 / 4)
    assert factor(2) == pytest.approx(3 / 4)
    assert factor(3) == pytest.approx(1.0)
    assert factor(3 + 97 // 2) == pytest.approx(0.5 * (1 + math.cos(math.pi * 48 / 97)))
    assert factor(100) == pytest.approx(0.0, abs=1e-12)


def test_deepspeed_config_is_zero2_with_clip_and_accumulation() -> None:
    config = deepspeed_config(load_stage_config(recipe_path("stage1"), "upstream"), True)
    assert config["zero_optimization"]["stage"] == 2
    assert config["gradient_accumulation_steps"] == 16
    assert config["train_micro_batch_size_per_gpu"] == 1
    assert config["gradient_clipping"] == 1.0 and config["bf16"] == {"enabled": True}


def test_export_checkpoint_is_atomic_and_hashed(tmp_path: Path) -> None:
    class _Tokenizer:
        def save_pretrained(self, folder: Path) -> None:
            (Path(folder) / "tokenizer.json").write_text("{}")

    model = prepare_model(
        _stage(mctp_modules=1), _save_plain_qwen2(tmp_path / "q"), vocab_size=96, pad_token_id=0
    )
    out = tmp_path / "run" / "hf"
    sha = export_checkpoint(model, _Tokenizer(), out, {"stage": "mtp1"})
    assert sha == model_checkpoint_sha256(out)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["hf"]  # no temporaries
    reloaded = Qwen2MCTPForCausalLM.from_pretrained(out)
    assert reloaded.num_mctp_modules == 1
