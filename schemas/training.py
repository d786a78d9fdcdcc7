"""The training and evaluation contracts: one record per training run and per evaluation.

A training run writes `lake/runs/<run_id>.json` (`RunRecord`) when it starts (status
`running`) and rewrites it when it ends (`succeeded` or `failed`); an evaluation writes
`lake/evals/<eval_id>.json` (`EvalRecord`) and, beside it, one `EvalUtterance` row per
scored utterance (`<eval_id>.utterances.parquet`). The catalogue loads them into its
`runs`, `evals` and `eval_utterances` tables; `voxlake lineage` follows them back to
releases, shards and sources.

Checkpoints live under `lake/checkpoints/<run_id>/`: `hf/` is the final Hugging Face
checkpoint (config.json, model.safetensors, the text tokenizer), `deepspeed/` holds the
resumable DeepSpeed checkpoints. Paths in records are relative to the lake root.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.arrow import arrow_schema
from schemas.hashing import canonical_json_sha256

StageName = Literal["stage1", "mtp1", "mtp10", "sft"]
STAGE_ORDER: tuple[StageName, ...] = ("stage1", "mtp1", "mtp10", "sft")

# --- what a run folder (lake/checkpoints/<run_id>/) holds ---------------------------------
# Written by the trainer (trainer/train.py, trainer/checkpoints.py), read by the training
# step, lineage and evaluation: the names are this contract's, not any one module's.

RESULT_FILE = "result.json"
"""Final metrics of a finished stage, written by rank 0 last."""

TRAIN_LOG = "train_log.jsonl"
"""One JSON line per logged optimizer step."""

DEEPSPEED_DIR = "deepspeed"
"""DeepSpeed's resumable checkpoints (`<TAG_PREFIX><step>/` tags)."""

TAG_PREFIX = "step"
"""Prefix of a DeepSpeed checkpoint tag; the optimizer step follows it."""

HF_DIR = "hf"
"""The exported Hugging Face checkpoint (safetensors, config, text tokenizer)."""

CHECKPOINT_INFO = "voxlake_checkpoint.json"
"""Written into every exported checkpoint: which run made it, from what."""
RunStatus = Literal["running", "succeeded", "failed"]


