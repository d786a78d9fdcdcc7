"""Benchmark: audio preparation throughput, decode-only against full preparation, 1 and all cores.

Workload: the audio of every `ok` utterance of the committed fixture corpora
(`tests/data/corpora`, all formats: WAV, FLAC, MP3 in tars, Ogg Vorbis, Opus,
Arrow/Parquet cells, long WenetSpeech Opus recordings), read into memory once
(so no disk I/O is timed) and repeated until it holds at least `--min-audio-s`
seconds (default 1800). A work item is one recording (file, tar member or
cell) with the utterances cut from it.

Measured in one run, in × real time (seconds of source audio per second of
wall time):

- decode-only: `pipelines.audio.decode.decode` of each recording to float32, nothing else;
- full preparation: `pipelines.audio.prepare.prepare_many` (decode, mono, resample to
  16 kHz once per recording, cut each utterance) plus, for every utterance,
  `quality.measures.measure(samples, 16000, text)` (every quality measure) and
  `pipelines.audio.pcm.pcm_sha256` (the content hash of the quality record);

each on one core (one process) and on all cores (one process per core, the
recordings split between them round-robin, timed from a common start to the
last finish); the fastest of `--rounds` rounds counts. Then a one-core
profile of full preparation, step by step.
Target: full preparation keeps at least 60 % of decode-only throughput.

It prints the tables and writes them to the "Preparation throughput" section
of `bench/README.md`. Reproduce with:

    .venv/bin/python bench/bench_preparation.py
"""

from __future__ import annotations

# One thread per process, before numpy/torch load: "one core" must mean one core.
import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse
import io
import json
import multiprocessing as mp
import platform
import re
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipelines.audio.decode import decode
from pipelines.audio.pcm import pcm_sha256
from pipelines.audio.prepare import PreparedAudio, Segment, cut, prepare_many, resample, to_mono
from pipelines.audio.ref import AudioOpener
from quality import levels, snr, spectrum
from quality import measures as quality_measures
from schemas.audio import TARGET_SAMPLE_RATE_HZ

README = REPO / "bench" / "README.md"
SECTION_TITLE = "## Preparation throughput"
CORPORA = REPO / "tests" / "data" / "corpora"
TARGET_SHARE = 0.60

# expected/<name>.jsonl → the folder its audio paths are relative to
CORPUS_ROOTS = {
    "custom_folder": "custom/folder",
    "custom_hf_disk": "custom/hf_disk",
    "custom_hf_parquet": "custom/hf_parquet",
    "custom_table": "custom/table",
    "custom_table_jsonl": "custom/table",
    "custom_vita": "custom/vita",
    "emilia": "emilia",
    "librispeech": "librispeech/LibriSpeech",
    "wenetspeech": "wenetspeech",
}


@dataclass(frozen=True)
class Recording:
    """One recording in memory and the utterances cut from it."""

    name: str  # for the decoder: its suffix picks the codec
    data: bytes
    duration_s: float  # decoded duration of the whole recording
    utterances: tuple[tuple[Segment, str | None], ...]  # (cut, transcript)


def load_workload() -> list[Recording]:
    """Every recording with at least one `ok` utterance in the fixture corpora, in memory."""
    groups: dict[tuple[str, str, str | None], dict[tuple, tuple[Segment, str | None]]] = (
        defaultdict(dict)
    )
    for corpus, folder in CORPUS_ROOTS.items():
        for line in (CORPORA / "expected" / f"{corpus}.jsonl").read_text("utf-8").splitlines():
            row = json.loads(line)
            if row["status"] != "ok":
                continue
            is_segment = corpus == "wenetspeech" or row["offset_s"] > 0
            segment = Segment(
                row["audio_path"],
                row["audio_member"],
                row["offset_s"],
                row["duration_s"] if is_segment else None,
            )
            key = (segment.offset_s, segment.duration_s)  # table and jsonl share files
            groups[(folder, row["audio_path"], row["audio_member"])][key] = (segment, row["text"])
    recordings = []
    for (folder, audio_path, member), utterances in sorted(groups.items()):
        with AudioOpener(CORPORA / folder) as opener:
            source = opener.open(audio_path, member)
            data = source.getvalue() if isinstance(source, io.BytesIO) else source.read_bytes()
        name = f"{audio_path}/{member}" if member else audio_path
        duration_s = decode(io.BytesIO(data), name).duration_s
        recordings.append(Recording(name, data, duration_s, tuple(utterances.values())))
    return recordings


