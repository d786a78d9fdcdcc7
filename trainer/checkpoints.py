"""Model checkpoints: build the model a stage starts from, hash and export Hugging Face folders.

A stage starts from a Hugging Face Qwen2/Qwen2.5 folder (safetensors; stage 1 from
Qwen2.5-Instruct, later stages from the previous stage's `hf/` export) or, for stage 1
without one, from a freshly initialised `TinyModelShape`. Speech tokens are added by
resizing the embeddings to the text tokenizer's length; MCTP modules are grown to the
stage's K.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch

from schemas.hashing import folder_sha256
from schemas.training import CHECKPOINT_INFO, StageConfig, TinyModelShape
from trainer.model import Qwen2MCTPConfig, Qwen2MCTPForCausalLM

VOCAB_MULTIPLE = 8  # pad the vocabulary so embedding matrices have tensor-core friendly shapes


def round_up(value: int, multiple: int) -> int:
    """The smallest multiple of `multiple` that is >= `value`."""
    return -(-value // multiple) * multiple


def model_checkpoint_sha256(folder: Path) -> str:
    """Content hash of an exported checkpoint (weights, config, tokenizer; not the info file)."""
    return folder_sha256(folder, exclude=(CHECKPOINT_INFO,))


def init_tiny_model(
    shape: TinyModelShape, vocab_size: int, pad_token_id: int
) -> Qwen2MCTPForCausalLM:
    """A randomly initialised Qwen2 (K = 0) of `shape`; deterministic for a given seed."""
    config = Qwen2MCTPConfig(
        vocab_size=round_up(vocab_size, VOCAB_MULTIPLE),
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        max_position_embeddings=shape.max_position_embeddings,
        rope_theta=shape.rope_theta,
        tie_word_embeddings=False,
        pad_token_id=pad_token_id,
        num_mctp_modules=0,
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(shape.seed)
    try:
        model = Qwen2MCTPForCausalLM(config)
    finally:
        torch.random.set_rng_state(generator_state)
    return model


def load_base_model(folder: Path) -> Qwen2MCTPForCausalLM:
    """Load a Qwen2/Qwen2.5 or Qwen2 + MCTP checkpoint folder (safetensors only) in fp32."""
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder}: no config.json; not a Hugging Face checkpoint folder")
    if not any(folder.glob("*.safetensors")):
        raise FileNotFoundError(
            f"{folder}: no *.safetensors weights (pickled .bin checkpoints are not loaded)"
        )
    return Qwen2MCTPForCausalLM.from_pretrained(folder, dtype=torch.float32, use_safetensors=True)


def prepare_model(
    stage: StageConfig,
    base_checkpoint: Path | None,
    vocab_size: int,
    pad_token_id: int,
) -> Qwen2MCTPForCausalLM:
    """The model a stage trains: loaded or initialised, resized, grown, with trainable flags.

    Raises ValueError when neither a base checkpoint nor `init_model` is given, or when
    the base has more MCTP modules than the stage asks for.
    """
    if base_checkpoint is not None:
        model = load_base_model(base_checkpoint)
    elif stage.init_model is not None:
        model = init_tiny_model(stage.init_model, vocab_size, pad_token_id)
    else:
        raise ValueError(
            f"stage {stage.stage} needs a base checkpoint (training.base_model for stage 1) "
            "or an `init_model` shape in its profile"
        )
    if model.config.vocab_size < vocab_size:
        # Speech tokens (20 specials + 16384 audio ids) enter the vocabulary here.
        model.resize_token_embeddings(vocab_size, pad_to_multiple_of=VOCAB_MULTIPLE)
    if model.num_mctp_modules > stage.mctp_modules:
        raise ValueError(
            f"base checkpoint has {model.num_mctp_modules} MCTP modules; stage {stage.stage} "
            f"uses {stage.mctp_modules} and modules are never dropped"
        )
    model.grow_mctp(stage.mctp_modules)
    model.config.mctp_loss_weight = stage.mctp_loss_weight
    model.set_trainable(stage.trainable)
    return model


def export_checkpoint(
    model: Qwen2MCTPForCausalLM,
    tokenizer: Any,
    out_dir: Path,
    info: dict[str, Any],
) -> str:
    """Write a Hugging Face checkpoint folder atomically; returns its `checkpoint_sha256`.

    The folder is written under a temporary name next to `out_dir` and renamed into
    place, so a reader never sees a half-written checkpoint; an existing `out_dir` is
    replaced. `info` (plus the hash) goes to `voxlake_checkpoint.json`.
    """
    tmp_dir = out_dir.with_name(f".{out_dir.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp_dir.mkdir(parents=True)
    try:
        model.save_pretrained(tmp_dir, safe_serialization=True)
        tokenizer.save_pretrained(tmp_dir)
        sha256 = model_checkpoint_sha256(tmp_dir)
        payload = {**info, "checkpoint_sha256": sha256}
        (tmp_dir / CHECKPOINT_INFO).write_text(
            json.dumps(payload, indent=1, sort_keys=True, default=str) + "\n", encoding="utf-8"
        )
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return sha256