class RunRecord(BaseModel):
    """`lake/runs/<run_id>.json`: what one training stage read, ran with, and produced."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    stage: StageName
    profile: str = Field(description="recipe profile, e.g. 'upstream' or 'tiny'")
    release: str = Field(description="release the stage trained on")
    base_checkpoint: str | None = Field(
        description="checkpoint the stage started from (lake-relative for our runs), "
        "None for a freshly initialised model"
    )
    base_run_id: str | None = Field(None, description="run that produced base_checkpoint")
    checkpoint: str | None = Field(None, description="final HF checkpoint, lake-relative")
    checkpoint_sha256: str | None = None
    config_path: str = Field(description="the stage YAML the run used")
    config_sha256: str = Field(description="sha256 of the resolved stage config (JSON)")
    tokenizer_sha256: str = Field(description="content hash of the text tokenizer folder")
    code_version: str
    deepspeed_config: dict[str, Any]
    world_size: int = 1
    status: RunStatus
    started_at: dt.datetime
    finished_at: dt.datetime | None = None
    resumed_from_step: int | None = Field(
        None, description="optimizer step of the DeepSpeed checkpoint the run resumed from"
    )
    dagster_run_id: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)


class EvalRecord(BaseModel):
    """`lake/evals/<eval_id>.json`: one evaluation of a checkpoint on a release split."""

    model_config = ConfigDict(extra="forbid")

    eval_id: str
    run_id: str | None = Field(None, description="training run that produced the checkpoint")
    checkpoint: str
    checkpoint_sha256: str
    release: str
    split: Literal["train", "dev", "test"]
    code_version: str
    created_at: dt.datetime
    dagster_run_id: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)


EvalMetric = Literal["wer", "cer", "audio_token_error"]
"""What an `EvalUtterance`'s error rate counts: words (WER), characters (CER, languages
written without spaces), or wrong teacher-forced top-1 audio tokens (the TTS side, which
has no speech decoder to transcribe its output)."""


class EvalUtterance(BaseModel):
    """One scored utterance of an evaluation (a row of `lake/evals/<eval_id>.utterances.parquet`
    and of the catalogue's `eval_utterances` table, joinable to `utterances` on utterance_id).

    ASR rows (`task` asr): the checkpoint's greedy transcript of the utterance's codes,
    scored against the release transcript after normalisation (docs/evaluation.md);
    `n_errors = substitutions + deletions + insertions`, `error_rate = n_errors /
    n_ref_units` (None without reference units). TTS rows (`task` tts): the
    teacher-forced audio tokens, every wrong top-1 token counted as a substitution.
    """

    model_config = ConfigDict(extra="forbid")

    eval_id: str
    utterance_id: str
    key: str = Field(description="the sample's WebDataset key in the release's shards")
    source: str
    language: str | None
    eval_set: str = Field(
        description="`<source>/<split>` for a source's evaluation split (LibriSpeech "
        "test-clean, WenetSpeech test_net, ...), `<release>/<split>` for the release's own "
        "held-out speakers"
    )
    task: Literal["asr", "tts"]
    metric: EvalMetric
    reference: str | None = Field(description="the release transcript, as stored")
    hypothesis: str | None = Field(description="the decoded transcript (ASR rows)")
    reference_normalized: str | None = None
    hypothesis_normalized: str | None = None
    n_ref_units: int = Field(ge=0, description="reference words, characters or audio tokens")
    n_hyp_units: int = Field(ge=0)
    n_errors: int = Field(ge=0)
    substitutions: int = Field(ge=0)
    deletions: int = Field(ge=0)
    insertions: int = Field(ge=0)
    error_rate: float | None
    loss: float | None = Field(
        description="teacher-forced cross-entropy of the task's assistant targets (nats/token)"
    )
    n_hyp_tokens: int | None = Field(None, description="tokens the decoder emitted (ASR rows)")
    stopped: bool | None = Field(
        None, description="ASR: the decoder emitted <|im_end|> before its token budget ran out"
    )


EVAL_UTTERANCE_ARROW_SCHEMA = arrow_schema(EvalUtterance)

TaskName = Literal["asr", "tts", "interleave"]


class MixtureItem(BaseModel):
    """One dataset of a stage mixture: a task over (one source of) the release.

    Upstream's rule: with N items, `used = min(int(N * ratio), num)` items are taken,
    indices modulo N (ratio > 1 repeats data, 0 skips it).
    """

    model_config = ConfigDict(extra="forbid")

    task: TaskName
    source: str | None = Field(None, description="only this source of the release; None: all")
    ratio: float = Field(1.0, ge=0)


class TinyModelShape(BaseModel):
    """Width and depth of a freshly initialised Qwen2 (the `tiny` profile's stage 1)."""

    model_config = ConfigDict(extra="forbid")

    hidden_size: int = Field(64, ge=8)
    intermediate_size: int = Field(176, ge=8)
    num_hidden_layers: int = Field(2, ge=1, description="backbone layers")
    num_attention_heads: int = Field(4, ge=1)
    num_key_value_heads: int = Field(2, ge=1)
    max_position_embeddings: int = Field(4096, ge=64)
    rope_theta: float = 1_000_000.0
    seed: int = 0


class StageConfig(BaseModel):
    """One training stage, resolved from `trainer/recipes/<stage>.yaml` and a profile.

    Defaults are upstream's (VITA-Audio `scripts/deepspeed/sts_qwen25/`): bf16, batch 1
    per device, gradient accumulation 16, AdamW β=(0.9, 0.95), cosine schedule with 3 %
    warm-up, gradient clip 1.0, gradient checkpointing, ZeRO-2.
    """

    model_config = ConfigDict(extra="forbid")

    stage: StageName
    mctp_modules: int = Field(ge=0, description="K after this stage (grown if needed)")
    trainable: Literal["all", "mctp_only"]
    max_steps: int = Field(ge=1, description="optimizer steps")
    lr: float = Field(gt=0)
    mctp_lr_multiplier: float = Field(1.0, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    adam_betas: tuple[float, float] = (0.9, 0.95)
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    grad_clip: float = Field(1.0, gt=0)
    micro_batch_size: int = Field(1, ge=1)
    grad_accum_steps: int = Field(16, ge=1)
    seq_len: int = Field(ge=16)
    bf16: bool = Field(True, description="bf16 on accelerators; CPU runs always use fp32")
    gradient_checkpointing: bool = True
    zero_stage: Literal[0, 1, 2, 3] = 2
    mctp_loss_weight: float = Field(1.0, ge=0)
    interleave_ratio: list[int] = Field(default_factory=lambda: [1, 10, 4, 10])
    mixture: list[MixtureItem]
    log_every_steps: int = Field(10, ge=1)
    save_every_steps: int = Field(500, ge=1)
    keep_checkpoints: int = Field(2, ge=1, description="DeepSpeed checkpoints kept on disk")
    seed: int = 42
    init_model: TinyModelShape | None = Field(
        None, description="stage 1 without a base checkpoint: initialise this shape randomly"
    )

    def config_sha256(self) -> str:
        """sha256 of the canonical JSON of this resolved config (lineage key)."""
        return canonical_json_sha256(self.model_dump(mode="json"))


class EvalSettings(BaseModel):
    """What the `evaluation` asset and `voxlake eval` measure."""

    model_config = ConfigDict(extra="forbid")

    split: Literal["dev", "test"] = "test"
    max_examples: int = Field(64, ge=1, description="held-out examples per task, at most")
    decode_prompts: int = Field(4, ge=1, description="prompts decoded per schedule")
    max_new_tokens: int = Field(64, ge=1)
    schedules: list[str] = Field(default_factory=lambda: ["vanilla", "balance", "boost", "turbo"])
    asr: bool = Field(True, description="transcribe the split and score WER/CER per utterance")
    asr_max_utterances: int | None = Field(
        None, ge=1, description="utterances transcribed, at most (None: the whole split)"
    )
    asr_max_new_tokens: int = Field(
        256,
        ge=1,
        description="token budget of a transcript; also at most one token per audio code "
        "(12.5 per second) plus 16, so an untrained model cannot run on",
    )
    bootstrap_samples: int = Field(1000, ge=100, description="resamples of each bootstrap")
    report_worst: int = Field(20, ge=0, description="worst utterances shown in the HTML report")


class TrainingConfig(BaseModel):
    """`training:` in voxlake.yaml: what the training assets train on and from."""

    model_config = ConfigDict(extra="forbid")

    release: str | None = Field(None, description="release to train on (required to train)")
    profile: str = Field("upstream", description="recipe profile: 'upstream' or e.g. 'tiny'")
    base_model: str | None = Field(
        None,
        description="Qwen2/Qwen2.5 checkpoint folder for stage 1 (relative to the project); "
        "None initialises the profile's `init_model` shape randomly",
    )
    text_tokenizer: str | None = Field(
        None,
        description="Qwen2.5 tokenizer folder; None trains a small demo BPE on the release",
    )
    recipes: str | None = Field(None, description="folder of stage YAMLs; None: the packaged ones")
    num_gpus: int = Field(1, ge=1, description="processes per node (CPU processes without GPUs)")
    master_port: int = Field(29500, ge=1024, le=65535)
    eval: EvalSettings = Field(default_factory=EvalSettings)