def repeat_to(recordings: list[Recording], min_audio_s: float) -> list[Recording]:
    """The recordings, repeated whole until they add up to at least `min_audio_s` seconds."""
    once = sum(r.duration_s for r in recordings)
    return recordings * max(1, int(np.ceil(min_audio_s / once)))


def decode_only(recordings: list[Recording]) -> float:
    """Decode every recording to float32; return the seconds of audio decoded."""
    total = 0.0
    for recording in recordings:
        total += decode(io.BytesIO(recording.data), recording.name).duration_s
    return total


def full_preparation(recordings: list[Recording]) -> float:
    """Prepare and measure every utterance; return the seconds of source audio handled."""
    total = 0.0
    for recording in recordings:
        segments = [segment for segment, _ in recording.utterances]
        texts = [text for _, text in recording.utterances]
        for index, result in prepare_many(
            segments, lambda path, member, data=recording.data: io.BytesIO(data)
        ):
            if not isinstance(result, PreparedAudio):
                raise RuntimeError(f"{recording.name}: {result}")
            quality_measures.measure(result.samples, TARGET_SAMPLE_RATE_HZ, texts[index])
            pcm_sha256(result.samples)
        total += recording.duration_s
    return total


MODES = {"decode-only": decode_only, "full preparation": full_preparation}


def _worker(mode: str, recordings: list[Recording], barrier: object, results: object) -> None:
    MODES[mode](recordings[:1])  # warm-up: imports, tables, first-call costs
    barrier.wait()  # type: ignore[attr-defined]
    start = time.perf_counter()
    seconds = MODES[mode](recordings)
    results.put((time.perf_counter() - start, seconds, time.perf_counter()))  # type: ignore[attr-defined]


def run_parallel(mode: str, recordings: list[Recording], processes: int) -> tuple[float, float]:
    """(wall seconds from a common start to the last finish, audio seconds), one process a core."""
    context = mp.get_context("fork")
    barrier = context.Barrier(processes + 1)
    results = context.Queue()
    chunks = [recordings[k::processes] for k in range(processes)]
    workers = [
        context.Process(target=_worker, args=(mode, chunk, barrier, results)) for chunk in chunks
    ]
    for worker in workers:
        worker.start()
    barrier.wait()
    start = time.perf_counter()
    finished = [results.get() for _ in workers]
    for worker in workers:
        worker.join()
        if worker.exitcode != 0:
            raise RuntimeError(f"{mode} worker failed with exit code {worker.exitcode}")
    wall = max(end for _, _, end in finished) - start
    return wall, sum(seconds for _, seconds, _ in finished)


def run_single(mode: str, recordings: list[Recording]) -> tuple[float, float]:
    """(wall seconds, audio seconds) for one mode in this process, after a warm-up."""
    MODES[mode](recordings[:1])
    start = time.perf_counter()
    seconds = MODES[mode](recordings)
    return time.perf_counter() - start, seconds


# --- step-by-step profile -----------------------------------------------------------------

PROFILED_MEASURES = {
    "measure: wada_snr_db": lambda x, rate, text: snr.wada_snr_db(x),
    "measure: stnr_snr_db": lambda x, rate, text: snr.stnr_snr_db(x, rate),
    "measure: clipping": lambda x, rate, text: levels.clipping(x),
    "measure: silence": lambda x, rate, text: levels.silence(x, rate),
    "measure: rms/peak/dc": lambda x, rate, text: (
        levels.rms_dbfs(x), levels.peak_dbfs(x), levels.dc_offset(x)
    ),
    "measure: effective_bandwidth_hz": lambda x, rate, text: spectrum.effective_bandwidth_hz(
        x, rate
    ),
    "measure: chars_per_second": lambda x, rate, text: quality_measures.chars_per_second(
        text, len(x) / rate
    ),
}


