"""DeepSpeed entry point of one VITA-Audio training stage.

Launched by the real launcher, on any number of processes::

    deepspeed --num_gpus N --module trainer.train --config trainer/recipes/stage1.yaml \\
        --profile tiny --lake LAKE --release NAME --text-tokenizer DIR --out RUN_DIR \\
        [--base-checkpoint DIR]

Every rank streams its part of the release's train split (`trainer.data`), packs it to
the stage's sequence length and trains under ZeRO (stage 2 by default). Rank 0 alone
talks to Dagster: when the Dagster Pipes environment is present it opens Pipes, reports
loss and throughput every `log_every_steps` as log events and the final metrics and
checkpoint as the asset materialisation; otherwise it prints the same lines.

Layout of RUN_DIR: `deepspeed/` (resumable checkpoints, tags `step00000004`, …, the
newest `keep_checkpoints` kept), `hf/` (final Hugging Face checkpoint, written
atomically), `train_log.jsonl` (one line per logged step), `result.json` (final metrics,
written last: its presence means the stage finished). A killed stage started again with
the same RUN_DIR resumes from the newest DeepSpeed checkpoint: model, optimizer,
scheduler and the position in the data stream.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from schemas.training import (
    DEEPSPEED_DIR,
    HF_DIR,
    RESULT_FILE,
    TAG_PREFIX,
    TRAIN_LOG,
    StageConfig,
)
from trainer.checkpoints import export_checkpoint, prepare_model
from trainer.data.mixture import MixtureEntry, training_stream
from trainer.data.release_split import load_release_split
from trainer.model import Qwen2MCTPForCausalLM
from trainer.recipes import load_stage_config
from trainer.text_tokenizer import load_text_tokenizer, text_tokenizer_sha256

# ---------------------------------------------------------------------------------------
# Reporting: Dagster Pipes on rank 0, plain lines elsewhere


class Reporter:
    """Where rank 0's progress goes: Dagster Pipes when launched by Dagster, else stdout."""

    def __init__(self, pipes: Any | None, rank: int) -> None:
        self._pipes = pipes
        self._rank = rank

    @property
    def is_main(self) -> bool:
        """Whether this process reports (rank 0)."""
        return self._rank == 0

    def info(self, message: str) -> None:
        """One progress line (a Pipes log event under Dagster)."""
        if not self.is_main:
            return
        print(message, flush=True)
        if self._pipes is not None:
            self._pipes.log.info(message)

    def materialize(self, metadata: dict[str, Any]) -> None:
        """The final materialisation (metrics, checkpoint path) under Dagster."""
        if self.is_main and self._pipes is not None:
            self._pipes.report_asset_materialization(metadata=metadata)


@contextlib.contextmanager
def open_reporter(rank: int) -> Iterator[Reporter]:
    """Open Dagster Pipes on rank 0 when its environment is present."""
    if rank == 0 and os.environ.get("DAGSTER_PIPES_CONTEXT"):
        from dagster_pipes import open_dagster_pipes

        with open_dagster_pipes() as pipes:
            yield Reporter(pipes, rank)
    else:
        yield Reporter(None, rank)


# ---------------------------------------------------------------------------------------
# Optimiser, schedule, DeepSpeed config


def _no_decay(name: str, param: torch.nn.Parameter) -> bool:
    """Biases and norm weights (1-D) carry no weight decay, as in Hugging Face's Trainer."""
    return param.ndim < 2 or name.endswith(".bias")


def param_groups(model: Qwen2MCTPForCausalLM, stage: StageConfig) -> list[dict[str, Any]]:
    """AdamW groups: (LM | MCTP) × (decay | no decay); MCTP at `lr × mctp_lr_multiplier`."""
    mctp_ids = {id(p) for p in model.mctp_parameters()}
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        key = (id(param) in mctp_ids, _no_decay(name, param))
        groups.setdefault(key, []).append(param)
    result = []
    for (is_mctp, no_decay), params in sorted(groups.items()):
        result.append(
            {
                "params": params,
                "lr": stage.lr * (stage.mctp_lr_multiplier if is_mctp else 1.0),
                "weight_decay": 0.0 if no_decay else stage.weight_decay,
                "name": f"{'mctp' if is_mctp else 'lm'}{'_no_decay' if no_decay else ''}",
            }
        )
    return result


