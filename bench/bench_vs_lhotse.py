"""Benchmark: voxlake against lhotse 1.33.0, from a corpus on disk to 16 kHz audio shards.

Workload: three corpora that this script generates once (and caches under
`--work-dir`, keyed by their parameters) in each corpus's real on-disk format
(`../shared/design/CORPORA.md`), `--hours` of utterance audio each (default 1.0):

- **LibriSpeech**: `LibriSpeech/train-clean-100/<spk>/<chap>/<spk>-<chap>-<NNNN>.flac`
  (FLAC 16 kHz mono 16 bit, 3-20 s), one `<spk>-<chap>.trans.txt` per chapter
  (upper case, no punctuation), `SPEAKERS.TXT`, `CHAPTERS.TXT`, `BOOKS.TXT`;
- **Emilia**: MP3 24 kHz mono (3-25 s), English and Mandarin, half the audio each, in
  the current hub layout `hub/Emilia/<L>/<L>-B00000N.tar` (`<id>.mp3` then `<id>.json`,
  100 samples a tar), which voxlake reads; lhotse's `prepare_emilia` reads only the older
  release layout (`raw/<L>/<L>_B0000N.jsonl` next to
  `raw/<L>/<L>_B0000N/<L>_B0000N_S0000M/mp3/<id>.mp3`), so the same MP3 bytes and the
  same JSON records are also written there (`legacy/`), and each tool reads the layout it
  supports;
- **WenetSpeech**: `WenetSpeech.json` (the real structure: `audios` with `aid`,
  `duration`, `md5`, `path`, `source`, `tags`, `url`, `segments` with `sid`,
  `begin_time`, `end_time`, `subsets`, `text`, `confidence`) and long Ogg Opus recordings
  (16 kHz, `--wenet-recording-minutes` long, default 10, at least 4 of them) under
  `audio/train/{youtube,podcast}/B00000/<aid>.opus`; the utterances are 1.5-12 s
  segments with 0.3-2 s gaps between them over a faint noise floor.

No speech can be synthesised here (no espeak-ng), so the utterances are made from the
bundled espeak-ng speech of the test corpora (`tests/data/corpora`, every `ok` English
and Mandarin utterance of the LibriSpeech, Emilia and WenetSpeech fixtures, 16 kHz,
trimmed): each generated utterance strings 1-8 of those clips together with pauses, is
sped up or slowed down with its pitch (a per-speaker factor of 0.88-1.12, resampled with
soxr, which also brings it to the corpus's rate), gets a random level and white + pink
noise at 15-35 dB SNR, so no two utterances are alike and the audio is not trivially
compressible. Every utterance passes the default quality policy (so accepted audio =
all audio); the transcripts are the clips' transcripts.

Contenders, per corpus and per process count (`--processes`, default 1 and 2), each in
its own fresh process tree, interleaved over `--rounds` rounds (default 3; within a round
each contender runs once and the order rotates from round to round):

- **decode-only**: `pipelines.audio.decode.decode` of every recording (FLAC file, MP3 tar
  member, whole Opus recording) to float32, nothing else; at N processes the recordings
  are split round-robin over N forked workers;
- **lhotse**: the recipe (`lhotse.recipes.prepare_librispeech(corpus_dir, num_jobs=N)`,
  `lhotse.recipes.emilia.prepare_emilia(corpus_dir, lang, num_jobs=N)` per language then
  `lhotse.combine`, `lhotse.recipes.prepare_wenet_speech(corpus_dir, dataset_parts=["L"],
  num_jobs=N)`), `CutSet.from_manifests(recordings=..., supervisions=...)` (WenetSpeech:
  then `.trim_to_supervisions(keep_overlapping=False)`: one cut per segment of the long
  recordings), `.resample(16000)`, `.to_shar(out_dir, fields={"recording": "flac"},
  shard_size=--unit-utterances, num_jobs=N)`. `to_shar` with `num_jobs > 1` is lhotse's own
  parallelism: it splits the CutSet into shards of `shard_size` cuts and exports them in a
  `ProcessPoolExecutor` of N workers (the recipes' `num_jobs` are threads, or processes for
  WenetSpeech). `shard_size` is set to the voxlake unit size so both cut the work alike
  (lhotse's default of 1000 cuts would leave a 1 h corpus one or two shards and nothing to
  parallelise);
- **voxlake**: a fresh project (`pipelines.project.init_project`: one source, `units.
  max_utterances` = `--unit-utterances`, default 100; the project's `dagster.yaml` with
  `concurrency.runs.max_concurrent_runs` = N), then `.venv/bin/voxlake run --project <dir>
  --select "key:inventory/* or key:manifest or key:quality"` (`key:inventory` alone names
  no asset: the inventories are `inventory/<source>`; the run's own Dagster daemon
  and code server included), from nothing to the quality decisions and, once the quality
  step writes them (decode once), the accepted audio as WebDataset audio shards under
  `lake/shards/<source>/<unit>/`. After each run every utterance must be accounted for:
  the rows of `lake/quality/<source>/*.parquet` equal the utterances generated. Then,
  outside the comparison: `voxlake run` again on the now complete project ("nothing to
  do", its start-up), and `voxlake run --select key:tokens` (tokenization from the audio
  shards, demo tokenizer), reported separately.

lhotse and decode-only run with `OMP_NUM_THREADS=1` (and torch limited to one thread), so
that "1 process" means one core; voxlake gets the plain environment and must set its
threads itself. Measured for every contender, by a small wrapper process that starts it,
becomes the child subreaper of its whole tree (`prctl(PR_SET_CHILD_SUBREAPER)`) and reaps
every descendant: wall (process start to the last descendant's end), CPU seconds (user +
sys of the whole tree, `getrusage(RUSAGE_CHILDREN)`), peak RSS of the largest single
process of the tree (`ru_maxrss` of the children) and, sampled every 0.1 s from
`/proc/<pid>/status` (`VmHWM`), the peak of each process by role (voxlake: the run
workers, which prepare the audio, the code server, the daemon, the `voxlake run` process;
lhotse: its process and its pool workers). For voxlake, from the project's Dagster
instance: the time from the process start to the first RUN_START, and the runs.
Throughput is "hours of audio per wall-clock hour" = seconds of utterance audio (what ends
up in the shards; for WenetSpeech not the recordings' gaps) per second of wall; for
tokenization, × real time per process (÷ N) and per core (audio seconds per CPU second).

Targets (issue 12): voxlake ≥ 2× lhotse on every corpus at 1 and 2 processes; voxlake
≥ 40 % of decode-only end to end; peak RSS of a preparing process < 700 MB; `voxlake run`
start-up (to the first run's start, and on a complete project) < 5 s.

It prints the tables and writes the "voxlake against lhotse" section of
`bench/README.md`. lhotse is in the `bench` extra; install it into the project's
environment with plain pip (it leaves torch and torchaudio as they are):

    .venv/bin/pip install "lhotse==1.33.0" urllib3     # or: .venv/bin/pip install -e ".[bench]"
    .venv/bin/python bench/bench_vs_lhotse.py            # 1 h a corpus, 3 rounds: hours
    .venv/bin/python bench/bench_vs_lhotse.py --hours 0.02 --rounds 1 --no-readme   # a look
    .venv/bin/python bench/bench_vs_lhotse.py --report <work-dir>/logs/<stamp>/results.json

The corpora are generated once per parameter set (1 h of each takes a few minutes on one
core) and kept under `--work-dir`; every run's logs, the wrapper's figures and the
`results.json` the section is rendered from go to `<work-dir>/logs/<stamp>/`.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import hashlib
import io
import json
import math
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

README = REPO / "bench" / "README.md"
SECTION_TITLE = "## voxlake against lhotse"
VOXLAKE = REPO / ".venv" / "bin" / "voxlake"
FIXTURES = REPO / "tests" / "data" / "corpora"
DEFAULT_WORK_DIR = Path("/tmp/voxlake-bench-vs-lhotse")

CORPORA = ("librispeech", "emilia", "wenetspeech")
KINDS = ("decode-only", "lhotse", "voxlake")
# `key:inventory` alone names no asset: the inventories are `inventory/<source>`.
PREPARE_SELECT = "key:inventory/* or key:manifest or key:quality"
TOKENS_SELECT = "key:tokens"
LHOTSE_VERSION = "1.33.0"

TARGET_VS_LHOTSE = 2.0
TARGET_VS_DECODE = 0.40
TARGET_RSS_MB = 700.0
TARGET_STARTUP_S = 5.0

GENERATOR_VERSION = 1  # bump when the generated corpora change
RATE_HZ = 16000
EMILIA_RATE_HZ = 24000
LIBRISPEECH_SPLIT = "train-clean-100"
CHAPTER_UTTERANCES = 30
CHAPTERS_PER_SPEAKER = 2
EMILIA_TAR_SAMPLES = 100
EMILIA_LANGUAGES = ("EN", "ZH")
WENET_MIN_RECORDINGS = 4
NOISE_FLOOR = 0.002  # about -54 dBFS of room tone under the WenetSpeech recordings
PR_SET_CHILD_SUBREAPER = 36


# ============================================================================ measuring wrapper


def _read_status(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) of `pid` in kB, or None when it is gone (or a zombie)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    rss = hwm = -1
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
    return None if rss < 0 or hwm < 0 else (rss, hwm)


def _read_cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()


def measure_main(result: Path, log: Path, timeout_s: float, command: list[str]) -> None:
    """Run `command` as the root of a process tree this process reaps whole; write the figures.

    This process becomes the child subreaper of everything below it, so descendants
    orphaned on the way (daemons, pool workers) are reparented here and reaped: their
    CPU time and peak RSS reach `getrusage(RUSAGE_CHILDREN)`, which then covers the whole
    tree, and `ru_maxrss` is the peak of its largest single process.
    """
    import psutil

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")
    me = psutil.Process()
    processes: dict[int, dict[str, Any]] = {}
    tree_peak_kb = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal tree_peak_kb
        while True:
            total = 0
            try:
                kids = me.children(recursive=True)
            except psutil.Error:
                kids = []
            for kid in kids:
                status = _read_status(kid.pid)
                if status is None:
                    continue
                rss, hwm = status
                total += rss
                entry = processes.setdefault(kid.pid, {"cmd": "", "hwm_kb": 0, "ppid": None})
                entry["hwm_kb"] = max(entry["hwm_kb"], hwm)
                cmd = _read_cmdline(kid.pid)
                if cmd:
                    entry["cmd"] = cmd[:400]
                if entry["ppid"] is None:
                    with contextlib.suppress(psutil.Error):
                        entry["ppid"] = kid.ppid()
            tree_peak_kb = max(tree_peak_kb, total)
            if stop.wait(0.1):
                return

    timed_out = False
    lingering: list[str] = []
    started_epoch = time.time()
    started = time.perf_counter()
    with open(log, "wb") as out:
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        # wait4, not Popen.wait: its rusage is the main process's own (and its reaped
        # children's), exact where sampling may miss a peak in the last 0.1 s.
        deadline = time.monotonic() + timeout_s
        while True:
            pid, status, main_usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline and not timed_out:
                timed_out = True
                for kid in me.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        kid.kill()
            time.sleep(0.02)
        returncode = child.returncode = os.waitstatus_to_exitcode(status)
        main_ended = time.perf_counter()
        # Reap what the tree left behind; whatever still runs a minute later is killed.
        deadline = time.monotonic() + 60.0
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                continue
            if time.monotonic() > deadline:
                for kid in me.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        lingering.append(" ".join(kid.cmdline())[:200])
                        kid.kill()
                deadline = time.monotonic() + 3600.0
            time.sleep(0.02)
    ended = time.perf_counter()
    stop.set()
    sampler.join()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    figures = {
        "returncode": returncode,
        "timed_out": timed_out,
        "started_epoch": started_epoch,
        "wall_s": ended - started,
        "main_wall_s": main_ended - started,
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "maxrss_mb": usage.ru_maxrss / 1024,
        "main_maxrss_mb": main_usage.ru_maxrss / 1024,
        "tree_peak_mb": tree_peak_kb / 1024,
        "main_pid": child.pid,
        "processes": [
            {"pid": pid, "main": pid == child.pid, **entry} for pid, entry in processes.items()
        ],
        "lingering": lingering,
    }
    result.write_text(json.dumps(figures, indent=1))


def measured(
    command: list[str], label: str, logs: Path, env: dict[str, str], timeout_s: float
) -> dict[str, Any]:
    """`command` run under the measuring wrapper (a fresh process); its figures."""
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{label}.log"
    result = logs / f"{label}.measure.json"
    result.unlink(missing_ok=True)
    wrapper = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--measure",
        str(result),
        str(log),
        str(timeout_s),
        "--",
        *command,
    ]
    done = subprocess.run(wrapper, env=env, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0 or not result.exists():
        raise SystemExit(f"the measuring wrapper failed for {label}:\n{done.stderr[-4000:]}")
    figures = json.loads(result.read_text())
    figures["log"] = str(log)
    return figures


def log_tail(figures: dict[str, Any], chars: int = 3000) -> str:
    """The end of a measured command's output."""
    with contextlib.suppress(OSError):
        return Path(figures["log"]).read_text(errors="replace")[-chars:]
    return ""