def _scrub(x: np.ndarray) -> np.ndarray:
    if levels.non_finite_count(x):
        return np.where(np.isfinite(x), x, np.float32(0.0))
    return x


def _cut_copy(signal: np.ndarray, segment: Segment) -> np.ndarray:
    return cut(signal, segment.offset_s, segment.duration_s).copy()


def profile_steps(recordings: list[Recording]) -> dict[str, float]:
    """Seconds spent in each step of full preparation, one core."""
    spent: dict[str, float] = defaultdict(float)

    def timed(step: str, fn, *args):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        value = fn(*args)
        spent[step] += time.perf_counter() - start
        return value

    for recording in recordings:
        decoded = timed("decode", decode, io.BytesIO(recording.data), recording.name)
        mono = timed("to_mono", to_mono, decoded.samples)
        signal = timed("resample to 16 kHz", resample, mono, decoded.sample_rate_hz)
        for segment, text in recording.utterances:
            if segment.offset_s == 0.0 and segment.duration_s is None:
                x = signal
            else:
                x = timed("cut + copy", _cut_copy, signal, segment)
            # as `measure` does: count non-finite samples, then measure with them zeroed
            x = timed("measure: non-finite scrub", _scrub, x)
            for step, fn in PROFILED_MEASURES.items():
                timed(step, fn, x, TARGET_SAMPLE_RATE_HZ, text)
            timed("pcm_sha256", pcm_sha256, x)
    return dict(spent)


# --- report -------------------------------------------------------------------------------


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        if match:
            cpu = match.group(1).strip()
    import soundfile
    import soxr

    return (f"{cpu}, {os.cpu_count()} CPUs; {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}; numpy {np.__version__}, "
            f"libsndfile {soundfile.__libsndfile_version__}, soxr {soxr.__version__}")


