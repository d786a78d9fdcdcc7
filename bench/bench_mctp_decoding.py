"""Benchmark: decode speed of VITA-Audio's MCTP schedules, and their speed-up over Vanilla.

One run measures greedy decoding (`inference.generate.generate`) with each named
schedule (Vanilla `[8192, 0]`, Balance `[1,4,3,8,4,10]`, Boost `[1,10,4,10]`, Turbo
`[1,10]`) on one randomly initialised `Qwen2MCTPForCausalLM`:

- Shape: upstream's layout (Qwen2.5-7B: 28 backbone layers, 10 MCTP modules, hidden
  3584, MLP 18944, 28 heads of 128, 4 KV heads) with the width scaled to
  `--hidden-size` (default 512, to fit a 2-core CPU): heads of 128 (hidden / 128 of
  them), KV heads 4/28 of the heads (at least 1), MLP width in upstream's ratio
  (18944 / 3584, rounded to a multiple of 64), all 28 + 10 layers kept.
- Vocabulary: upstream's 168,072 scaled by the same factor as the width (24,010 at
  hidden 512; `--vocab-size` overrides). Backbone compute grows with hidden², the
  `lm_head` with hidden × vocab: with the full vocabulary at hidden 512 the `lm_head`
  would be ~40 % of a backbone step instead of ~8 % at 7B, and since every MCTP step
  pays for a full `lm_head` that would understate the MCTP speed-up. Scaling the
  vocabulary keeps the `lm_head`'s share of a step (and of the weights read per token)
  as at 7B.
- Workload: a random 32-token prompt, 256 new tokens, no eos (every run emits all of
  them); decode tokens/s excludes the prefill (which emits the first token).
- Threads: 1 on CPU unless `--threads` says otherwise. On a 2-core machine shared with
  other work, two threads' spin-waiting makes step times swing by up to 10× between
  runs; with one thread they repeat within a few per cent.
- Timing: one warm-up run per schedule, then `--repeats` rounds, each running every
  schedule once in a rotated order (interleaved, so drifts in machine load hit all
  schedules alike); the median over rounds is reported with its min-max range. The
  speed-up of a schedule is its tokens/s over Vanilla's in the same round (median and
  range over rounds).

Random weights make the emitted tokens meaningless, but the work per step does not
depend on them. Prints a Markdown table and writes everything as JSON to `--out`.
Reproduce (CPU default, about 3 minutes on one core; a 7B-width run on a GPU):

    .venv/bin/python bench/bench_mctp_decoding.py
    .venv/bin/python bench/bench_mctp_decoding.py --device cuda --hidden-size 3584
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from inference.generate import SCHEDULES, GenerationResult, generate
from trainer.model import Qwen2MCTPConfig, Qwen2MCTPForCausalLM

UPSTREAM = {
    "model": "Qwen2.5-7B-Instruct + 10 MCTP modules (VITA-Audio)",
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "backbone_layers": 28,
    "mctp_modules": 10,
    "head_dim": 128,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "vocab_size": 168072,
}
ORDER = ["vanilla", "balance", "boost", "turbo"]
DEFAULT_OUT = REPO / "bench" / "mctp_decoding.json"


def scaled_config(hidden_size: int, vocab_size: int | None = None) -> Qwen2MCTPConfig:
    """Upstream's shape at another width (see the module docstring)."""
    head_dim = UPSTREAM["head_dim"]
    if hidden_size % head_dim:
        raise ValueError(f"--hidden-size must be a multiple of {head_dim} (the head size)")
    heads = hidden_size // head_dim
    kv_heads = max(
        1, round(heads * UPSTREAM["num_key_value_heads"] / UPSTREAM["num_attention_heads"])
    )
    while heads % kv_heads:
        kv_heads -= 1
    width_ratio = hidden_size / UPSTREAM["hidden_size"]
    intermediate = 64 * round(
        hidden_size * UPSTREAM["intermediate_size"] / UPSTREAM["hidden_size"] / 64
    )
    return Qwen2MCTPConfig(
        num_mctp_modules=UPSTREAM["mctp_modules"],
        num_hidden_layers=UPSTREAM["backbone_layers"] + UPSTREAM["mctp_modules"],
        hidden_size=hidden_size,
        intermediate_size=intermediate,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        vocab_size=vocab_size or round(UPSTREAM["vocab_size"] * width_ratio),
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
    )


def build_model(
    config: Qwen2MCTPConfig, device: str, dtype: torch.dtype, seed: int
) -> Qwen2MCTPForCausalLM:
    """Random weights, created directly on the device in the target dtype."""
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = Qwen2MCTPForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def step_summary(result: GenerationResult) -> dict:
    """Per-run figures: decode tokens/s, prefill, median step times by kind."""
    decode = list(zip(result.step_kinds[1:], result.token_times_s[1:], strict=True))
    by_kind = {kind: [t for k, t in decode if k == kind] for kind in "Mm"}
    return {
        "tokens": len(result.tokens),
        "tokens_per_s": result.tokens_per_s,
        "prefill_s": result.prefill_s,
        "backbone_steps": result.step_kinds.count("M"),
        "mctp_steps": result.step_kinds.count("m"),
        "backbone_step_ms": 1e3 * statistics.median(by_kind["M"]) if by_kind["M"] else None,
        "mctp_step_ms": 1e3 * statistics.median(by_kind["m"]) if by_kind["m"] else None,
    }