def process_role(entry: dict[str, Any], by_pid: dict[int, dict[str, Any]] | None = None) -> str:
    """What a process of a measured tree is, from its command line (and its parent's).

    voxlake's code server (`assets.code_server`) forks its fork server from itself and
    each run worker from that, so all three carry the code server's command line: the
    one whose parent does not is the code server, its child the fork server, anything
    further down a run worker. Where the fork server had to be spawned, a worker's
    command line is the fork server's: a `forkserver` process whose parent is one too
    is a run worker. Dagster's own code server starts them with `spawn`
    (`spawn_main`); lhotse's and the decode-only pools fork, so their workers carry
    their parent's command line.
    """
    cmd = entry.get("cmd", "")
    if entry.get("main"):
        return "main"
    if "assets.code_server" in cmd and by_pid is not None:
        depth, parent = 0, by_pid.get(entry.get("ppid") or -1, {})
        while parent.get("cmd", "") == cmd and depth < 8:
            depth, parent = depth + 1, by_pid.get(parent.get("ppid") or -1, {})
        return ("code server", "fork server")[depth] if depth < 2 else "run worker"
    if "multiprocessing.forkserver" in cmd:
        parent = (by_pid or {}).get(entry.get("ppid") or -1, {})
        return (
            "run worker" if "multiprocessing.forkserver" in parent.get("cmd", "") else "fork server"
        )
    if "multiprocessing.spawn" in cmd or "execute_run" in cmd or "execute_step" in cmd:
        return "run worker"
    if "dagster._daemon" in cmd or "dagster-daemon" in cmd or "assets.daemon_process" in cmd:
        return "daemon"
    if "dagster api grpc" in cmd or "code-server" in cmd or "assets.code_server" in cmd:
        return "code server"
    if "watch_orphans" in cmd or cmd.startswith("tail "):
        return "log capture"
    if "resource_tracker" in cmd:
        return "helper"
    return "worker"


def role_peaks(figures: dict[str, Any]) -> dict[str, float]:
    """Peak RSS (MB, sampled VmHWM) of the largest process of each role."""
    peaks: dict[str, float] = {}
    by_pid = {entry["pid"]: entry for entry in figures["processes"]}
    for entry in figures["processes"]:
        role = process_role(entry, by_pid)
        peaks[role] = max(peaks.get(role, 0.0), entry["hwm_kb"] / 1024)
    return peaks


# ============================================================================ corpus generation


@dataclass(frozen=True)
class Clip:
    """One bundled espeak-ng utterance: 16 kHz mono float64, trimmed, peak 0.5."""

    samples: Any  # np.ndarray
    text: str


def load_clips() -> dict[str, list[Clip]]:
    """Every `ok` English and Mandarin utterance of the bundled LibriSpeech, Emilia and
    WenetSpeech fixtures, by language."""
    import numpy as np
    import soundfile as sf
    import soxr

    roots = {
        "librispeech": "librispeech/LibriSpeech",
        "emilia": "emilia",
        "wenetspeech": "wenetspeech",
    }
    clips: dict[str, list[Clip]] = {"en": [], "zh": []}
    for name, root in roots.items():
        for line in (FIXTURES / "expected" / f"{name}.jsonl").read_text("utf-8").splitlines():
            row = json.loads(line)
            if row["status"] != "ok" or not row["text"] or row["language"] not in clips:
                continue
            path = FIXTURES / root / row["audio_path"]
            if row["audio_member"]:
                with tarfile.open(path) as tar:
                    member = tar.extractfile(row["audio_member"])
                    assert member is not None
                    data = member.read()
            else:
                data = path.read_bytes()
            audio, rate = sf.read(io.BytesIO(data), dtype="float64", always_2d=True)
            audio = audio.mean(axis=1)
            if rate != RATE_HZ:
                audio = soxr.resample(audio, rate, RATE_HZ)
            if name == "wenetspeech":
                start = round(row["offset_s"] * RATE_HZ)
                audio = audio[start : start + round(row["duration_s"] * RATE_HZ)]
            active = np.flatnonzero(np.abs(audio) > 0.02 * np.max(np.abs(audio)))
            margin = int(0.03 * RATE_HZ)
            audio = audio[max(0, active[0] - margin) : active[-1] + 1 + margin]
            clips[row["language"]].append(Clip(audio * (0.5 / np.max(np.abs(audio))), row["text"]))
    for language, found in clips.items():
        if len(found) < 5:
            raise SystemExit(f"only {len(found)} bundled {language} utterances in {FIXTURES}")
    return clips