def _section(results: dict[tuple[str, int], tuple[float, float]],
             walls: dict[tuple[str, int], list[float]], profile: dict[str, float],
             workload: dict[str, float], command: str, load_avg: str, rounds: int) -> str:
    lines = [
        SECTION_TITLE,
        "",
        f"Workload: the {workload['recordings']:.0f} recordings behind every `ok` utterance of "
        f"the fixture corpora ({workload['once_s']:.0f} s of audio, "
        f"{workload['utterances']:.0f} utterances: WAV, FLAC, MP3 in tars, Ogg Vorbis, Opus, "
        f"Arrow/Parquet cells, WenetSpeech Opus recordings), in memory, repeated "
        f"{workload['repeats']:.0f} times = {workload['total_s']:.0f} s of audio. "
        "Decode-only: `pipelines.audio.decode.decode` to float32. Full preparation: "
        "`pipelines.audio.prepare.prepare_many` (decode, mono, resample to 16 kHz once per "
        "recording, cut each utterance) + `quality.measures.measure` + `pcm_sha256` per "
        "utterance. × RT = seconds of source audio per second of wall time; all cores = one "
        "process per core, recordings split round-robin, common start to last finish. "
        f"Each figure is the fastest of {rounds} rounds, the modes interleaved.",
        "",
        f"- Machine: {_machine()}",
        f"- Load average before the run: {load_avg} (other work on the machine skews figures)",
        "",
        "| mode | cores | audio (s) | wall (s) | × real time | share of decode-only |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    shares = {}
    for (mode, cores), (wall, seconds) in results.items():
        decode_wall, decode_seconds = results[("decode-only", cores)]
        share = (seconds / wall) / (decode_seconds / decode_wall)
        shares[(mode, cores)] = share
        lines.append(f"| {mode} | {cores} | {seconds:,.0f} | {wall:.2f} | "
                     f"{seconds / wall:,.0f} | {share:.0%} |")
    worst = min(share for (mode, _), share in shares.items() if mode == "full preparation")
    met = "met" if worst >= TARGET_SHARE else "NOT met"
    total = sum(profile.values())
    paired = []
    for cores in sorted({cores for _, cores in results}):
        # decode-only wall / full wall of the same round: both ran under the same load
        ratios = sorted(d / f for d, f in zip(walls[("decode-only", cores)],
                                              walls[("full preparation", cores)], strict=True))
        paired.append(f"{cores} core{'s' if cores > 1 else ''}: median {np.median(ratios):.0%} "
                      f"(rounds {ratios[0]:.0%} to {ratios[-1]:.0%})")
    lines += [
        "",
        f"Target, full preparation ≥ {TARGET_SHARE:.0%} of decode-only throughput: {met} "
        f"(worst {worst:.0%}, fastest runs). The same share round by round, full preparation "
        f"against the decode-only run just before it: {'; '.join(paired)}.",
        "",
        f"Where full preparation's time goes (one core, each step timed alone, fastest of "
        f"up to 3 rounds, {total:.2f} s in all):",
        "",
        "| step | seconds | share | × real time alone |",
        "|---|---:|---:|---:|",
    ]
    for step, seconds in sorted(profile.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {step} | {seconds:.3f} | {seconds / total:.1%} | "
                     f"{workload['total_s'] / seconds:,.0f} |")
    lines += ["", "Reproduce:", "", "```", command, "```", ""]
    return "\n".join(lines)


def write_readme_section(section: str, readme: Path = README) -> None:
    """Replace (or add) this benchmark's section of `bench/README.md`, keeping the others."""
    text = readme.read_text(encoding="utf-8") if readme.exists() else "# Benchmarks\n\n"
    pattern = re.compile(rf"^{re.escape(SECTION_TITLE)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    readme.write_text(text.rstrip("\n") + "\n", encoding="utf-8")


def main() -> None:
    """Load the workload, measure both modes on one and all cores, profile, report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--min-audio-s", type=float, default=1800.0,
                        help="repeat the fixture audio to at least this many seconds (1800)")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1,
                        help="processes for the all-cores runs (default: every CPU)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds of every measurement; the fastest counts (default 5)")
    parser.add_argument("--no-readme", action="store_true", help="print only")
    args = parser.parse_args()

    load_avg = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    once = load_workload()
    workload = repeat_to(once, args.min_audio_s)
    info = {
        "recordings": len(once),
        "utterances": sum(len(r.utterances) for r in once),
        "once_s": sum(r.duration_s for r in once),
        "repeats": len(workload) / len(once),
        "total_s": sum(r.duration_s for r in workload),
    }
    print(f"workload: {info['recordings']} recordings, {info['once_s']:.0f} s, "
          f"x{info['repeats']:.0f} = {info['total_s']:.0f} s", flush=True)

    # Best of several rounds, the modes interleaved: on a shared machine other work only
    # ever slows a run down, so the fastest run is the least disturbed one.
    results: dict[tuple[str, int], tuple[float, float]] = {}
    walls: dict[tuple[str, int], list[float]] = defaultdict(list)
    for round_index in range(args.rounds):
        for cores in (1, args.processes):
            for mode in MODES:
                if cores == 1:
                    wall, seconds = run_single(mode, workload)
                else:
                    wall, seconds = run_parallel(mode, workload, cores)
                print(f"round {round_index + 1}: {mode:>16} on {cores} core(s): {seconds:,.0f} s "
                      f"of audio in {wall:.2f} s = {seconds / wall:,.0f} x RT", flush=True)
                walls[(mode, cores)].append(wall)
                if (mode, cores) not in results or wall < results[(mode, cores)][0]:
                    results[(mode, cores)] = (wall, seconds)
    profile: dict[str, float] = {}
    for _ in range(min(args.rounds, 3)):
        for step, seconds in profile_steps(workload).items():
            profile[step] = min(seconds, profile.get(step, float("inf")))

    command = ".venv/bin/python bench/bench_preparation.py"
    if args.min_audio_s != 1800.0:
        command += f" --min-audio-s {args.min_audio_s:g}"
    if args.rounds != 5:
        command += f" --rounds {args.rounds}"
    section = _section(results, walls, profile, info, command, load_avg, args.rounds)
    print()
    print(section)
    if not args.no_readme:
        write_readme_section(section)
        print(f"recorded in {README.relative_to(REPO)}")


if __name__ == "__main__":
    main()
