"""Benchmark: GLM-4-Voice tokenizer throughput on CPU, and what duration-sorted batching saves.

Measured in one run:

1. Padding overhead, computed exactly (no model needed): encoder frames the
   model runs (batch size × padded length, summed over batches) over frames
   of audio (⌈samples / 320⌉ per 30 s window), for three batchings of the
   same windows:
   - upstream: windows in arrival order, 128 per batch, each batch padded to
     its longest window (rounded up to 1280 samples), as
     `speech_tokenizer/utils.py` does;
   - sorted × 128: the same, windows sorted by length first;
   - voxlake: `tokenizer.plan_batches`, sorted, each window padded to a
     multiple of 0.4 s, as many windows per batch as `max_batch_frames` padded
     log-mel frames allow (`DEFAULT_MAX_BATCH_FRAMES`: the CPU and CUDA
     defaults), rows rounded up to whole product calls (`ROWS_PER_CALL`).
   On two utterance sets: a synthetic WenetSpeech/Emilia-like one (2,000
   utterances, lognormal durations, median 5 s, σ 0.6 in log, clipped to
   1–20 s, arrival order random) and the fixture corpora's 67 utterances.
2. Throughput, seconds of audio per second of wall time (× real time), on
   CPU, of `GLM4VoiceTokenizer.tokenize` on synthetic speech-like audio with
   the synthetic durations: (a) the real architecture's dimensions (d_model
   1280, 16 layers, 20 heads, ffn 5120, codebook 16384 × 1280), random
   weights built in memory; (b) the demo checkpoint (d_model 64, 4 layers).
   For (a) also the same batches with each matrix product in one call
   (`rows_per_call` 0) instead of fixed-size calls: what bitwise batch
   invariance costs. And the log-mel features alone. The fastest of
   `--rounds` rounds counts (others share the machine).

It prints the tables and writes them to the "GLM-4-Voice tokenizer" section
of `bench/README.md`. Reproduce with:

    .venv/bin/python bench/bench_tokenizer.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import WhisperFeatureExtractor

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from inference.glm4voice import (
    RELEASED_CONFIG,
    RELEASED_PREPROCESSOR,
    GLM4VoiceTokenizer,
    GLM4VoiceTokenizerConfig,
    load_tokenizer,
    write_demo_checkpoint,
)
from inference.glm4voice.demo import calibration_signal, init_random_weights
from inference.glm4voice.features import split_windows, window_features
from inference.glm4voice.model import (
    LENGTH_QUANTUM_FRAMES,
    ROWS_PER_CALL,
    WhisperVQEncoder,
    padded_feature_frames,
)
from inference.glm4voice.tokenizer import (
    DEFAULT_MAX_BATCH_FRAMES,
    TokenizeStats,
    plan_batches,
    window_feature_frames,
)

README = REPO / "bench" / "README.md"
SECTION_TITLE = "## GLM-4-Voice tokenizer"
RATE = 16000
SAMPLES_PER_CODE = 1280
UPSTREAM_BATCH_WINDOWS = 128


# --- utterance sets ------------------------------------------------------------------------


def synthetic_durations(count: int, seed: int) -> list[float]:
    """Lognormal durations in seconds: median 5 s, σ 0.6 (log), clipped to [1, 20] s."""
    rng = np.random.default_rng(seed)
    return [float(d) for d in np.clip(rng.lognormal(np.log(5.0), 0.6, count), 1.0, 20.0)]


def fixture_durations() -> list[float]:
    """Durations (s) of the fixture corpora's accepted-by-ingest utterances, file order."""
    out = []
    for path in sorted((REPO / "tests" / "data" / "corpora" / "expected").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if row["status"] == "ok" and row["duration_s"]:
                out.append(float(row["duration_s"]))
    return out


def window_lengths(durations_s: Sequence[float]) -> list[int]:
    """Samples of every 30 s window of every utterance, in arrival order."""
    lengths = []
    for duration in durations_s:
        n = round(duration * RATE)
        lengths += [min(480_000, n - start) for start in range(0, n, 480_000)]
    return lengths


# --- padding overhead ----------------------------------------------------------------------


def useful_frames(lengths: Sequence[int]) -> int:
    """Encoder frames of audio: ⌈samples / 320⌉ per window."""
    return sum(-(-n // 320) for n in lengths)


def fixed_batches_frames(lengths: Sequence[int], per_batch: int) -> int:
    """Encoder frames computed by batches of `per_batch` consecutive windows, each padded to
    its longest window rounded up to 1280 samples (4 encoder frames per code)."""
    total = 0
    for start in range(0, len(lengths), per_batch):
        batch = lengths[start : start + per_batch]
        total += len(batch) * 4 * -(-max(batch) // SAMPLES_PER_CODE)
    return total


def voxlake_frames(lengths: Sequence[int], max_batch_frames: int,
                   rows_per_call: int) -> tuple[int, int]:
    """(encoder frames computed, batches) of voxlake's plan for these windows: padded
    lengths summed per batch, rounded up to whole product calls (`TokenizeStats`)."""
    frames = [window_feature_frames(n, SAMPLES_PER_CODE, 160) for n in lengths]
    batches = plan_batches(frames, max_batch_frames, LENGTH_QUANTUM_FRAMES)
    computed = 0
    for batch in batches:
        rows = sum(padded_feature_frames(frames[i]) // 2 for i in batch)
        computed += -(-rows // rows_per_call) * rows_per_call
    return computed, len(batches)


def padding_rows(name: str, durations_s: Sequence[float]) -> dict:
    """Padding overheads of the three batchings for one utterance set."""
    lengths = window_lengths(durations_s)
    useful = useful_frames(lengths)
    cpu, cpu_batches = voxlake_frames(lengths, DEFAULT_MAX_BATCH_FRAMES["cpu"],
                                      ROWS_PER_CALL["cpu"])
    cuda, cuda_batches = voxlake_frames(lengths, DEFAULT_MAX_BATCH_FRAMES["cuda"],
                                        ROWS_PER_CALL["cuda"])
    return {
        "name": name,
        "utterances": len(durations_s),
        "audio_s": sum(durations_s),
        "windows": len(lengths),
        "useful": useful,
        "upstream": fixed_batches_frames(lengths, UPSTREAM_BATCH_WINDOWS) / useful,
        "upstream_batches": -(-len(lengths) // UPSTREAM_BATCH_WINDOWS),
        "sorted128": fixed_batches_frames(sorted(lengths, reverse=True),
                                          UPSTREAM_BATCH_WINDOWS) / useful,
        "cpu": cpu / useful,
        "cpu_batches": cpu_batches,
        "cuda": cuda / useful,
        "cuda_batches": cuda_batches,
    }


# --- throughput ----------------------------------------------------------------------------


def synthetic_audio(durations_s: Sequence[float], seed: int) -> list[np.ndarray]:
    """Speech-like audio (the demo's calibration signal) cut to the given durations."""
    source = calibration_signal(seed, duration_s=60.0)
    out, offset = [], 0
    for duration in durations_s:
        n = round(duration * RATE)
        if offset + n > len(source):
            offset = 0
        out.append(source[offset : offset + n].copy())
        offset += n
    return out


def take_audio_s(durations_s: Sequence[float], audio_s: float) -> list[float]:
    """The first durations that add up to at least `audio_s` seconds."""
    out: list[float] = []
    for duration in durations_s:
        if sum(out) >= audio_s:
            break
        out.append(duration)
    return out


def real_dimension_tokenizer(seed: int) -> GLM4VoiceTokenizer:
    """The released architecture with random weights, in memory (fp32, CPU)."""
    config = GLM4VoiceTokenizerConfig.from_dict(RELEASED_CONFIG)
    with torch.device("meta"):
        model = WhisperVQEncoder(config)
    model = init_random_weights(model.to_empty(device="cpu"), seed).eval().requires_grad_(False)
    extractor = WhisperFeatureExtractor.from_dict(RELEASED_PREPROCESSOR)
    return GLM4VoiceTokenizer(model, extractor, directory=Path("in-memory"),
                              checkpoint_sha256="in-memory random weights")


def real_dimension_runs(durations_s: Sequence[float], seed: int, rounds: int) -> list[dict]:
    """Time `tokenize` at the real dimensions, with fixed-size product calls and with one call
    per product, interleaved A B, B A, ... (the fastest round of each counts); then the
    encoder's forward pass alone on 8 × 30 s windows, the same way."""
    audio = synthetic_audio(durations_s, seed)
    real = real_dimension_tokenizer(seed)
    real.tokenize(audio[:2])  # warm-up
    fixed = real.model.rows_per_call
    modes = {"`tokenize`, default (batch-invariant)": fixed,
             "`tokenize`, one call per product (not batch-invariant)": None}
    best: dict[str, tuple[float, TokenizeStats]] = {}
    walls: dict[str, list[float]] = {path: [] for path in modes}
    for round_index in range(rounds):
        order = list(modes.items())
        for path, rows_per_call in order if round_index % 2 == 0 else order[::-1]:
            real.model.rows_per_call = rows_per_call
            wall = best_of(1, lambda: real.tokenize(audio))
            assert real.last_stats is not None
            walls[path].append(wall)
            if path not in best or wall < best[path][0]:
                best[path] = (wall, real.last_stats)
            print(path, f"{wall:.1f} s", flush=True)
    rows = []
    for path, (wall, stats) in best.items():
        rows.append({"model": "real dimensions, random weights", "path": path,
                     "audio_s": stats.audio_s, "windows": stats.windows, "wall_s": wall,
                     "rtf": stats.audio_s / wall, "padding": stats.padding_overhead,
                     "rounds_s": walls[path]})
        print(rows[-1], flush=True)
    features = torch.randn(8, 128, 3000, generator=torch.Generator().manual_seed(seed)) * 0.5
    frame_mask = torch.ones(8, 3000, dtype=torch.long)
    forward_best: dict[int | None, float] = {}
    with torch.inference_mode():
        for round_index in range(max(rounds, 3)):
            order = [fixed, None] if round_index % 2 == 0 else [None, fixed]
            for rows_per_call in order:
                real.model.rows_per_call = rows_per_call
                wall = best_of(1, lambda: real.model(features, frame_mask))
                forward_best[rows_per_call] = min(wall, forward_best.get(rows_per_call, wall))
    for rows_per_call, label in ((fixed, f"{fixed:,}-row calls"), (None, "one call per product")):
        wall = forward_best[rows_per_call]
        rows.append({"model": "real dimensions, random weights",
                     "path": f"encoder forward only, 8 × 30 s windows, {label}",
                     "audio_s": 240.0, "windows": 8, "wall_s": wall, "rtf": 240.0 / wall})
        print(rows[-1], flush=True)
    real.model.rows_per_call = fixed
    return rows


def best_of(rounds: int, run: Callable[[], None]) -> float:
    """Fastest wall time (s) of `rounds` runs."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def features_only(tokenizer: GLM4VoiceTokenizer, audios: Sequence[np.ndarray]) -> None:
    """Log-mel features of every window, as the fast path computes them."""
    for audio in audios:
        for window in split_windows(audio):
            window_features(tokenizer.extractor, window, SAMPLES_PER_CODE)


# --- report --------------------------------------------------------------------------------


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (or the platform's processor string)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def write_readme_section(section: str, readme: Path = README) -> None:
    """Replace (or add) this benchmark's section of `bench/README.md`, keeping the others."""
    text = readme.read_text(encoding="utf-8") if readme.exists() else "# Benchmarks\n\n"
    pattern = re.compile(rf"^{re.escape(SECTION_TITLE)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    readme.write_text(text.rstrip("\n") + "\n", encoding="utf-8")


def _seconds(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.1f} s" for v in values)


def _batches(count: int) -> str:
    return f"{count} batch" if count == 1 else f"{count} batches"


def section(padding: list[dict], speed: list[dict], info: dict, command: str) -> str:
    """The README section: set-up, padding table, throughput table, reading."""
    lines = [
        SECTION_TITLE,
        "",
        "Padding overhead = encoder frames computed (batch size × padded length, summed) / "
        "encoder frames of audio (⌈samples / 320⌉ per 30 s window); 1.00 = no padding. "
        "Upstream: arrival order, 128 windows per batch, padded to the longest (as "
        "`speech_tokenizer/utils.py`); sorted × 128: the same after sorting by length; "
        "voxlake: sorted, each window padded to a multiple of 0.4 s, `max_batch_frames` "
        f"padded log-mel frames per batch ({DEFAULT_MAX_BATCH_FRAMES['cpu']:,} = CPU default, "
        f"{DEFAULT_MAX_BATCH_FRAMES['cuda']:,} = CUDA default), rows rounded up to whole "
        f"product calls ({ROWS_PER_CALL['cpu']:,} rows on CPU, {ROWS_PER_CALL['cuda']:,} on "
        "CUDA). Synthetic "
        "set: 2,000 WenetSpeech/Emilia-like utterances, lognormal durations (median 5 s, "
        "σ 0.6 in log, clipped to 1-20 s), random arrival order; fixture set: the fixture "
        "corpora's 67 utterances in file order.",
        "",
        "| utterance set | utterances | audio | windows | upstream (×128, arrival) | "
        "sorted ×128 | voxlake, CPU budget | voxlake, CUDA budget |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in padding:
        lines.append(
            f"| {row['name']} | {row['utterances']:,} | {row['audio_s'] / 3600:.2f} h | "
            f"{row['windows']:,} | {row['upstream']:.3f} ({_batches(row['upstream_batches'])}) | "
            f"{row['sorted128']:.3f} | {row['cpu']:.3f} ({_batches(row['cpu_batches'])}) | "
            f"{row['cuda']:.3f} ({_batches(row['cuda_batches'])}) |")
    lines += [
        "",
        "Throughput, CPU only: no GPU is available to this benchmark's session, so there are "
        "no CUDA figures. × RT = seconds of 16 kHz audio per second of wall time, fastest of "
        f"{info['rounds']} rounds (the two real-dimension paths interleaved); audio: synthetic "
        "speech-like signal cut to the synthetic set's first durations, one `tokenize` call "
        "(600 s is what the pipeline's tokens step passes per call); padding: "
        "`TokenizeStats.padding_overhead` of that call.",
        "",
        f"- Machine: {info['cpu']}, {info['cores']} CPUs, torch {torch.__version__} with "
        f"{info['threads']} threads; Python {platform.python_version()}",
        f"- Load average (1, 5, 15 min) before the run: {info['load_before']}; after: "
        f"{info['load_after']} (other work shares this machine: throughput figures are lower "
        "bounds)",
        "",
        "| model | path | audio (s) | windows | padding | wall (s) | × real time |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in speed:
        padding = f"{row['padding']:.3f}" if "padding" in row else "-"
        lines.append(f"| {row['model']} | {row['path']} | {row['audio_s']:.0f} | "
                     f"{row['windows']} | {padding} | {row['wall_s']:.2f} | {row['rtf']:,.1f} |")
    lines += ["", info["reading"], "", "Reproduce:", "", "```", command, "```", ""]
    return "\n".join(lines)


def main() -> None:
    """Compute padding overheads, time the tokenizer, print and record the section."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real-audio-s", type=float, default=600.0,
                        help="audio for the real-dimension runs, seconds (600: one call of "
                        "the pipeline's tokens step)")
    parser.add_argument("--demo-audio-s", type=float, default=600.0,
                        help="audio for the demo-checkpoint runs, seconds (600)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds; the fastest counts (2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-readme", action="store_true", help="print only")
    args = parser.parse_args()
    load_before = ", ".join(f"{v:.2f}" for v in os.getloadavg())

    durations = synthetic_durations(2000, args.seed)
    padding = [padding_rows("synthetic WenetSpeech/Emilia-like", durations),
               padding_rows("fixture corpora", fixture_durations())]
    for row in padding:
        print(row, flush=True)

    speed = real_dimension_runs(take_audio_s(durations, args.real_audio_s), args.seed,
                                args.rounds)
    demo_durations = take_audio_s(durations, args.demo_audio_s)
    demo_audio = synthetic_audio(demo_durations, args.seed)
    with tempfile.TemporaryDirectory() as scratch:
        demo = load_tokenizer(write_demo_checkpoint(Path(scratch) / "demo"), device="cpu")
        demo.tokenize(demo_audio[:2])
        wall = best_of(args.rounds, lambda: demo.tokenize(demo_audio))
        stats = demo.last_stats
        assert stats is not None
        speed.append({"model": "demo checkpoint (d_model 64, 4 layers)",
                      "path": "`tokenize`, default", "audio_s": stats.audio_s,
                      "windows": stats.windows, "wall_s": wall, "rtf": stats.audio_s / wall,
                      "padding": stats.padding_overhead})
        print(speed[-1], flush=True)
        wall = best_of(args.rounds, lambda: features_only(demo, demo_audio))
        speed.append({"model": "-", "path": "log-mel features alone (per window)",
                      "audio_s": stats.audio_s, "windows": stats.windows, "wall_s": wall,
                      "rtf": stats.audio_s / wall})
        print(speed[-1], flush=True)

    synthetic, fixtures = padding
    fixed_over_one_call = speed[0]["rtf"] / speed[1]["rtf"]
    forward_ratio = speed[2]["rtf"] / speed[3]["rtf"]
    reading = (
        f"How to read it. Sorting is what removes padding: on the synthetic set upstream's "
        f"arrival-order batches of 128 compute {synthetic['upstream']:.2f}× the useful frames, "
        f"sorting alone brings that to {synthetic['sorted128']:.3f}×, and voxlake's batches "
        f"keep it at {synthetic['cpu']:.3f}× (CPU budget) / {synthetic['cuda']:.3f}× (CUDA "
        f"budget); what is left is the 1280-sample rounding every window gets upstream too, "
        f"at most 0.4 s per window for the length classes, and the last product call of each "
        f"batch. The fixture set ({fixtures['windows']} windows, less than one upstream "
        f"batch) is a single batch everywhere: upstream pads it to its longest window "
        f"({fixtures['upstream']:.2f}×); voxlake's {fixtures['cpu']:.3f}× / "
        f"{fixtures['cuda']:.3f}× is mostly the rounding of its one batch up to whole "
        f"{ROWS_PER_CALL['cpu']:,}- / {ROWS_PER_CALL['cuda']:,}-row product calls, which "
        f"weighs little in full-size batches. Fixed-size product calls (what makes codes "
        f"bitwise batch-invariant) run at {forward_ratio:.2f}× the throughput of one call per "
        f"product in the encoder's forward pass on 8 full 30 s windows (best rounds, "
        f"interleaved), and at {fixed_over_one_call:.2f}× over the whole 600 s `tokenize` "
        f"call, where they also compute the zero rows of each batch's last call "
        f"({speed[0]['padding']:.3f} against {speed[1]['padding']:.3f} frames computed per "
        f"frame of audio). Single rounds on this shared machine move by tens of per cent with "
        f"its load (`tokenize` rounds: {_seconds(speed[0]['rounds_s'])} with fixed calls, "
        f"{_seconds(speed[1]['rounds_s'])} with one call), so smaller differences are noise. "
        f"On CPU the real-size encoder "
        f"runs at {speed[0]['rtf']:.1f}× real time, about {3600 / speed[0]['rtf']:,.0f} s of "
        f"two cores per hour of audio: a corpus-sized run wants a GPU. The log-mel features "
        f"take {speed[0]['rtf'] / speed[5]['rtf']:.2%} of the CPU time at the real dimensions."
    )
    info = {
        "rounds": args.rounds,
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "load_before": load_before,
        "load_after": ", ".join(f"{v:.2f}" for v in os.getloadavg()),
        "reading": reading,
    }
    command = ".venv/bin/python bench/bench_tokenizer.py"
    text = section(padding, speed, info, command)
    print()
    print(text)
    if not args.no_readme:
        write_readme_section(text)
        print(f"recorded in {README.relative_to(REPO)}")


if __name__ == "__main__":
    main()