class Speech:
    """Utterances made of bundled clips, varied in speed/pitch, level and noise."""

    def __init__(self, clips: dict[str, list[Clip]], seed: int) -> None:
        import numpy as np

        self.clips = clips
        self.rng = np.random.default_rng(seed)

    def utterance(
        self, language: str, min_s: float, max_s: float, factor: float, rate_hz: int
    ) -> tuple[Any, list[str]]:
        """Float64 mono audio at `rate_hz` of about `min_s`..`max_s` seconds, and its texts.

        `factor` > 1 speeds the speech up and raises its pitch (the clips are read as if
        sampled at `16000 * factor` and resampled to `rate_hz`).
        """
        import numpy as np
        import soxr

        rng, pool = self.rng, self.clips[language]
        target_s = rng.uniform(min_s, max_s)
        pieces = [np.zeros(int(rng.uniform(0.05, 0.3) * RATE_HZ))]
        length_s = pieces[0].size / RATE_HZ / factor
        texts: list[str] = []
        while len(texts) < 8:
            clip = pool[int(rng.integers(len(pool)))]
            clip_s = clip.samples.size / RATE_HZ / factor
            if texts and length_s + clip_s > max_s - 0.3:
                break
            pieces.append(clip.samples * rng.uniform(0.6, 1.0))
            texts.append(clip.text)
            length_s += clip_s
            if length_s >= target_s:
                break
            pause = np.zeros(int(rng.uniform(0.12, 0.5) * RATE_HZ * factor))
            pieces.append(pause)
            length_s += pause.size / RATE_HZ / factor
        pieces.append(np.zeros(int(rng.uniform(0.05, 0.3) * RATE_HZ)))
        audio = soxr.resample(np.concatenate(pieces), RATE_HZ * factor, rate_hz)
        # White + pink noise at 15-35 dB below the utterance's mean power.
        white = rng.standard_normal(audio.size)
        spectrum = np.fft.rfft(rng.standard_normal(audio.size))
        spectrum[1:] /= np.sqrt(np.arange(1, spectrum.size))
        spectrum[0] = 0.0
        pink = np.fft.irfft(spectrum, audio.size)
        mix = rng.uniform(0.0, 1.0)
        noise = mix * white / white.std() + (1.0 - mix) * pink / max(pink.std(), 1e-12)
        noise *= np.sqrt(np.mean(audio**2) / 10 ** (rng.uniform(15.0, 35.0) / 10)) / noise.std()
        audio = audio + noise
        return audio * (rng.uniform(0.3, 0.9) / np.max(np.abs(audio))), texts


def librispeech_text(texts: list[str]) -> str:
    """Upper case, letters, apostrophes and single spaces: LibriSpeech's transcript style."""
    text = re.sub(r"[^A-Z' ]+", " ", " ".join(texts).upper())
    return re.sub(r"\s+", " ", text).strip()


def mandarin_text(texts: list[str]) -> str:
    """Mandarin sentences joined without spaces."""
    return re.sub(r"\s+", "", "".join(texts))


def write_librispeech(root: Path, hours: float, speech: Speech) -> dict[str, Any]:
    """`root/LibriSpeech/train-clean-100/...` with `hours` of FLAC 16 kHz utterances."""
    from pipelines.demo.corpus.layout import write_bytes, write_lines, write_text
    from pipelines.demo.corpus.speech import encode

    base = root / "LibriSpeech"
    rng = speech.rng
    target_s, total_s, utterances = hours * 3600.0, 0.0, 0
    speakers: list[tuple[str, str, float]] = []
    chapters: list[tuple[str, str, float, str]] = []
    speaker_index = 0
    while total_s < target_s:
        speaker = str(19 + 37 * speaker_index)
        sex = "F" if speaker_index % 2 else "M"
        factor = rng.uniform(0.88, 1.12)
        speaker_s = 0.0
        for chapter_index in range(CHAPTERS_PER_SPEAKER):
            if total_s >= target_s:
                break
            chapter = str(1000 + 53 * (CHAPTERS_PER_SPEAKER * speaker_index + chapter_index))
            folder = base / LIBRISPEECH_SPLIT / speaker / chapter
            lines, chapter_s = [], 0.0
            for index in range(CHAPTER_UTTERANCES):
                if total_s >= target_s:
                    break
                audio, texts = speech.utterance(
                    "en", 3.0, 20.0, factor * rng.uniform(0.98, 1.02), RATE_HZ
                )
                utterance = f"{speaker}-{chapter}-{index:04d}"
                write_bytes(folder / f"{utterance}.flac", encode(audio, RATE_HZ, "FLAC", "PCM_16"))
                lines.append(f"{utterance} {librispeech_text(texts)}")
                seconds = audio.size / RATE_HZ
                chapter_s += seconds
                total_s += seconds
                utterances += 1
            write_lines(folder / f"{speaker}-{chapter}.trans.txt", lines)
            chapters.append((chapter, speaker, chapter_s / 60, str(3000 + chapter_index)))
            speaker_s += chapter_s
        speakers.append((speaker, sex, speaker_s / 60))
        speaker_index += 1
    write_lines(
        base / "SPEAKERS.TXT",
        [
            "; Synthetic readers (voxlake bench); pipe separated",
            ";ID  |SEX| SUBSET           |MINUTES| NAME",
        ]
        + [
            f"{s:<5}| {sex} | {LIBRISPEECH_SPLIT:<17}| {m:<6.2f}| Reader {s}"
            for s, sex, m in speakers
        ],
    )
    write_lines(
        base / "CHAPTERS.TXT",
        [
            ";ID    |READER|MINUTES| SUBSET           | PROJ.|BOOK ID| CH. TITLE            "
            "| PROJECT TITLE"
        ]
        + [
            f"{c:<7}| {s:<5}| {m:<6.2f}| {LIBRISPEECH_SPLIT:<17}| 1    | {b:<6}| Chapter {c:<13}"
            f"| Project {b}"
            for c, s, m, b in chapters
        ],
    )
    write_lines(
        base / "BOOKS.TXT",
        [";ID    | TITLE                    | AUTHOR"]
        + [f"{b:<7}| Book {b:<20}| Author {b}" for b in sorted({c[3] for c in chapters})],
    )
    write_text(base / "README.TXT", "LibriSpeech look-alike (synthetic, voxlake bench)\n")
    return {
        "utterances": utterances,
        "audio_s": total_s,
        "recordings": utterances,
        "recordings_s": total_s,
        "format": "FLAC 16 kHz in LibriSpeech folders",
        "source_path": "LibriSpeech",
        "groups": len(chapters),
    }


def write_emilia(root: Path, hours: float, speech: Speech) -> dict[str, Any]:
    """`root/hub/Emilia/<L>/<L>-B00000N.tar` and the same samples under `root/legacy/raw/`."""
    from pipelines.demo.corpus.layout import write_bytes, write_lines, write_tar
    from pipelines.demo.corpus.speech import encode, probe

    rng = speech.rng
    total_s, utterances, tars = 0.0, 0, 0
    for language in EMILIA_LANGUAGES:
        target_s, language_s, batch = hours * 3600.0 / len(EMILIA_LANGUAGES), 0.0, 0
        clips = "en" if language == "EN" else "zh"
        while language_s < target_s:
            prefix = f"{language}_B{batch:05d}"
            members: list[tuple[str, bytes]] = []
            lines: list[str] = []
            speaker_index, in_speaker, factor = -1, 0, 1.0
            for _ in range(EMILIA_TAR_SAMPLES):
                if language_s >= target_s:
                    break
                if speaker_index < 0 or in_speaker >= rng.integers(5, 16):
                    speaker_index, in_speaker = speaker_index + 1, 0
                    factor = rng.uniform(0.88, 1.12)
                speaker = f"{prefix}_S{speaker_index:05d}"
                key = f"{speaker}_W{in_speaker:06d}"
                in_speaker += 1
                audio, texts = speech.utterance(clips, 3.0, 25.0, factor, EMILIA_RATE_HZ)
                mp3 = encode(audio, EMILIA_RATE_HZ, "MP3")
                duration_s = round(probe(mp3).duration_s, 3)
                text = " ".join(texts) if clips == "en" else mandarin_text(texts)
                record = {
                    "id": key,
                    "wav": f"{prefix}/{speaker}/mp3/{key}.mp3",
                    "text": f" {text}",
                    "duration": duration_s,
                    "speaker": speaker,
                    "language": language.lower(),
                    "dnsmos": round(rng.uniform(3.0, 3.9), 4),
                }
                document = json.dumps(record, ensure_ascii=False)
                members += [(f"{key}.mp3", mp3), (f"{key}.json", document.encode())]
                write_bytes(root / "legacy" / "raw" / language / record["wav"], mp3)
                lines.append(document)
                language_s += duration_s
                utterances += 1
            write_tar(root / "hub" / "Emilia" / language / f"{language}-B{batch:06d}.tar", members)
            write_lines(root / "legacy" / "raw" / language / f"{prefix}.jsonl", lines)
            batch += 1
            tars += 1
        total_s += language_s
    return {
        "utterances": utterances,
        "audio_s": total_s,
        "recordings": utterances,
        "recordings_s": total_s,
        "format": "MP3 24 kHz in Emilia tars (+ legacy layout)",
        "source_path": "hub",
        "groups": tars,
    }