def run_benchmark(model: Qwen2MCTPForCausalLM, args: argparse.Namespace) -> dict:
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(args.seed)
    prompt = torch.randint(0, model.config.vocab_size, (1, args.prompt_tokens), generator=generator)
    prompt = prompt.to(device)

    def run(name: str, new_tokens: int) -> GenerationResult:
        return generate(model, prompt, max_new_tokens=new_tokens, schedule=name)

    for name in ORDER:  # warm-up: every module and both step kinds run at least once
        run(name, min(args.new_tokens, 48))
    rounds: list[dict[str, dict]] = []
    for index in range(args.repeats):
        order = ORDER[index % len(ORDER) :] + ORDER[: index % len(ORDER)]
        rounds.append({name: step_summary(run(name, args.new_tokens)) for name in order})
        speeds = ", ".join(f"{n} {rounds[-1][n]['tokens_per_s']:.1f}" for n in ORDER)
        print(f"round {index + 1}/{args.repeats}: tokens/s {speeds}", flush=True)

    summary = {}
    for name in ORDER:
        speeds = [r[name]["tokens_per_s"] for r in rounds]
        speedups = [r[name]["tokens_per_s"] / r["vanilla"]["tokens_per_s"] for r in rounds]

        def median_of(key: str, name: str = name) -> float | None:
            values = [r[name][key] for r in rounds if r[name][key] is not None]
            return statistics.median(values) if values else None

        summary[name] = {
            "schedule": SCHEDULES[name],
            "backbone_steps": rounds[0][name]["backbone_steps"],
            "mctp_steps": rounds[0][name]["mctp_steps"],
            "tokens_per_s_median": statistics.median(speeds),
            "tokens_per_s_min": min(speeds),
            "tokens_per_s_max": max(speeds),
            "speedup_median": statistics.median(speedups),
            "speedup_min": min(speedups),
            "speedup_max": max(speedups),
            "backbone_step_ms_median": median_of("backbone_step_ms"),
            "mctp_step_ms_median": median_of("mctp_step_ms"),
            "prefill_ms_median": 1e3 * median_of("prefill_s"),
        }
    return {"summary": summary, "rounds": rounds}


def machine(device: str) -> str:
    name = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    threads = torch.get_num_threads()
    text = (
        f"{name}, {os.cpu_count()} CPUs, torch {torch.__version__} with "
        f"{threads} thread{'s' if threads != 1 else ''}; Python {platform.python_version()}"
    )
    if device == "cuda":
        text += f"; GPU {torch.cuda.get_device_name()}"
    return text


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def table(summary: dict) -> str:
    lines = [
        "| schedule | counts | M / m steps | decode tokens/s, median (min-max) | "
        "speed-up vs Vanilla, median (min-max) | ms per M step | ms per m step | prefill ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in summary.items():
        counts = "[" + ", ".join(str(v) for v in row["schedule"]) + "]"
        lines.append(
            f"| {name.capitalize()} | `{counts}` | {row['backbone_steps']} / {row['mctp_steps']} | "
            f"{row['tokens_per_s_median']:.1f} ({row['tokens_per_s_min']:.1f}-"
            f"{row['tokens_per_s_max']:.1f}) | {row['speedup_median']:.2f}× "
            f"({row['speedup_min']:.2f}-{row['speedup_max']:.2f}) | "
            f"{_ms(row['backbone_step_ms_median'])} | {_ms(row['mctp_step_ms_median'])} | "
            f"{_ms(row['prefill_ms_median'])} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON ({DEFAULT_OUT})")
    parser.add_argument("--hidden-size", type=int, default=512, help="model width (512)")
    parser.add_argument(
        "--vocab-size", type=int, default=None, help="default: 168072 × hidden / 3584"
    )
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (5)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16"],
        default=None,
        help="default: float32 on cpu, bfloat16 on cuda",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: 1 on cpu, torch's default on cuda)",
    )
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    dtype_name = args.dtype or ("bfloat16" if args.device == "cuda" else "float32")

    if args.threads or args.device == "cpu":
        torch.set_num_threads(args.threads or 1)
    config = scaled_config(args.hidden_size, args.vocab_size)
    load_before = os.getloadavg()
    started = time.perf_counter()
    model = build_model(config, args.device, getattr(torch, dtype_name), args.seed)
    n_params = sum(p.numel() for p in model.parameters())
    n_mctp = sum(p.numel() for p in model.mctp_parameters())
    print(
        f"model: hidden {config.hidden_size}, {model.num_backbone_layers} + "
        f"{model.num_mctp_modules} layers, MLP {config.intermediate_size}, "
        f"{config.num_attention_heads} heads / {config.num_key_value_heads} KV, vocab "
        f"{config.vocab_size:,}; {n_params / 1e6:,.0f} M parameters ({n_mctp / 1e6:,.0f} M "
        f"in MCTP modules), {dtype_name} on {args.device}; built in "
        f"{time.perf_counter() - started:.1f} s",
        flush=True,
    )
    results = run_benchmark(model, args)
    info = {
        "machine": machine(args.device),
        "device": args.device,
        "dtype": dtype_name,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "wall_s": time.perf_counter() - started,
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "parameters": n_params,
        "mctp_parameters": n_mctp,
        "config": {
            key: getattr(config, key)
            for key in (
                "hidden_size",
                "intermediate_size",
                "num_hidden_layers",
                "num_mctp_modules",
                "num_attention_heads",
                "num_key_value_heads",
                "vocab_size",
            )
        },
        "upstream": UPSTREAM,
    }
    print()
    print(table(results["summary"]))
    print()
    print(f"- Machine: {info['machine']}")
    print(
        f"- Load average (1, 5, 15 min) before: {tuple(round(x, 2) for x in load_before)}; "
        f"after: {tuple(round(x, 2) for x in info['load_average_after'])}; "
        f"wall {info['wall_s']:.0f} s"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"info": info, **results}, indent=2) + "\n", encoding="utf-8")
    print(f"- JSON: {args.out}")


if __name__ == "__main__":
    main()
