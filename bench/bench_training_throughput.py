"""Benchmark: training throughput (tokens/s) of the four stages with the `tiny` profile on CPU.

Each stage runs exactly as the Dagster assets run it: `pipelines.training.plan_stage`
builds the real `deepspeed` launcher command (ZeRO-2, fp32 on CPU, one process), the
trainer streams a release's shards with webdataset, packs examples to the profile's
sequence length (256) and trains; the figures are the trainer's own `result.json`:
real (non-padding) tokens trained per second of training-loop time (model, data and
optimizer steps; process start-up, model build and checkpoint export excluded), and
the wall time of the whole launch for comparison.

The release is a synthetic one written with the real shard writer (the tiny release of
the training tests, enlarged: `--utterances` utterances, English and Mandarin
transcripts, 12.5 codes/s of 0.4-1.6 s audio). Every stage runs `--steps` optimizer
steps (the profile's own 8-10 are too few to time). Prints a Markdown table and writes
JSON to `--out`.

    .venv/bin/python bench/bench_training_throughput.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "trainer"))

from tiny_release import build_tiny_release

from pipelines.project import init_project
from pipelines.steps.train import finish_run, plan_stage, read_result, start_run
from schemas import ProjectConfig
from schemas.training import STAGE_ORDER, TrainingConfig


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--utterances", type=int, default=200)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "training_throughput.json")
    args = parser.parse_args()

    import torch

    work = Path(tempfile.mkdtemp(prefix="voxlake-bench-train-"))
    try:
        build_tiny_release(work, n_utterances=args.utterances)
        project = init_project(
            work,
            ProjectConfig(training=TrainingConfig(release="tiny-v1", profile="tiny")),
        )
        load_before = os.getloadavg()
        rows = []
        for stage in STAGE_ORDER:
            plan = plan_stage(project, stage, max_steps=args.steps)
            record = start_run(project, plan)
            started = time.perf_counter()
            done = subprocess.run(plan.command, env=plan.env, capture_output=True, text=True)
            wall_s = time.perf_counter() - started
            if done.returncode != 0:
                finish_run(project, plan, record, None)
                sys.exit(f"stage {stage} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
            result = read_result(plan)
            finish_run(project, plan, record, result)
            rows.append(
                {
                    "stage": stage,
                    "trainable": plan.config.trainable,
                    "mctp_modules": result["num_mctp_modules"],
                    "parameters": result["parameters"],
                    "trainable_parameters": result["trainable_parameters"],
                    "steps": result["steps"],
                    "seq_len": plan.config.seq_len,
                    "tokens": result["tokens_seen"],
                    "train_time_s": result["train_time_s"],
                    "tokens_per_s": result["tokens_per_s"],
                    "launch_wall_s": round(wall_s, 2),
                    "final_loss": result["final_loss"],
                }
            )
            print(f"{stage}: {result['tokens_per_s']:.0f} tokens/s", flush=True)
        load_after = os.getloadavg()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    machine = (
        f"{_cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads; Python {platform.python_version()}"
    )
    print(f"\n- Machine: {machine}")
    print(f"- Load average before: {load_before[0]:.2f}; after: {load_after[0]:.2f}")
    print(f"- Release: {args.utterances} synthetic utterances; {args.steps} steps per stage\n")
    print(
        "| stage | trains | K | parameters (trainable) | steps × seq len | tokens | "
        "train time (s) | tokens/s | launch wall (s) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['stage']} | {r['trainable']} | {r['mctp_modules']} | "
            f"{r['parameters']:,} ({r['trainable_parameters']:,}) | "
            f"{r['steps']} × {r['seq_len']} | {r['tokens']:,} | {r['train_time_s']:.1f} | "
            f"{r['tokens_per_s']:,.0f} | {r['launch_wall_s']:.1f} |"
        )
    args.out.write_text(
        json.dumps(
            {
                "machine": machine,
                "load_before": load_before,
                "load_after": load_after,
                "utterances": args.utterances,
                "steps": args.steps,
                "stages": rows,
            },
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