def write_wenetspeech(
    root: Path, hours: float, speech: Speech, recording_minutes: float
) -> dict[str, Any]:
    """`root/WenetSpeech.json` and long Opus recordings under `root/audio/train/...`."""
    import numpy as np

    from pipelines.demo.corpus.layout import write_bytes, write_text
    from pipelines.demo.corpus.speech import encode, probe

    rng = speech.rng
    target_s = hours * 3600.0
    speech_share = 0.8  # segments / recording, roughly, with the gaps
    n_recordings = max(
        WENET_MIN_RECORDINGS, math.ceil(target_s / speech_share / (recording_minutes * 60))
    )
    per_recording_s = target_s / n_recordings
    audios: list[dict[str, Any]] = []
    total_s, recordings_s, utterances = 0.0, 0.0, 0
    alphabet = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))
    for index in range(n_recordings):
        source = ("youtube", "podcast")[index % 2]
        aid = f"{'YX'[index % 2]}{index:010d}_{''.join(rng.choice(alphabet, 11))}"
        path = f"audio/train/{source}/B{index // 100:05d}/{aid}.opus"
        factor = rng.uniform(0.9, 1.1)
        cursor_s = rng.uniform(0.5, 2.0)
        placed: list[tuple[int, Any]] = []
        segments: list[dict[str, Any]] = []
        recording_speech_s = 0.0
        while recording_speech_s < per_recording_s:
            audio, texts = speech.utterance(
                "zh", 1.5, 12.0, factor * rng.uniform(0.97, 1.03), RATE_HZ
            )
            begin = round(cursor_s, 2)
            end = round(begin + audio.size / RATE_HZ, 2)
            placed.append((round(begin * RATE_HZ), audio))
            subsets = ["L"]
            if rng.uniform() < 0.5:
                subsets.append("M")
                if rng.uniform() < 0.5:
                    subsets.append("S")
            segments.append(
                {
                    "sid": f"{aid}_S{len(segments):05d}",
                    "confidence": 1.0,
                    "begin_time": begin,
                    "end_time": end,
                    "subsets": subsets,
                    "text": mandarin_text(texts),
                }
            )
            recording_speech_s += round(end - begin, 2)
            cursor_s = end + rng.uniform(0.3, 2.0)
        signal = np.zeros(int((cursor_s + rng.uniform(0.5, 3.0)) * RATE_HZ))
        for start, audio in placed:
            signal[start : start + audio.size] += audio
        signal += rng.normal(0.0, NOISE_FLOOR, signal.size)
        data = encode(signal, RATE_HZ, "OGG", "OPUS")
        duration_s = probe(data).duration_s
        write_bytes(root / path, data)
        audios.append(
            {
                "aid": aid,
                "duration": round(duration_s, 2),
                "md5": hashlib.md5(data).hexdigest(),
                "path": path,
                "source": source,
                "tags": ["bench"],
                "url": f"https://example.com/{aid}",
                "segments": segments,
            }
        )
        total_s += recording_speech_s
        recordings_s += duration_s
        utterances += len(segments)
    document = {
        "dataset": "WenetSpeech",
        "language": "Chinese Mandarin",
        "version": "bench-synthetic",
        "description": "voxlake bench look-alike",
        "audios": audios,
    }
    write_text(root / "WenetSpeech.json", json.dumps(document, ensure_ascii=False, indent=1) + "\n")
    write_text(root / "TERMS_OF_ACCESS", "Synthetic look-alike of WenetSpeech (voxlake bench).\n")
    return {
        "utterances": utterances,
        "audio_s": total_s,
        "recordings": n_recordings,
        "recordings_s": recordings_s,
        "format": "Opus 16 kHz recordings + WenetSpeech.json",
        "source_path": ".",
        "groups": n_recordings,
    }


def corpus_folder(work_dir: Path, corpus: str, args: argparse.Namespace) -> Path:
    """The cache folder of `corpus` for these parameters (and these bundled clips)."""
    fixtures = hashlib.sha256()
    for name in ("librispeech", "emilia", "wenetspeech"):
        fixtures.update((FIXTURES / "expected" / f"{name}.jsonl").read_bytes())
    key = {
        "version": GENERATOR_VERSION,
        "corpus": corpus,
        "hours": args.hours,
        "seed": args.seed,
        "fixtures": fixtures.hexdigest(),
    }
    if corpus == "wenetspeech":
        key["recording_minutes"] = args.wenet_recording_minutes
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    return work_dir / "corpora" / f"{corpus}-{args.hours:g}h-{digest}"