def lr_lambda(stage: StageConfig) -> Any:
    """Multiplier on each group's lr: linear warm-up, then cosine to 0 (or constant)."""
    warmup = math.ceil(stage.warmup_ratio * stage.max_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if stage.lr_schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, stage.max_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def deepspeed_config(stage: StageConfig, use_bf16: bool) -> dict[str, Any]:
    """The DeepSpeed config of a stage (recorded with the run)."""
    return {
        "train_micro_batch_size_per_gpu": stage.micro_batch_size,
        "gradient_accumulation_steps": stage.grad_accum_steps,
        "gradient_clipping": stage.grad_clip,
        "zero_optimization": {
            "stage": stage.zero_stage,
            "overlap_comm": False,
            "contiguous_gradients": True,
        },
        "bf16": {"enabled": use_bf16},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 1_000_000_000,
        "wall_clock_breakdown": False,
    }


# ---------------------------------------------------------------------------------------
# Training state and checkpoints


@dataclass
class TrainState:
    """What a DeepSpeed checkpoint carries besides model and optimizer."""

    step: int = 0
    sequences_consumed: int = 0  # packed sequences this rank has read from its stream
    tokens_seen: int = 0  # real (non-padding) tokens this rank has trained on
    train_time_s: float = 0.0


def _tags(ds_dir: Path) -> list[str]:
    if not ds_dir.is_dir():
        return []
    return sorted(p.name for p in ds_dir.iterdir() if p.is_dir() and p.name.startswith(TAG_PREFIX))


def prune_checkpoints(ds_dir: Path, keep: int) -> None:
    """Remove all but the newest `keep` DeepSpeed checkpoint tags (rank 0 only)."""
    latest = (ds_dir / "latest").read_text().strip() if (ds_dir / "latest").is_file() else None
    tags = _tags(ds_dir)
    for tag in tags[:-keep]:
        if tag != latest:
            shutil.rmtree(ds_dir / tag, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# The loop


def _stack(batches: list[Any], device: torch.device) -> dict[str, torch.Tensor]:
    return {
        "input_ids": torch.stack([b.input_ids for b in batches]).to(device),
        "labels": torch.stack([b.labels for b in batches]).to(device),
        "position_ids": torch.stack([b.position_ids for b in batches]).to(device),
    }


def _truncate_log(log_path: Path, last_step: int) -> None:
    """Keep only the logged steps up to `last_step` (all of them are in the checkpoint)."""
    if not log_path.is_file():
        return
    kept = [
        line
        for line in log_path.read_text(encoding="utf-8").splitlines()
        if line and json.loads(line)["step"] <= last_step
    ]
    tmp = log_path.with_name(f".{log_path.name}.tmp")
    tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
    os.replace(tmp, log_path)


def _last_logged(log_path: Path) -> dict[str, Any]:
    """The last line of `train_log.jsonl`, or {} when nothing was logged yet."""
    if not log_path.is_file():
        return {}
    lines = [line for line in log_path.read_text(encoding="utf-8").splitlines() if line]
    return json.loads(lines[-1]) if lines else {}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def run_stage(args: argparse.Namespace) -> dict[str, Any]:
    """Train one stage under DeepSpeed; returns the final metrics (on every rank)."""
    import deepspeed
    import torch.distributed as dist

    stage = load_stage_config(Path(args.config), args.profile)
    if args.max_steps is not None:
        stage = stage.model_copy(update={"max_steps": args.max_steps})
    on_gpu = torch.cuda.is_available() and args.device != "cpu"
    deepspeed.init_distributed(dist_backend="nccl" if on_gpu else "gloo")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local_rank}") if on_gpu else torch.device("cpu")
    if on_gpu:
        torch.cuda.set_device(device)
    use_bf16 = stage.bf16 and on_gpu
    out_dir = Path(args.out)
    ds_dir = out_dir / DEEPSPEED_DIR
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / RESULT_FILE).unlink(missing_ok=True)
    dist.barrier()

    with open_reporter(rank) as report:
        tokenizer, vocab = load_text_tokenizer(Path(args.text_tokenizer))
        base = Path(args.base_checkpoint) if args.base_checkpoint else None
        model = prepare_model(stage, base, vocab.vocab_size, vocab.pad)
        if stage.gradient_checkpointing:
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
        model.train()
        n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        n_total = sum(p.numel() for p in model.parameters())
        optimizer = torch.optim.AdamW(
            param_groups(model, stage), lr=stage.lr, betas=stage.adam_betas, eps=1e-8
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(stage))
        ds_config = deepspeed_config(stage, use_bf16)
        engine, _, _, _ = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config
        )

        state = TrainState()
        if (ds_dir / "latest").is_file():
            load_path, client_state = engine.load_checkpoint(str(ds_dir))
            if load_path is None:
                raise RuntimeError(f"{ds_dir}: `latest` names a checkpoint that cannot be loaded")
            state = TrainState(**{k: client_state[k] for k in asdict(TrainState())})
            report.info(f"resumed from DeepSpeed checkpoint {load_path} at step {state.step}")
        resumed_from_step = state.step or None
        if rank == 0:
            # Steps logged after the checkpoint are trained again: drop their old lines.
            _truncate_log(out_dir / TRAIN_LOG, state.step)

        split = load_release_split(Path(args.lake), args.release, "train")
        mixture = [MixtureEntry(m.task, m.source, m.ratio) for m in stage.mixture]
        stream = training_stream(
            split,
            tokenizer,
            vocab,
            mixture,
            stage.seq_len,
            rank=rank,
            world_size=world_size,
            seed=stage.seed,
            interleave_ratio=tuple(stage.interleave_ratio),
        )
        for _ in range(state.sequences_consumed):  # the exact stream position of the checkpoint
            next(stream)

        report.info(
            f"stage {stage.stage} ({args.profile}) on release {args.release}: "
            f"{world_size} process(es) on {device.type}, "
            f"{n_trainable:,} of {n_total:,} parameters trainable, "
            f"K={model.num_mctp_modules} MCTP modules, steps {state.step}→{stage.max_steps}"
        )
        log_path = out_dir / TRAIN_LOG
        window: dict[str, list[float]] = {"loss": [], "main": [], "tokens": []}
        mctp_window: list[list[float]] = []
        window_start = time.perf_counter()
        # A resumed run that had already reached max_steps trains no further step: its
        # final figures are the last ones it logged.
        last: dict[str, Any] = _last_logged(log_path)
        freeze_lm = stage.trainable == "mctp_only"
        while state.step < stage.max_steps:
            step_start = time.perf_counter()
            for _ in range(stage.grad_accum_steps):
                batches = [next(stream) for _ in range(stage.micro_batch_size)]
                state.sequences_consumed += len(batches)
                batch = _stack(batches, device)
                output = engine(**batch, freeze_lm=freeze_lm)
                engine.backward(output.loss)
                engine.step()
                window["loss"].append(float(output.loss.detach()))
                if output.main_loss is not None:
                    window["main"].append(float(output.main_loss.detach()))
                mctp_window.append([float(v.detach()) for v in output.mctp_losses])
                real_tokens = sum(b.n_real_tokens for b in batches)
                window["tokens"].append(float(real_tokens))
                state.tokens_seen += real_tokens
            state.step += 1
            state.train_time_s += time.perf_counter() - step_start

            if state.step % stage.log_every_steps == 0 or state.step == stage.max_steps:
                elapsed_s = time.perf_counter() - window_start
                tokens = torch.tensor([sum(window["tokens"])], dtype=torch.float64)
                dist.all_reduce(tokens)  # tokens/s over every rank
                per_module = [_mean(list(col)) for col in zip(*mctp_window, strict=True)]
                last = {
                    "step": state.step,
                    "loss": _mean(window["loss"]),
                    "main_loss": None if freeze_lm else _mean(window["main"]),
                    "mctp_losses": per_module,
                    "lr": engine.get_lr()[0],
                    "tokens_per_s": float(tokens.item()) / max(elapsed_s, 1e-9),
                    "elapsed_s": round(state.train_time_s, 3),
                }
                if rank == 0:
                    with log_path.open("a", encoding="utf-8") as handle:
                        handle.write(json.dumps(last) + "\n")
                mctp_text = ", ".join(f"{v:.3f}" for v in per_module if v is not None)
                main_text = "" if last["main_loss"] is None else f" main {last['main_loss']:.4f}"
                report.info(
                    f"step {state.step}/{stage.max_steps} loss {last['loss']:.4f}{main_text}"
                    + (f" mctp [{mctp_text}]" if mctp_text else "")
                    + f" lr {last['lr']:.2e} {last['tokens_per_s']:.0f} tokens/s"
                )
                window = {"loss": [], "main": [], "tokens": []}
                mctp_window = []
                window_start = time.perf_counter()

            if state.step % stage.save_every_steps == 0 or state.step == stage.max_steps:
                tag = f"{TAG_PREFIX}{state.step:08d}"
                engine.save_checkpoint(str(ds_dir), tag=tag, client_state=asdict(state))
                if rank == 0:
                    prune_checkpoints(ds_dir, stage.keep_checkpoints)
                report.info(f"saved DeepSpeed checkpoint {tag}")

        tokens_total = torch.tensor([float(state.tokens_seen)], dtype=torch.float64)
        dist.all_reduce(tokens_total)
        result: dict[str, Any] = {
            "stage": stage.stage,
            "profile": args.profile,
            "steps": state.step,
            "final_loss": last.get("loss"),
            "final_main_loss": last.get("main_loss"),
            "final_mctp_losses": last.get("mctp_losses", []),
            "tokens_seen": int(tokens_total.item()),
            "tokens_per_s": (
                float(tokens_total.item()) / state.train_time_s if state.train_time_s else None
            ),
            "train_time_s": round(state.train_time_s, 3),
            "resumed_from_step": resumed_from_step,
            "world_size": world_size,
            "device": device.type,
            "num_mctp_modules": model.num_mctp_modules,
            "trainable_parameters": n_trainable,
            "parameters": n_total,
            "config_sha256": stage.config_sha256(),
            "tokenizer_sha256": text_tokenizer_sha256(Path(args.text_tokenizer)),
            "deepspeed_config": ds_config,
        }
        if rank == 0:
            info = {
                "stage": stage.stage,
                "profile": args.profile,
                "release": args.release,
                "base_checkpoint": args.base_checkpoint,
                "steps": state.step,
                "random_init": base is None and stage.stage == "stage1",
                "created_at": dt.datetime.now(dt.UTC).isoformat(),
            }
            module = engine.module
            result["checkpoint_sha256"] = export_checkpoint(
                module, tokenizer, out_dir / HF_DIR, info
            )
            result["checkpoint"] = str(out_dir / HF_DIR)
            tmp = out_dir / f".{RESULT_FILE}.tmp"
            tmp.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n", encoding="utf-8")
            os.replace(tmp, out_dir / RESULT_FILE)
            final_loss = result["final_loss"]
            report.info(
                f"stage {stage.stage} done: {state.step} steps, final loss "
                f"{'–' if final_loss is None else f'{final_loss:.4f}'}, "
                f"checkpoint {out_dir / HF_DIR}"
            )
            report.materialize(
                {
                    k: v
                    for k, v in result.items()
                    if k not in ("deepspeed_config",) and v is not None
                }
            )
        dist.barrier()
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments (the DeepSpeed launcher adds `--local_rank`)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="stage YAML (trainer/recipes/*.yaml)")
    parser.add_argument("--profile", default="upstream", help="recipe profile")
    parser.add_argument("--lake", required=True, help="lake root holding the release")
    parser.add_argument("--release", required=True, help="release to train on")
    parser.add_argument("--text-tokenizer", required=True, help="text tokenizer folder")
    parser.add_argument("--base-checkpoint", default=None, help="HF checkpoint to start from")
    parser.add_argument("--out", required=True, help="run folder (checkpoints, logs, result)")
    parser.add_argument("--max-steps", type=int, default=None, help="override max_steps")
    parser.add_argument("--device", choices=["auto", "cpu"], default="auto")
    parser.add_argument("--local_rank", type=int, default=int(os.environ.get("LOCAL_RANK", 0)))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run one stage; exit status 0 on success."""
    args = parse_args(argv)
    run_stage(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