def ensure_corpus(work_dir: Path, corpus: str, args: argparse.Namespace) -> tuple[Path, dict]:
    """Generate `corpus` unless its cache folder is complete; its folder and description."""
    folder = corpus_folder(work_dir, corpus, args)
    info_path = folder / "corpus.json"
    if info_path.exists():
        return folder, json.loads(info_path.read_text())
    print(f"generating {corpus} ({args.hours:g} h) in {folder} ...", flush=True)
    started = time.perf_counter()
    staging = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    speech = Speech(load_clips(), args.seed + CORPORA.index(corpus))
    if corpus == "librispeech":
        info = write_librispeech(staging, args.hours, speech)
    elif corpus == "emilia":
        info = write_emilia(staging, args.hours, speech)
    else:
        info = write_wenetspeech(staging, args.hours, speech, args.wenet_recording_minutes)
    info.update(
        corpus=corpus,
        hours=args.hours,
        seed=args.seed,
        bytes=sum(p.stat().st_size for p in staging.rglob("*") if p.is_file()),
        generated_s=time.perf_counter() - started,
    )
    (staging / "corpus.json").write_text(json.dumps(info, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    print(
        f"  {info['utterances']} utterances, {info['audio_s'] / 3600:.2f} h, "
        f"{info['bytes'] / 1e6:.0f} MB in {info['generated_s']:.0f} s",
        flush=True,
    )
    return folder, info


# ============================================================================ contenders (children)


def decode_items(corpus: str, folder: Path) -> list[tuple[str, str | None]]:
    """Every recording of the corpus as (file, tar member or None), in a fixed order."""
    if corpus == "librispeech":
        return [(str(p), None) for p in sorted((folder / "LibriSpeech").rglob("*.flac"))]
    if corpus == "wenetspeech":
        return [(str(p), None) for p in sorted((folder / "audio").rglob("*.opus"))]
    items: list[tuple[str, str | None]] = []
    for tar_path in sorted((folder / "hub").rglob("*.tar")):
        with tarfile.open(tar_path) as tar:
            items += [(str(tar_path), m.name) for m in tar.getmembers() if m.name.endswith(".mp3")]
    return items


def _decode_share(items: list[tuple[str, str | None]]) -> float:
    """Decode `items` to float32 with voxlake's decoder; the seconds of audio decoded."""
    from pipelines.audio.decode import decode

    seconds = 0.0
    by_tar: dict[str, list[str]] = defaultdict(list)
    for path, member in items:
        if member is None:
            seconds += decode(Path(path), path).duration_s
        else:
            by_tar[path].append(member)
    for path, members in by_tar.items():
        wanted = set(members)
        with tarfile.open(path) as tar:
            for info in tar:
                if info.name in wanted:
                    handle = tar.extractfile(info)
                    assert handle is not None
                    data = io.BytesIO(handle.read())
                    seconds += decode(data, f"{path}/{info.name}").duration_s
    return seconds


def child_decode(corpus: str, folder: Path, processes: int, result: Path) -> None:
    """The decode-only reference: every recording decoded, split over `processes` workers."""
    import multiprocessing as mp

    started = time.perf_counter()
    items = decode_items(corpus, folder)
    shares = [items[k::processes] for k in range(processes)]
    if processes == 1:
        seconds = _decode_share(items)
    else:
        with mp.get_context("fork").Pool(processes) as pool:
            seconds = sum(pool.map(_decode_share, shares))
    result.write_text(
        json.dumps(
            {
                "recordings": len(items),
                "decoded_s": seconds,
                "inner_s": time.perf_counter() - started,
            }
        )
    )


def child_lhotse(
    corpus: str, folder: Path, out_dir: Path, processes: int, shard_size: int, result: Path
) -> None:
    """lhotse as its documentation has it: recipe → CutSet → resample → Shar with FLAC."""
    started = time.perf_counter()
    import torch

    torch.set_num_threads(1)
    from lhotse import CutSet, combine

    imported = time.perf_counter()
    if corpus == "librispeech":
        from lhotse.recipes import prepare_librispeech

        manifests = prepare_librispeech(folder / "LibriSpeech", num_jobs=processes)
        # `combine` takes a list of CutSets (a lone CutSet would be iterated cut by cut).
        cuts = combine(
            [
                CutSet.from_manifests(recordings=m["recordings"], supervisions=m["supervisions"])
                for m in manifests.values()
            ]
        )
    elif corpus == "emilia":
        from lhotse.recipes.emilia import prepare_emilia

        cuts = combine(
            [
                prepare_emilia(folder / "legacy", lang=language.lower(), num_jobs=processes)
                for language in EMILIA_LANGUAGES
                if (folder / "legacy" / "raw" / language).is_dir()
            ]
        )
    else:
        from lhotse.recipes import prepare_wenet_speech

        part = prepare_wenet_speech(folder, dataset_parts=["L"], num_jobs=processes)["L"]
        cuts = CutSet.from_manifests(
            recordings=part["recordings"], supervisions=part["supervisions"]
        ).trim_to_supervisions(keep_overlapping=False)
    prepared = time.perf_counter()
    cuts = cuts.resample(RATE_HZ)
    out_dir.mkdir(parents=True, exist_ok=True)  # to_shar makes it only when num_jobs > 1
    paths = cuts.to_shar(
        out_dir, fields={"recording": "flac"}, shard_size=shard_size, num_jobs=processes
    )
    result.write_text(
        json.dumps(
            {
                "import_s": imported - started,
                "recipe_s": prepared - imported,
                "shar_s": time.perf_counter() - prepared,
                "inner_s": time.perf_counter() - started,
                "paths": {k: len(v) for k, v in paths.items()},
            }
        )
    )


def lhotse_output(out_dir: Path) -> dict[str, int]:
    """Cuts in the Shar manifests and FLAC members in the recording tars."""
    import gzip

    cuts = 0
    for path in sorted(out_dir.glob("cuts.*.jsonl.gz")):
        with gzip.open(path, "rt") as handle:
            cuts += sum(1 for line in handle if line.strip())
    members = 0
    for path in sorted(out_dir.glob("recording.*.tar")):
        with tarfile.open(path) as tar:
            members += sum(1 for m in tar.getmembers() if m.name.endswith(".flac"))
    return {"cuts": cuts, "flac": members}


# ============================================================================ voxlake


def make_project(
    directory: Path, corpus: str, folder: Path, info: dict, processes: int, unit_utterances: int
) -> None:
    """A fresh voxlake project on the corpus, with `processes` concurrent runs."""
    from pipelines.project import init_project
    from schemas import ProjectConfig, SourceConfig

    source_path = (folder / info["source_path"]).resolve()
    config = ProjectConfig(
        sources=[
            SourceConfig(
                name=corpus,
                kind=corpus,  # type: ignore[arg-type]
                path=os.path.relpath(source_path, directory),
            )
        ],
        units={"max_utterances": unit_utterances},  # type: ignore[arg-type]
    )
    project = init_project(directory, config)
    dagster_yaml = project.dagster_home / "dagster.yaml"
    text, count = re.subn(
        r"(?m)^(\s*max_concurrent_runs:\s*)\d+", rf"\g<1>{processes}", dagster_yaml.read_text()
    )
    if count != 1:
        raise SystemExit(f"{dagster_yaml}: no concurrency.runs.max_concurrent_runs to set")
    dagster_yaml.write_text(text)


def instance_timeline(project_dir: Path) -> dict[str, Any]:
    """From the project's Dagster instance: the runs (job, RUN_START, end) and step times.

    `steps_s` sums STEP_START → STEP_SUCCESS/FAILURE by step key over every run.
    """
    import dagster as dg
    from dagster._core.events import DagsterEventType as T

    ends = (T.RUN_SUCCESS, T.RUN_FAILURE, T.RUN_CANCELED)
    instance = dg.DagsterInstance.from_config(str(project_dir / ".dagster"))
    runs: list[dict[str, Any]] = []
    steps_s: dict[str, float] = defaultdict(float)
    try:
        for record in instance.get_run_records():
            times: dict[str, float] = {}
            open_steps: dict[str, float] = {}
            for entry in instance.all_logs(record.dagster_run.run_id):
                event = entry.dagster_event
                if event is None:
                    continue
                if event.event_type == T.RUN_START:
                    times.setdefault("start", entry.timestamp)
                elif event.event_type in ends:
                    times.setdefault("end", entry.timestamp)
                elif event.event_type == T.STEP_START:
                    open_steps[event.step_key or ""] = entry.timestamp
                elif event.event_type in (T.STEP_SUCCESS, T.STEP_FAILURE):
                    key = event.step_key or ""
                    if key in open_steps:
                        steps_s[key] += entry.timestamp - open_steps.pop(key)
            runs.append(
                {
                    "job": record.dagster_run.job_name,
                    "status": record.dagster_run.status.value,
                    "created": record.create_timestamp.timestamp(),
                    **times,
                }
            )
    finally:
        instance.dispose()
    starts = [r["start"] for r in runs if "start" in r]

    def span(job_part: str) -> tuple[float, float] | None:
        mine = [r for r in runs if job_part in r["job"] and "start" in r and "end" in r]
        if not mine:
            return None
        return min(r["start"] for r in mine), max(r["end"] for r in mine)

    return {
        "runs": len(runs),
        "jobs": sorted({r["job"] for r in runs}),
        "failed": [r["job"] for r in runs if r["status"] != "SUCCESS"],
        "first_created": min((r["created"] for r in runs), default=None),
        "first_start": min(starts, default=None),
        "last_end": max((r["end"] for r in runs if "end" in r), default=None),
        "inventory_span": span("inventory"),
        "unit_span": span("unit"),
        "unit_runs": sum(1 for r in runs if "unit" in r["job"]),
        "steps_s": dict(steps_s),
    }


def lake_counts(project_dir: Path, source: str) -> dict[str, Any]:
    """Quality rows, accepted rows and their audio, and audio shards of `source`."""
    import pyarrow.parquet as pq

    from pipelines.project import load_project

    lake = load_project(project_dir).lake
    rows = accepted = 0
    accepted_s = 0.0
    for path in sorted((lake.quality_dir() / source).glob("*.parquet")):
        table = pq.read_table(path, columns=["status", "duration_s"]).to_pydict()
        rows += len(table["status"])
        for status, duration in zip(table["status"], table["duration_s"], strict=True):
            if status == "accepted":
                accepted += 1
                accepted_s += duration or 0.0
    shard_dir = lake.shards_root() / source
    tars = sorted(shard_dir.rglob("*.tar")) if shard_dir.exists() else []
    members = 0
    for path in tars:
        with tarfile.open(path) as tar:
            members += len({Path(m.name).name.split(".", 1)[0] for m in tar.getmembers()})
    code_files = [
        p
        for sub in ("codes", "tokens")
        if (lake.root / sub).exists()
        for p in (lake.root / sub).rglob("*")
        if p.is_file()
    ]
    return {
        "quality_rows": rows,
        "accepted": accepted,
        "accepted_s": accepted_s,
        "audio_shards": len(tars),
        "audio_shard_samples": members,
        "code_files": len(code_files),
    }


# ============================================================================ the bench


def base_env() -> dict[str, str]:
    """The environment of every measured process: no Dagster home but the project's own."""
    env = dict(os.environ)
    for name in ("DAGSTER_HOME", "VOXLAKE_DAGSTER_HOME", "VOXLAKE_PROJECT"):
        env.pop(name, None)
    return env


def one_thread_env() -> dict[str, str]:
    """`base_env` with every BLAS/OpenMP pool at one thread: one process = one core."""
    env = base_env()
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"
    return env


# What a contender's record keeps of its measuring wrapper's figures.
MEASURE_KEYS = (
    "returncode", "timed_out", "wall_s", "cpu_s", "user_s", "sys_s", "maxrss_mb",
    "main_maxrss_mb", "tree_peak_mb", "lingering", "started_epoch",
)  # fmt: skip


def run_contender(
    kind: str,
    processes: int,
    corpus: str,
    folder: Path,
    info: dict,
    round_dir: Path,
    logs: Path,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One contender once, in its own process tree; its measurements."""
    label = f"{corpus}-{kind}-p{processes}"
    out = round_dir / label
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    me = [sys.executable, str(Path(__file__).resolve())]
    record: dict[str, Any] = {
        "corpus": corpus,
        "kind": kind,
        "processes": processes,
        "audio_s": info["audio_s"],
        "utterances": info["utterances"],
    }
    problems: list[str] = []
    name = f"{round_dir.name}-{label}"
    result = out / "result.json"
    child = [*me, "--corpus", corpus, "--folder", str(folder), "--result", str(result)]
    child += ["--child-processes", str(processes)]
    if kind == "decode-only":
        command = [*child, "--child", "decode"]
        figures = measured(command, name, logs, one_thread_env(), args.timeout_s)
        if figures["returncode"] == 0:
            record["inner"] = json.loads(result.read_text())
            if record["inner"]["recordings"] != info["recordings"]:
                problems.append(
                    f"decoded {record['inner']['recordings']} recordings, "
                    f"generated {info['recordings']}"
                )
    elif kind == "lhotse":
        shar = out / "shar"
        command = [*child, "--child", "lhotse", "--out", str(shar)]
        command += ["--unit-utterances", str(args.unit_utterances)]
        figures = measured(command, name, logs, one_thread_env(), args.timeout_s)
        if figures["returncode"] == 0:
            record["inner"] = json.loads(result.read_text())
            record["output"] = lhotse_output(shar)
            if record["output"]["cuts"] != info["utterances"]:
                problems.append(
                    f"lhotse wrote {record['output']['cuts']} cuts of "
                    f"{info['utterances']} utterances"
                )
    else:
        project = out / "project"
        make_project(project, corpus, folder, info, processes, args.unit_utterances)
        run = [str(VOXLAKE), "run", "--project", str(project)]
        prepare = [*run, "--select", PREPARE_SELECT]
        figures = measured(prepare, name, logs, base_env(), args.timeout_s)
        if figures["returncode"] == 0:
            record["timeline"] = instance_timeline(project)
            record["lake"] = counts = lake_counts(project, corpus)
            if counts["quality_rows"] != info["utterances"]:
                problems.append(
                    f"quality has {counts['quality_rows']} rows for {info['utterances']} utterances"
                )
            if record["timeline"]["failed"]:
                problems.append(f"runs not successful: {record['timeline']['failed']}")
            again = measured(prepare, f"{name}-again", logs, base_env(), args.timeout_s)
            record["again"] = {
                "wall_s": again["wall_s"],
                "cpu_s": again["cpu_s"],
                "nothing_to_do": "nothing to do" in log_tail(again),
            }
            if again["returncode"] != 0 or not record["again"]["nothing_to_do"]:
                problems.append(
                    "`voxlake run` on the complete project did not say "
                    f"'nothing to do':\n{log_tail(again, 1500)}"
                )
            # Timed at the most processes only: that one figure gives per process and per core.
            if not args.no_tokens and args.tokenize_now and processes == max(args.processes):
                tokens_run = [*run, "--select", TOKENS_SELECT]
                tokens = measured(tokens_run, f"{name}-tokens", logs, base_env(), args.timeout_s)
                record["tokens"] = {
                    k: tokens[k] for k in ("returncode", "wall_s", "cpu_s", "maxrss_mb")
                }
                record["tokens"]["roles"] = role_peaks(tokens)
                record["tokens"]["lake"] = lake_counts(project, corpus)
                if tokens["returncode"] != 0:
                    problems.append(f"the tokens run failed:\n{log_tail(tokens, 1500)}")
    record.update({k: figures[k] for k in MEASURE_KEYS})
    record["roles"] = role_peaks(figures)
    record["n_processes"] = len(figures["processes"])
    if figures["returncode"] != 0:
        problems.append(
            f"exit status {figures['returncode']}"
            f"{' (timed out)' if figures['timed_out'] else ''}:\n{log_tail(figures)}"
        )
    if figures["lingering"]:
        problems.append(f"processes still running a minute after the end: {figures['lingering']}")
    record["problems"] = problems
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    return record


def contender_order(processes: list[int], kinds: list[str], round_index: int) -> list[tuple]:
    """Every (kind, processes) once, the order rotated by the round."""
    order = [(kind, p) for p in processes for kind in kinds]
    shift = round_index % len(order)
    return order[shift:] + order[:shift]


# ============================================================================ report


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _f(value: float | None, digits: int = 1) -> str:
    if value is None or value != value:
        return "–"
    return f"{value:,.{digits}f}"


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or a != a or b != b or b == 0:
        return None
    return a / b


@dataclass
class Summary:
    """The rounds of one contender on one corpus at one process count."""

    records: list[dict[str, Any]]

    @property
    def ok(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["returncode"] == 0]

    @property
    def wall_s(self) -> float:
        return _median([r["wall_s"] for r in self.ok])

    @property
    def walls(self) -> list[float]:
        return sorted(r["wall_s"] for r in self.ok)

    @property
    def throughput(self) -> float:
        """Hours of audio per wall-clock hour (median wall)."""
        return self.records[0]["audio_s"] / self.wall_s if self.ok else float("nan")

    @property
    def cpu_s(self) -> float:
        return _median([r["cpu_s"] for r in self.ok])

    @property
    def maxrss_mb(self) -> float:
        return max((r["maxrss_mb"] for r in self.ok), default=float("nan"))

    @property
    def preparing_rss_mb(self) -> float:
        """Peak RSS of the process(es) that prepare the audio (largest over the rounds)."""
        peaks = []
        for r in self.ok:
            roles = r["roles"]
            if self.records[0]["kind"] == "voxlake":
                peaks.append(roles.get("run worker", roles.get("main", float("nan"))))
            else:  # the process itself (exact, with its pool) or a pool worker (sampled)
                peaks.append(
                    max(
                        roles.get("main", 0.0),
                        roles.get("worker", 0.0),
                        r.get("main_maxrss_mb", 0.0),
                    )
                )
        return max(peaks, default=float("nan"))


PHASES = (
    "submit",
    "startup",
    "inventory",
    "to_units",
    "units",
    "after",
    "manifest_steps",
    "quality_steps",
)


def voxlake_phases(record: dict[str, Any]) -> dict[str, float | None]:
    """A voxlake run's wall cut into phases (seconds), from its instance timeline."""
    timeline = record["timeline"]
    started, ended = record["started_epoch"], record["started_epoch"] + record["wall_s"]
    inventory, units = timeline.get("inventory_span"), timeline.get("unit_span")
    steps = timeline.get("steps_s", {})

    def steps_of(name: str) -> float | None:
        found = [v for k, v in steps.items() if k == name or k.startswith(f"{name}")]
        return sum(found) if found else None

    return {
        "submit": timeline["first_created"] - started if timeline.get("first_created") else None,
        "startup": timeline["first_start"] - started if timeline.get("first_start") else None,
        "inventory": inventory[1] - inventory[0] if inventory else None,
        "to_units": units[0] - inventory[1] if units and inventory else None,
        "units": units[1] - units[0] if units else None,
        "after": ended - timeline["last_end"] if timeline.get("last_end") else None,
        "manifest_steps": steps_of("manifest"),
        "quality_steps": steps_of("quality"),
    }


def voxlake_revision() -> str:
    """The commit of the measured checkout, and whether tracked files differ from it."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "log", "-1", "--format=%h of %cs"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"{REPO} (not a git checkout)"
    return f"commit {commit}" + (" + uncommitted changes" if dirty else " (clean checkout)")


def machine() -> str:
    """CPU, cores, memory, OS, Python and the versions that matter here."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        if match:
            cpu = match.group(1).strip()
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = []
    for package in ("lhotse", "torch", "torchaudio", "soundfile", "soxr", "dagster", "numpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{package} {metadata.version(package)}")
    return (
        f"{cpu}, {os.cpu_count()} CPUs, {memory_gib:.0f} GiB RAM; Linux {platform.release()}; "
        f"Python {platform.python_version()}; {', '.join(versions)}"
    )


def cpu_probe_s() -> float:
    """Seconds one core takes for a fixed pure-Python loop (10**7 additions), best of three.

    Recorded before and after the bench: on a shared host the same code runs at
    different speeds from hour to hour, and figures from two benches compare only
    where their probes agree.
    """
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(10**7):
            total += i
        best = min(best, time.perf_counter() - started)
    return best


def cpu_ticks() -> tuple[int, int]:
    """(all, stolen) CPU ticks since boot, from /proc/stat; (0, 0) where there is none."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return sum(fields[:8]), fields[7] if len(fields) > 7 else 0


def _host_lines(results: dict[str, Any]) -> list[str]:
    """The host's speed before and after, and the CPU time the hypervisor took meanwhile."""
    probe = results.get("cpu_probe_s")
    if not probe or len(probe) != 2 or probe[1] is None:
        return []
    line = (
        f"- Host speed: a 10^7-iteration Python loop took {probe[0]:.2f} s on one core before "
        f"the bench and {probe[1]:.2f} s after (best of 3; compare benches only where these agree)"
    )
    ticks = results.get("cpu_ticks")
    if ticks and ticks[0] > 0:
        line += f"; {100 * ticks[1] / ticks[0]:.1f} % of the CPU time meanwhile was stolen"
    return [line]


def build_section(results: dict[str, Any]) -> tuple[str, bool]:
    """The README section of a bench's saved results, and whether every target was met."""
    records: list[dict[str, Any]] = results["records"]
    corpora: dict[str, dict] = results["corpora"]
    args = argparse.Namespace(**results["settings"])
    command, load, bench_s = results["command"], results["load"], results["bench_s"]
    groups: dict[tuple[str, str, int], Summary] = {}
    for record in records:
        key = (record["corpus"], record["kind"], record["processes"])
        groups.setdefault(key, Summary([])).records.append(record)

    def get(corpus: str, kind: str, p: int) -> Summary | None:
        summary = groups.get((corpus, kind, p))
        return summary if summary is not None and summary.ok else None

    lines = [
        SECTION_TITLE,
        "",
        f"From a corpus on disk to 16 kHz FLAC audio shards: `bench/bench_vs_lhotse.py` "
        f"generates three corpora in their real layouts ({args.hours:g} h of utterance audio "
        "each, made of the bundled espeak-ng speech varied in speed, pitch, level and noise) "
        "and runs, each in its own fresh process tree, interleaved over "
        f"{args.rounds} round(s) with the order rotating: **decode-only** "
        "(`pipelines.audio.decode.decode` of every recording to float32), **lhotse** "
        f"{LHOTSE_VERSION} (recipe → `CutSet.from_manifests` (WenetSpeech: "
        "`.trim_to_supervisions()`) → `.resample(16000)` → `.to_shar(fields={'recording': "
        f"'flac'}}, shard_size={args.unit_utterances}, num_jobs=N)`, recipes with "
        "`num_jobs=N`) and **voxlake** (a fresh project, `max_concurrent_runs` N, "
        f"`units.max_utterances` {args.unit_utterances}, `voxlake run --select "
        f'"{PREPARE_SELECT}"`: inventory, manifest, quality measured and judged, audio '
        "shards). N = processes; lhotse and decode-only with one BLAS/OpenMP thread per "
        "process. Wall = process start to the last descendant's end; CPU = user + sys of the "
        "whole process tree; RSS = peak of the largest single process (`ru_maxrss`), and of "
        "the preparing process (voxlake: the run workers; lhotse: its process and pool "
        "workers). Throughput in hours of utterance audio per wall-clock hour (h/h), from the "
        "median wall of the rounds.",
        "",
        f"- Machine: {results['machine']}",
        f"- voxlake: {results.get('voxlake', 'unknown')}",
        f"- Load average (1, 5, 15 min) before the bench {load[0]}, after it {load[1]}; it ran "
        f"{bench_s / 60:.1f} min (corpus generation included unless cached)",
        *_host_lines(results),
        "",
        "| corpus | layout | utterances | audio (h) | recordings | on disk (MB) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for corpus, info in corpora.items():
        recordings = f"{info['recordings']:,}"
        if corpus == "wenetspeech":
            recordings += f" ({info['recordings_s'] / 60:.0f} min)"
        lines.append(
            f"| {corpus} | {info['format']} | {info['utterances']:,} | "
            f"{info['audio_s'] / 3600:.3f} | {recordings} | {info['bytes'] / 1e6:,.0f} |"
        )
    lines += [
        "",
        "| corpus | N | contender | wall (s), median [range] | h/h | CPU (s) | largest "
        "process RSS (MB) | preparing process RSS (MB) | voxlake / lhotse | voxlake / "
        "decode-only |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    met = True
    target_lines: list[str] = []
    startup: list[tuple[str, int, float, float, float]] = []
    per_hour: list[tuple[str, int, Summary, Summary, float]] = []
    tokens_rows: list[str] = []
    checks: list[str] = []
    for corpus in corpora:
        for p in args.processes:
            decode, lhotse, vox = (get(corpus, kind, p) for kind in KINDS)
            for kind, summary in zip(KINDS, (decode, lhotse, vox), strict=True):
                if kind not in args.contenders:
                    continue
                if summary is None:
                    lines.append(f"| {corpus} | {p} | {kind} | failed | | | | | | |")
                    met = False
                    continue
                walls = summary.walls
                span = f" [{walls[0]:.1f}–{walls[-1]:.1f}]" if len(walls) > 1 else ""
                vs_lhotse = vs_decode = ""
                if kind == "voxlake":
                    r1 = _ratio(summary.throughput, lhotse.throughput if lhotse else None)
                    r2 = _ratio(summary.throughput, decode.throughput if decode else None)
                    vs_lhotse, vs_decode = f"{_f(r1, 2)}×", f"{_f(r2 and 100 * r2, 0)} %"
                elif kind == "lhotse":
                    r2 = _ratio(summary.throughput, decode.throughput if decode else None)
                    vs_decode = f"lhotse: {_f(r2 and 100 * r2, 0)} %"
                lines.append(
                    f"| {corpus} | {p} | {kind} | {summary.wall_s:.1f}{span} | "
                    f"{summary.throughput:,.0f} | {summary.cpu_s:,.1f} | "
                    f"{summary.maxrss_mb:,.0f} | "
                    f"{summary.preparing_rss_mb:,.0f} | {vs_lhotse} | {vs_decode} |"
                )
            if vox is None:
                continue
            r1 = _ratio(vox.throughput, lhotse.throughput if lhotse else None)
            r2 = _ratio(vox.throughput, decode.throughput if decode else None)
            if r1 is not None:
                ok = r1 >= TARGET_VS_LHOTSE
                met &= ok
                target_lines.append(
                    f"- voxlake ≥ {TARGET_VS_LHOTSE:g}× lhotse, {corpus}, {p} "
                    f"process(es): {r1:.2f}× — {'met' if ok else 'NOT met'}"
                )
            if r2 is not None:
                ok = r2 >= TARGET_VS_DECODE
                met &= ok
                target_lines.append(
                    f"- voxlake ≥ {TARGET_VS_DECODE:.0%} of decode-only, {corpus}, "
                    f"{p} process(es): {r2:.0%} — {'met' if ok else 'NOT met'}"
                )
            ok = vox.preparing_rss_mb < TARGET_RSS_MB
            met &= ok
            target_lines.append(
                f"- preparing process peak RSS < {TARGET_RSS_MB:.0f} MB, {corpus}, "
                f"{p} process(es): {vox.preparing_rss_mb:.0f} MB (largest "
                f"process of the tree {vox.maxrss_mb:.0f} MB) — "
                f"{'met' if ok else 'NOT met'}"
            )
            phases = [voxlake_phases(r) for r in vox.ok if r.get("timeline")]
            median_phases = {
                name: _median([ph[name] for ph in phases if ph.get(name) is not None])
                for name in PHASES
            }
            again = _median([r["again"]["wall_s"] for r in vox.ok if "again" in r])
            startup.append((corpus, p, median_phases, again))
            if median_phases.get("units") == median_phases.get("units") and lhotse is not None:
                per_hour.append((corpus, p, vox, lhotse, median_phases["units"]))
            runs = _median([float(r["timeline"]["runs"]) for r in vox.ok if "timeline" in r])
            unit_runs = _median(
                [float(r["timeline"].get("unit_runs", 0)) for r in vox.ok if "timeline" in r]
            )
            lake = vox.ok[-1].get("lake", {})
            checks.append(
                f"- {corpus}, {p} process(es): {runs:.0f} Dagster runs ({unit_runs:.0f} of "
                "units); quality rows "
                f"{lake.get('quality_rows', '–'):,} = utterances {corpora[corpus]['utterances']:,}"
                f" ({'yes' if lake.get('quality_rows') == corpora[corpus]['utterances'] else 'NO'})"
                f", accepted {lake.get('accepted', 0):,}; audio shards "
                f"{lake.get('audio_shards', 0)} holding {lake.get('audio_shard_samples', 0):,} "
                "samples"
            )
            tok = [r for r in vox.ok if r.get("tokens", {}).get("returncode") == 0]
            if tok:
                audio_s = _median([r["tokens"]["lake"]["accepted_s"] or r["audio_s"] for r in tok])
                wall = _median([r["tokens"]["wall_s"] for r in tok])
                cpu = _median([r["tokens"]["cpu_s"] for r in tok])
                worker = max(r["tokens"]["roles"].get("run worker", 0.0) for r in tok)
                codes = tok[-1]["tokens"]["lake"]["code_files"]
                tokens_rows.append(
                    f"| {corpus} | {p} | {audio_s / 3600:.3f} | {wall:.1f} | "
                    f"{cpu:.1f} | {audio_s / wall:,.0f} | {audio_s / wall / p:,.0f} | "
                    f"{audio_s / cpu:,.0f} | {worker:,.0f} | {codes} |"
                )
    for corpus, p, phases, again in startup:
        for what, value in (
            ("to the first run's start", phases["startup"]),
            ("nothing to do", again),
        ):
            ok = value == value and value < TARGET_STARTUP_S
            met &= ok
            target_lines.append(
                f"- `voxlake run` start-up < {TARGET_STARTUP_S:g} s ({what}), "
                f"{corpus}, {p} process(es): {_f(value, 1)} s — "
                f"{'met' if ok else 'NOT met'}"
            )
    if not target_lines:
        verdict = "not measured (voxlake did not run)"
    else:
        verdict = "all met" if met else "NOT all met"
    lines += ["", f"Targets (issue 12): {verdict}.", "", *target_lines]
    if startup:
        lines += [
            "",
            "Where voxlake's wall goes, median of the rounds, from its Dagster instance: from "
            "the `voxlake run` process start to the first run's RUN_START (start-up: imports, "
            "code server, daemon, submission; in brackets the first run's creation, after which "
            "come the queue, the run worker's start and its code load), the inventory run, from "
            "its end to the first unit run's RUN_START, the unit runs (first RUN_START to last "
            "end; in brackets the manifest and quality steps summed over the runs), from the last "
            "run's end to the end of the process tree (stopping the services), and a second "
            '`voxlake run` with the same selection on the complete project ("nothing to do"):',
            "",
            "| corpus | N | start-up (s) [first run created] | inventory run (s) | "
            "to the unit runs (s) | unit runs (s) [manifest + quality steps] | "
            "after the last run (s) | nothing to do (s) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
            *(
                f"| {c} | {p} | {_f(ph['startup'])} [{_f(ph['submit'])}] | {_f(ph['inventory'])} | "
                f"{_f(ph['to_units'])} | {_f(ph['units'])} [{_f(ph['manifest_steps'])} + "
                f"{_f(ph['quality_steps'])}] | {_f(ph['after'])} | {_f(again)} |"
                for c, p, ph, again in startup
            ),
        ]
    if per_hour:
        lines += [
            "",
            "Fixed cost and cost per hour of audio (medians): voxlake's fixed cost is its wall "
            "outside the unit runs (start-up, the inventory run, the hand-over between "
            "stages, stopping), its cost per hour the unit runs' span per hour of audio; "
            "lhotse's wall is all counted per hour (its own start-up included, which favours "
            "voxlake in the per-hour ratio). The last column extrapolates, it is not "
            "measured: the corpus size at which voxlake's whole run would reach "
            f"{TARGET_VS_LHOTSE:g}× lhotse if both costs stayed linear "
            "(fixed ÷ (lhotse s/h ÷ 2 − voxlake s/h); never where voxlake's per-hour cost "
            "is above half of lhotse's):",
            "",
            "| corpus | N | voxlake fixed (s) | voxlake in unit runs (s/h) | lhotse (s/h) | "
            "per-hour ratio | hours for 2× end to end |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for corpus, p, vox, lhotse, units_s in per_hour:
            hours = vox.records[0]["audio_s"] / 3600
            vox_per_h = units_s / hours
            lhotse_per_h = lhotse.wall_s / hours
            fixed = vox.wall_s - units_s
            margin = lhotse_per_h / TARGET_VS_LHOTSE - vox_per_h
            needed = f"{fixed / margin:,.0f} h" if margin > 0 else "never"
            lines.append(
                f"| {corpus} | {p} | {fixed:.1f} | {vox_per_h:.1f} | {lhotse_per_h:.1f} | "
                f"{lhotse_per_h / vox_per_h:.2f}× | {needed} |"
            )
    if checks:
        lines += ["", "Every utterance accounted for (last round):", "", *checks]
        if not any("holding" in c and not c.rstrip().endswith("0 samples") for c in checks):
            lines += [
                "",
                "No audio shards were written: this voxlake's quality step writes the "
                "decisions only (`lake/quality/`), so the voxlake rows measure "
                "inventory → manifest → quality without the FLAC encoding and tar "
                "writing that lhotse's rows include.",
            ]
    if tokens_rows:
        lines += [
            "",
            f'Tokenization, reported apart: `voxlake run --select "{TOKENS_SELECT}"` right '
            "after the audio shards (demo tokenizer, CPU); × real time = accepted audio / "
            "wall, per process = ÷ N, per core = accepted audio / CPU seconds of the tree:",
            "",
            "| corpus | N | accepted audio (h) | wall (s) | CPU (s) | × RT | × RT per process | "
            "× RT per core | run worker RSS (MB) | code files |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            *tokens_rows,
        ]
    problems = [
        f"- {r['corpus']} {r['kind']} {r['processes']}: {p.splitlines()[0]}"
        for r in records
        for p in r["problems"]
    ]
    if problems:
        met = False
        lines += ["", "Problems seen:", "", *sorted(set(problems))]
    lines += [
        "",
        "Reproduce (lhotse from the `bench` extra: `.venv/bin/pip install "
        f'"lhotse=={LHOTSE_VERSION}" urllib3`):',
        "",
        "```",
        command,
        "```",
        "",
    ]
    return "\n".join(lines), met


def write_readme_section(section: str, readme: Path = README) -> None:
    """Replace (or add) this benchmark's section of `bench/README.md`, keeping the others."""
    text = readme.read_text(encoding="utf-8") if readme.exists() else "# Benchmarks\n\n"
    pattern = re.compile(rf"^{re.escape(SECTION_TITLE)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    readme.write_text(text.rstrip("\n") + "\n", encoding="utf-8")


def print_record(round_index: int, record: dict[str, Any]) -> None:
    """One progress line per contender run."""
    status = "ok" if not record["problems"] else "PROBLEM"
    extra = ""
    if record["kind"] == "voxlake" and "timeline" in record:
        first = record["timeline"]["first_start"]
        if first:
            extra = f", first run at {first - record['started_epoch']:.1f} s"
        if "again" in record:
            extra += f", nothing to do {record['again']['wall_s']:.1f} s"
        if "tokens" in record:
            extra += f", tokens {record['tokens']['wall_s']:.1f} s"
    print(
        f"round {round_index + 1}: {record['corpus']:>11} {record['kind']:>11} "
        f"p{record['processes']}: {record['wall_s']:7.1f} s wall, {record['cpu_s']:7.1f} s CPU, "
        f"{record['audio_s'] / record['wall_s']:6.0f} h/h, max RSS {record['maxrss_mb']:5.0f} MB"
        f"{extra} [{status}]",
        flush=True,
    )
    for problem in record["problems"]:
        print(f"    {problem}", flush=True)


def check_lhotse() -> None:
    """lhotse must be the pinned version, in this interpreter's environment."""
    try:
        version = metadata.version("lhotse")
    except metadata.PackageNotFoundError:
        raise SystemExit(
            f'lhotse is not installed: .venv/bin/pip install "lhotse=={LHOTSE_VERSION}" urllib3'
        ) from None
    if version != LHOTSE_VERSION:
        raise SystemExit(f"lhotse {version} installed, this bench compares with {LHOTSE_VERSION}")


@contextlib.contextmanager
def pinned_env() -> Iterator[None]:
    """No Dagster home leaks from the caller into the projects this bench creates."""
    saved = {
        k: os.environ.pop(k)
        for k in ("DAGSTER_HOME", "VOXLAKE_DAGSTER_HOME", "VOXLAKE_PROJECT")
        if k in os.environ
    }
    try:
        yield
    finally:
        os.environ.update(saved)


def main() -> None:
    """Generate (or reuse) the corpora, run the rounds, report."""
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        # --measure RESULT LOG TIMEOUT -- command...
        result, log, timeout_s, separator, *command = sys.argv[2:]
        assert separator == "--" and command
        measure_main(Path(result), Path(log), float(timeout_s), command)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=1.0, help="utterance audio per corpus")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", default="1,2", help="process counts (default 1,2)")
    parser.add_argument("--corpora", default=",".join(CORPORA), help="comma-separated subset")
    parser.add_argument("--contenders", default=",".join(KINDS), help="comma-separated subset")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=DEFAULT_WORK_DIR,
        help=f"corpora cache, logs, outputs (default {DEFAULT_WORK_DIR})",
    )
    parser.add_argument(
        "--unit-utterances",
        type=int,
        default=100,
        help="voxlake units.max_utterances and lhotse shard_size (default 100)",
    )
    parser.add_argument("--wenet-recording-minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument(
        "--timeout-s", type=float, default=4 * 3600.0, help="per contender run (default 4 h)"
    )
    parser.add_argument("--no-tokens", action="store_true", help="skip the tokenization runs")
    parser.add_argument(
        "--tokens-rounds", type=int, default=1, help="rounds that also time tokenization"
    )
    parser.add_argument("--keep", action="store_true", help="keep every run's outputs")
    parser.add_argument("--no-readme", action="store_true", help="do not write bench/README.md")
    # children
    parser.add_argument("--child", choices=["decode", "lhotse"], help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-processes", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--report", type=Path, help="render the results.json of an earlier bench; run nothing"
    )
    args = parser.parse_args()
    if args.report is not None:
        report(json.loads(args.report.read_text()), args.no_readme)
        return
    if args.child == "decode":
        child_decode(args.corpus, args.folder, args.child_processes, args.result)
        return
    if args.child == "lhotse":
        child_lhotse(
            args.corpus,
            args.folder,
            args.out,
            args.child_processes,
            args.unit_utterances,
            args.result,
        )
        return

    args.processes = [int(p) for p in args.processes.split(",") if p]
    args.contenders = [k for k in args.contenders.split(",") if k]
    corpora_names = [c for c in args.corpora.split(",") if c]
    for name in corpora_names:
        if name not in CORPORA:
            parser.error(f"unknown corpus {name!r} (known: {', '.join(CORPORA)})")
    for kind in args.contenders:
        if kind not in KINDS:
            parser.error(f"unknown contender {kind!r} (known: {', '.join(KINDS)})")
    if "lhotse" in args.contenders:
        check_lhotse()
    if "voxlake" in args.contenders and not VOXLAKE.exists():
        raise SystemExit(f"{VOXLAKE} not found: build the environment (python3 dev.py env)")

    bench_started = time.perf_counter()
    ticks_before = cpu_ticks()
    work_dir = args.work_dir.resolve()
    logs = work_dir / "logs" / time.strftime("%Y%m%d-%H%M%S")
    logs.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "machine": machine(),
        "voxlake": voxlake_revision(),
        "command": reproduce_command(args, corpora_names),
        "settings": {
            "hours": args.hours,
            "rounds": args.rounds,
            "unit_utterances": args.unit_utterances,
            "processes": args.processes,
            "contenders": args.contenders,
        },
        "load": [", ".join(f"{x:.2f}" for x in os.getloadavg()), ""],
        "cpu_probe_s": [cpu_probe_s(), None],
        "cpu_ticks": [0, 0],
        "corpora": {},
        "records": [],
        "bench_s": 0.0,
    }
    results_path = logs / "results.json"

    def save() -> None:
        results["bench_s"] = time.perf_counter() - bench_started
        results["load"][1] = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        now = cpu_ticks()
        results["cpu_ticks"] = [now[0] - ticks_before[0], now[1] - ticks_before[1]]
        results_path.write_text(json.dumps(results, indent=1))

    with pinned_env():
        folders = {}
        for name in corpora_names:
            folders[name], results["corpora"][name] = ensure_corpus(work_dir, name, args)
        for round_index in range(args.rounds):
            # Tokenization is reported apart and takes minutes per hour of audio on a CPU:
            # measured in the first `--tokens-rounds` rounds only.
            args.tokenize_now = round_index < args.tokens_rounds
            round_dir = work_dir / "runs" / f"round{round_index + 1}"
            for corpus in corpora_names:
                for kind, p in contender_order(args.processes, args.contenders, round_index):
                    info = results["corpora"][corpus]
                    record = run_contender(
                        kind, p, corpus, folders[corpus], info, round_dir, logs, args
                    )
                    record["round"] = round_index + 1
                    results["records"].append(record)
                    print_record(round_index, record)
                    save()
            if not args.keep:
                shutil.rmtree(round_dir, ignore_errors=True)
    results["cpu_probe_s"][1] = cpu_probe_s()
    save()
    print(f"results: {results_path} (`--report` renders them again)")
    report(results, args.no_readme)


def reproduce_command(args: argparse.Namespace, corpora_names: list[str]) -> str:
    """The command line that repeats this bench."""
    command = ".venv/bin/python bench/bench_vs_lhotse.py"
    for flag, value, default in (
        ("--hours", args.hours, 1.0),
        ("--rounds", args.rounds, 3),
        ("--unit-utterances", args.unit_utterances, 100),
        ("--wenet-recording-minutes", args.wenet_recording_minutes, 10.0),
        ("--seed", args.seed, 12),
    ):
        if value != default:
            command += f" {flag} {value:g}"
    if args.processes != [1, 2]:
        command += f" --processes {','.join(map(str, args.processes))}"
    if corpora_names != list(CORPORA):
        command += f" --corpora {','.join(corpora_names)}"
    if args.contenders != list(KINDS):
        command += f" --contenders {','.join(args.contenders)}"
    if args.no_tokens:
        command += " --no-tokens"
    return command


def report(results: dict[str, Any], no_readme: bool) -> None:
    """Print the section of saved results and write it into bench/README.md."""
    section, met = build_section(results)
    print()
    print(section)
    if not no_readme:
        write_readme_section(section)
        print(f"recorded in {README.relative_to(REPO)}")
    if not met:
        print("targets NOT all met (see above)")


if __name__ == "__main__":
    main()
