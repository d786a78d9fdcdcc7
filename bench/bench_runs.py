"""Benchmark: `voxlake run` through the Dagster instance against the old loop of in-process runs.

Workload: `--units` (default 200) tiny utterances written by this script, one
`audio_folder` source (`speaker_NNN/utt_NNNN.wav` + same-stem `.txt`; 16 kHz mono
16-bit WAV of 0.6-1.5 s, a harmonic tone with a 4 Hz syllable envelope plus white
noise 25 dB down, English pseudo-transcripts at ~12 characters per second, so the
default quality policy accepts them and every per-unit step has real work) and
`units.max_utterances: 1`, so every utterance is its own work unit. One folder per
utterance: the `audio_folder` connector keeps up to 500 files of one folder in one
group, and `plan_units` never splits a group, whatever `max_utterances` says. Two
fresh projects are made on that one corpus, identical but for their folder:

- **old way**: the runner of commit c019ab3 re-implemented inline: the inventory job
  by `execute_in_process`, then for each unit `unit_job.execute_in_process(partition_key=
  unit, asset_selection=[manifest, quality, tokens])` followed by
  `update_catalogue(project, units=[unit])` (the old per-unit `catalogue` asset), then
  the lake job (`quality_report`, `release`) in process: one Dagster run per unit, all
  in one Python process;
- **new way**: `assets.runner.run_assets(project)`: a code server and a daemon, runs
  queued on the instance (`max_concurrent_runs` in dagster.yaml), each carrying up to
  `execution.units_per_run` units through the three per-unit assets in one run worker,
  then one lake-wide run (the catalogue, the quality report).

Each way runs in its own subprocess (`--child`), one after the other, on the same
machine. Measured per way: total wall (the child's own clock around the call, imports
excluded), wall per unit, and where it goes (the old loop's phases; in the new way the
runner's service start and stop, `plan_work`, `submit_run` and `follow_runs`, timed by
wrapping the names `assets.runner` calls). From the instance (`get_run_records`, then
`all_logs` of every run): runs and events written, and per unit run its start overhead
(run creation, or RUN_ENQUEUED for a queued run, to RUN_START), split into queue wait
(RUN_ENQUEUED → RUN_STARTING), process start (RUN_STARTING → the "Started process for
run" engine event) and code location load (→ RUN_START); its wall (RUN_START →
RUN_SUCCESS) against the sum of its steps (STEP_START → STEP_SUCCESS: the `in_process`
executor runs steps one after another) and its waits for a pool slot ("Step blocked by
limit for pool" → STEP_START), the rest being Dagster's own work inside the run; and
the steps' own per-unit log lines ("<asset> i/n <unit> in <s> s"), a run's first unit
apart. Peak RSS: of the child process itself (`ru_maxrss`), of its largest descendant
(`RUSAGE_CHILDREN`), and of its whole process tree (resident sets summed over the tree,
sampled every 0.25 s with psutil: the new way's code server, daemon and run workers).

Then, on the new way's project (everything current): `voxlake run --project <dir>` as
a cold process, `--cli-rounds` times (default 3), min and median (requirement < 5 s),
and once more under cProfile to see where it goes; and the code location's import,
`import assets.definitions; build_definitions(...)` in a fresh interpreter,
`--import-rounds` times (default 5), min and median (requirement < 2 s), split into
import, build and interpreter exit, with the heavy modules it must not load (torch,
transformers, deepspeed, trainer) and the largest imports by `-X importtime`.

It prints the tables and writes the "Runs through Dagster" section of
`bench/README.md`. Takes about 7 minutes on 2 idle cores at 200 units, twice that with
other work on the machine (`--units 20` for a quick look). Reproduce with:

    .venv/bin/python bench/bench_runs.py
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

README = REPO / "bench" / "README.md"
SECTION_TITLE = "## Runs through Dagster"
VOXLAKE = REPO / ".venv" / "bin" / "voxlake"
CLI_TARGET_S = 5.0
IMPORT_TARGET_S = 2.0
SOURCE = "tiny"
SAMPLE_RATE_HZ = 16000
UNIT_ASSET_NAMES = ("manifest", "quality", "tokens")
HEAVY_MODULES = ("torch", "transformers", "deepspeed", "trainer")
# Also reported when loaded: large libraries the code location may or may not need.
OTHER_MODULES = tuple(
    "torchaudio safetensors scipy pandas polars pyarrow duckdb numpy soundfile soxr matplotlib "
    "PIL dagster pydantic".split()
)
WORDS = (
    "the river morning light we covered roses with old sacks first frost came in october a long "
    "quiet road to town"
).split()


# ---------------------------------------------------------------------------- corpus, projects


def generate_corpus(folder: Path, n: int, seed: int = 11) -> float:
    """`n` tiny utterances with transcripts under `folder`; returns their seconds of audio."""
    rng = np.random.default_rng(seed)
    total_s = 0.0
    for index in range(n):
        duration_s = float(rng.uniform(0.6, 1.5))
        samples = int(duration_s * SAMPLE_RATE_HZ)
        t = np.arange(samples) / SAMPLE_RATE_HZ
        envelope = 0.5 * (1 - np.cos(2 * np.pi * 4.0 * t))  # 4 syllables per second
        f0 = rng.uniform(110, 220) + 40 * np.sin(2 * np.pi * 0.7 * t)
        phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE_HZ
        voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
        signal = 0.3 * envelope * voiced / np.max(np.abs(voiced))
        signal += rng.normal(0.0, 0.3 * 10 ** (-25 / 20) / np.sqrt(2), samples)
        speaker = folder / f"speaker_{index:03d}"  # one folder per unit, see the docstring
        speaker.mkdir(parents=True, exist_ok=True)
        stem = speaker / f"utt_{index:04d}"
        sf.write(stem.with_suffix(".wav"), signal.astype(np.float32), SAMPLE_RATE_HZ, "PCM_16")
        text, words = "", list(rng.choice(WORDS, 40))
        while len(text) < 12 * duration_s:
            text = f"{text} {words.pop()}".strip()
        stem.with_suffix(".txt").write_text(text.upper() + "\n", encoding="utf-8")
        total_s += samples / SAMPLE_RATE_HZ
    return total_s


def make_project(directory: Path, corpus: Path) -> Path:
    """A fresh project on `corpus`: one `audio_folder` source, one utterance per unit."""
    from pipelines.project import init_project
    from schemas import ProjectConfig, SourceConfig

    config = ProjectConfig(
        sources=[
            SourceConfig(
                name=SOURCE,
                kind="audio_folder",  # type: ignore[arg-type]
                path=os.path.relpath(corpus, directory),
                options={"language": "en"},
            )
        ],
        units={"max_utterances": 1},  # type: ignore[arg-type]
    )
    return init_project(directory, config).directory


def child_env() -> dict[str, str]:
    """The environment of every measured process: this project's own Dagster home."""
    env = dict(os.environ)
    env.pop("VOXLAKE_DAGSTER_HOME", None)
    env.pop("DAGSTER_HOME", None)
    return env


# ---------------------------------------------------------------------------- the two ways


@dataclass
class ChildResult:
    """What one way's subprocess measured itself."""

    method: str
    started: float  # epoch seconds
    ended: float
    wall_s: float
    units: int
    success: bool
    failures: list[str]
    run_ids: list[str]
    phases: dict[str, float] = field(default_factory=dict)  # seconds, by phase
    rss_self_mb: float = 0.0
    rss_children_mb: float = 0.0
    rss_tree_peak_mb: float = 0.0
    load: list[float] = field(default_factory=list)  # 1-minute load average before, after


class TreeRss:
    """Peak of the resident set summed over this process and all its descendants."""

    def __init__(self, interval_s: float = 0.25) -> None:
        import psutil

        self._process = psutil.Process()
        self._interval_s = interval_s
        self._stop = threading.Event()
        self.peak_bytes = 0
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            with contextlib.suppress(psutil.Error):
                total = self._process.memory_info().rss
                for child in self._process.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        total += child.memory_info().rss
            self.peak_bytes = max(self.peak_bytes, total)
            self._stop.wait(self._interval_s)

    def __enter__(self) -> TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def old_way(project_dir: Path, max_units: int | None) -> ChildResult:
    """The c019ab3 runner's cost structure: one in-process Dagster run per unit, in a loop."""
    import dagster as dg

    from assets.definitions import INVENTORY_JOB, LAKE_JOB, UNIT_JOB, build_definitions
    from assets.instance import open_instance
    from assets.partitions import UNITS_PARTITIONS_NAME
    from pipelines.catalogue.build import update_catalogue
    from pipelines.project import load_project

    run_config = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    phases: dict[str, float] = {}
    failures: list[str] = []
    run_ids: list[str] = []

    def timed(phase: str, work: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        value = work()
        phases[phase] = phases.get(phase, 0.0) + time.perf_counter() - started
        return value

    def record(result: dg.ExecuteInProcessResult, label: str) -> None:
        run_ids.append(result.run_id)
        if not result.success:
            failures.append(f"{label}: run {result.run_id} failed")

    started_epoch, started = time.time(), time.perf_counter()
    project = load_project(project_dir)
    os.environ["DAGSTER_HOME"] = str(project.dagster_home)  # as the old runner did
    instance, defs = timed(
        "open instance, build definitions",
        lambda: (open_instance(project), build_definitions(project.directory)),
    )
    inventory = timed(
        "inventory run",
        lambda: defs.resolve_job_def(INVENTORY_JOB).execute_in_process(
            instance=instance,
            run_config=run_config,
            asset_selection=[dg.AssetKey(["inventory", SOURCE])],
            raise_on_error=False,
        ),
    )
    record(inventory, "inventory")
    units = sorted(instance.get_dynamic_partitions(UNITS_PARTITIONS_NAME))[:max_units]
    unit_job = defs.resolve_job_def(UNIT_JOB)
    selection = [dg.AssetKey(name) for name in UNIT_ASSET_NAMES]
    for unit in units:
        result = timed(
            "unit runs (execute_in_process)",
            lambda unit=unit: unit_job.execute_in_process(
                instance=instance,
                run_config=run_config,
                partition_key=unit,
                asset_selection=selection,
                raise_on_error=False,
            ),
        )
        record(result, unit)
        timed(
            "update_catalogue(units=[unit])",
            lambda unit=unit: update_catalogue(project, units=[unit]),
        )
    lake = timed(
        "lake run (quality_report, release)",
        lambda: defs.resolve_job_def(LAKE_JOB).execute_in_process(
            instance=instance,
            run_config=run_config,
            asset_selection=[dg.AssetKey("quality_report"), dg.AssetKey("release")],
            raise_on_error=False,
        ),
    )
    record(lake, "lake")
    wall_s = time.perf_counter() - started
    return ChildResult(
        method="old",
        started=started_epoch,
        ended=time.time(),
        wall_s=wall_s,
        units=len(units),
        success=not failures,
        failures=failures,
        run_ids=run_ids,
        phases=phases,
    )


def new_way(project_dir: Path) -> ChildResult:
    """`run_assets(project)`: queued runs of many units each, through code server and daemon.

    The runner's service start and stop, its plans and its submissions are timed by
    wrapping the names `assets.runner` calls them by; nothing else is changed.
    """
    import assets.runner as runner
    from pipelines.project import load_project

    phases: dict[str, float] = {}
    calls: dict[str, int] = {}

    def add(phase: str, seconds: float) -> None:
        phases[phase] = phases.get(phase, 0.0) + seconds
        calls[phase] = calls.get(phase, 0) + 1

    def timed(phase: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                add(phase, time.perf_counter() - started)

        return wrapper

    original_services = runner.dagster_services

    @contextlib.contextmanager
    def timed_services(*args: Any) -> Iterator[Any]:
        started = time.perf_counter()
        with original_services(*args) as services:
            add("start the code server (and daemon)", time.perf_counter() - started)
            try:
                yield services
            finally:
                stopping = time.perf_counter()
        add("stop the code server and daemon", time.perf_counter() - stopping)

    runner.dagster_services = timed_services
    runner.plan_work = timed("plan_work", runner.plan_work)
    runner.submit_run = timed("submit_run", runner.submit_run)
    runner.follow_runs = timed("follow_runs: waiting for the runs", runner.follow_runs)

    started_epoch, started = time.time(), time.perf_counter()
    project = load_project(project_dir)
    report = runner.run_assets(project)
    wall_s = time.perf_counter() - started
    return ChildResult(
        method="new",
        started=started_epoch,
        ended=time.time(),
        wall_s=wall_s,
        units=len(report.units),
        success=report.success,
        failures=report.failures,
        run_ids=report.run_ids,
        phases={f"{name} ({calls[name]}×)": seconds for name, seconds in phases.items()},
    )


def child_main(method: str, project_dir: Path, result_file: Path, max_units: int | None) -> None:
    """Run one way in this process and write its `ChildResult` as JSON."""
    load_before = os.getloadavg()[0]
    with TreeRss() as tree:
        result = old_way(project_dir, max_units) if method == "old" else new_way(project_dir)
    result.rss_self_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result.rss_children_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result.rss_tree_peak_mb = tree.peak_bytes / 2**20
    result.load = [load_before, os.getloadavg()[0]]
    result_file.write_text(json.dumps(asdict(result), indent=1))


def run_child(method: str, project_dir: Path, workdir: Path, max_units: int | None) -> ChildResult:
    """One way in a fresh subprocess; its result, or SystemExit with its output."""
    result_file = workdir / f"{method}.json"
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        method,
        "--project",
        str(project_dir),
        "--result",
        str(result_file),
    ]
    if max_units is not None:
        command += ["--old-units", str(max_units)]
    print(f"{method} way: running ...", flush=True)
    completed = subprocess.run(command, env=child_env(), cwd=REPO, capture_output=True, text=True)
    if completed.returncode != 0 or not result_file.exists():
        raise SystemExit(
            f"the {method} way exited with status {completed.returncode}:\n"
            f"{completed.stdout[-4000:]}\n{completed.stderr[-8000:]}"
        )
    result = ChildResult(**json.loads(result_file.read_text()))
    print(f"{method} way: {result.units} units in {result.wall_s:.1f} s", flush=True)
    return result


# ---------------------------------------------------------------------------- the instance's view


@dataclass
class RunStats:
    """One Dagster run as its events tell it (epoch seconds)."""

    run_id: str
    job: str
    status: str
    units: int
    events: int
    log_events: int  # of them, the steps' log messages (`context.log`)
    planned_events: int  # of them, written when the run is created (planned materialisations)
    created: float
    enqueued: float | None  # RUN_ENQUEUED: submitted to the queue (queued runs only)
    starting: float | None  # RUN_STARTING: the daemon took it off the queue and launches it
    process: float | None  # "Started process for run": the run worker's process is up
    started: float | None  # RUN_START: the run worker has loaded the code, steps begin
    ended: float | None  # RUN_SUCCESS / RUN_FAILURE / RUN_CANCELED
    steps_s: float  # sum of STEP_START → STEP_SUCCESS / STEP_FAILURE
    pool_wait_s: float  # "Step blocked by limit for pool" → STEP_START
    step_s: dict[str, float] = field(default_factory=dict)
    unit_s: dict[str, list[float]] = field(default_factory=dict)  # the steps' own log lines
    # Gaps between back-to-back events of one kind that a step emits in a burst
    # (a run's planned materialisations, a step's materialisations): one event write each.
    write_gaps_s: list[float] = field(default_factory=list)

    @property
    def queue_s(self) -> float | None:
        """RUN_ENQUEUED → RUN_STARTING: waiting for a run slot (queued runs only)."""
        if self.enqueued is None or self.starting is None:
            return None
        return self.starting - self.enqueued

    @property
    def submit_s(self) -> float | None:
        """Run creation → RUN_ENQUEUED (queued runs only)."""
        return None if self.enqueued is None else self.enqueued - self.created

    @property
    def spawn_s(self) -> float | None:
        """RUN_STARTING → "Started process for run": the run worker's process starts."""
        if self.starting is None or self.process is None:
            return None
        return self.process - self.starting

    @property
    def load_s(self) -> float | None:
        """ "Started process for run" → RUN_START: the worker loads the code location."""
        if self.process is None or self.started is None:
            return None
        return self.started - self.process

    @property
    def launch_s(self) -> float | None:
        """RUN_STARTING (queued) or run creation (in process) → RUN_START."""
        if self.started is None:
            return None
        return self.started - (self.starting if self.starting is not None else self.created)

    @property
    def start_overhead_s(self) -> float | None:
        """Run creation (in process) or RUN_ENQUEUED (queued) → RUN_START: before any step."""
        if self.started is None:
            return None
        return self.started - (self.enqueued if self.enqueued is not None else self.created)

    @property
    def wall_s(self) -> float | None:
        """RUN_START → the run's end event."""
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started

    @property
    def inside_s(self) -> float | None:
        """Dagster's own time inside the run: its wall less its steps and pool waits."""
        if self.wall_s is None:
            return None
        return self.wall_s - self.steps_s - self.pool_wait_s


# `materialize_units` logs "<asset> <i>/<n> <unit> in <seconds> s" after each unit.
UNIT_LOG = re.compile(r"^(\w+) (\d+)/(\d+) (\S+) in ([\d.]+) s")
POOL_BLOCKED = "Step blocked by limit for pool"
PROCESS_STARTED = "Started process for run"


def run_stats(instance: Any, record: Any) -> RunStats:
    """One run's `RunStats` from its event log."""
    from dagster._core.events import DagsterEventType as T

    run = record.dagster_run
    logs = instance.all_logs(run.run_id)
    first: dict[Any, float] = {}
    open_steps: dict[str, float] = {}
    blocked: dict[str, float] = {}
    step_s: dict[str, float] = {}
    unit_s: dict[str, list[float]] = {}
    pool_wait_s = 0.0
    process: float | None = None
    units: set[str] = set()
    write_gaps_s: list[float] = []
    burst = (T.ASSET_MATERIALIZATION, T.ASSET_MATERIALIZATION_PLANNED)
    for before, after in itertools.pairwise(logs):
        kinds = {e.dagster_event.event_type if e.dagster_event else None for e in (before, after)}
        if len(kinds) == 1 and kinds <= set(burst):
            write_gaps_s.append(after.timestamp - before.timestamp)
    for entry in logs:
        event = entry.dagster_event
        if event is None:
            match = UNIT_LOG.match(entry.user_message or "")
            if match and match.group(1) in UNIT_ASSET_NAMES:
                unit_s.setdefault(match.group(1), []).append(float(match.group(5)))
            continue
        first.setdefault(event.event_type, entry.timestamp)
        key = event.step_key or ""
        message = event.message or ""
        if event.event_type == T.ENGINE_EVENT and message.startswith(POOL_BLOCKED):
            blocked.setdefault(key, entry.timestamp)
        elif event.event_type == T.ENGINE_EVENT and message.startswith(PROCESS_STARTED):
            process = entry.timestamp if process is None else process
        elif event.event_type == T.STEP_START:
            open_steps[key] = entry.timestamp
            if key in blocked:
                pool_wait_s += entry.timestamp - blocked.pop(key)
        elif event.event_type in (T.STEP_SUCCESS, T.STEP_FAILURE) and key in open_steps:
            step_s[key] = step_s.get(key, 0.0) + entry.timestamp - open_steps.pop(key)
        elif event.event_type == T.ASSET_MATERIALIZATION:
            partition = event.step_materialization_data.materialization.partition
            if partition is not None:
                units.add(partition)
    ends = (T.RUN_SUCCESS, T.RUN_FAILURE, T.RUN_CANCELED)
    return RunStats(
        run_id=run.run_id,
        job=run.job_name,
        status=run.status.value,
        units=len(units),
        events=len(logs),
        log_events=sum(1 for entry in logs if entry.dagster_event is None),
        planned_events=sum(
            1
            for entry in logs
            if entry.dagster_event is not None
            and entry.dagster_event.event_type
            in (T.ASSET_MATERIALIZATION_PLANNED, T.ASSET_CHECK_EVALUATION_PLANNED)
        ),
        created=record.create_timestamp.timestamp(),
        enqueued=first.get(T.RUN_ENQUEUED),
        starting=first.get(T.RUN_STARTING),
        process=process,
        started=first.get(T.RUN_START),
        ended=min((first[t] for t in ends if t in first), default=None),
        steps_s=sum(step_s.values()),
        pool_wait_s=pool_wait_s,
        step_s=step_s,
        unit_s=unit_s,
        write_gaps_s=write_gaps_s,
    )


def instance_runs(project_dir: Path) -> list[RunStats]:
    """Every run of the project's instance, oldest first."""
    from assets.instance import open_instance
    from pipelines.project import load_project

    instance = open_instance(load_project(project_dir))
    records = sorted(instance.get_run_records(), key=lambda r: r.create_timestamp)
    return [run_stats(instance, record) for record in records]


def catalogue_accepted(project_dir: Path) -> int:
    """Accepted utterances in the project's catalogue."""
    from pipelines.catalogue.read import open_catalogue_readonly
    from pipelines.project import load_project

    project = load_project(project_dir)
    with open_catalogue_readonly(project.catalogue_path) as con:
        rows = con.sql("SELECT count(*) FROM utterances WHERE status = 'accepted'").fetchall()
    return int(rows[0][0])


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under `folder`."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------- cold processes


def time_cli(project_dir: Path, rounds: int) -> list[float]:
    """Wall of `voxlake run --project <dir>` (nothing to do), each a cold process."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        done = subprocess.run(
            [str(VOXLAKE), "run", "--project", str(project_dir)],
            env=child_env(),
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        times.append(time.perf_counter() - started)
        output = done.stdout + done.stderr
        if done.returncode != 0 or "nothing to do" not in output:
            raise SystemExit(f"`voxlake run` on a current project did not say so:\n{output}")
    return times


# Functions of `voxlake run` whose cumulative time the profile reports: (file, function).
CLI_PARTS = [
    ("assets/cli.py", "<module>", "import the CLI (`assets.cli`: typer, pipelines.cli)"),
    ("assets/runner.py", "<module>", "import `assets.runner` (Dagster, the code location)"),
    ("assets/runner.py", "run_assets", "`run_assets`"),
    ("assets/instance.py", "open_instance", "… `open_instance` (storage imports, SQLite)"),
    ("assets/definitions.py", "build_definitions", "… `build_definitions`"),
    ("assets/plan.py", "plan_work", "… `plan_work`"),
]


def profile_cli(project_dir: Path, workdir: Path) -> tuple[float, float, list[tuple[str, float]]]:
    """One `voxlake run` (nothing to do) under cProfile: wall, profiled time, the parts."""
    import pstats

    output = workdir / "cli.prof"
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "cProfile", "-o", str(output), str(VOXLAKE), "run",
         "--project", str(project_dir)],
        env=child_env(), cwd=REPO, capture_output=True, check=True,
    )  # fmt: skip
    wall_s = time.perf_counter() - started
    stats = pstats.Stats(str(output))
    cumulative = {(file, name): entry[3] for (file, _, name), entry in stats.stats.items()}
    parts = []
    for suffix, function, label in CLI_PARTS:
        seconds = max(
            (t for (f, n), t in cumulative.items() if n == function and f.endswith(suffix)),
            default=0.0,
        )
        parts.append((label, seconds))
    return wall_s, stats.total_tt, parts


IMPORT_SNIPPET = """
import json, sys, time
started = time.perf_counter()
from pathlib import Path
import assets.definitions
from assets.definitions import build_definitions
imported = time.perf_counter()
build_definitions(Path(sys.argv[1]))
built = time.perf_counter()
print(json.dumps({{"import_s": imported - started, "build_s": built - imported,
                  "loaded": [m for m in {modules!r} if m in sys.modules],
                  "n_modules": len(sys.modules), "done": time.time()}}), flush=True)
"""


@dataclass
class ImportTiming:
    """The code location's import in fresh interpreters."""

    wall_s: list[float]  # whole process, interpreter start included
    import_s: list[float]  # `import assets.definitions`, inside the process
    build_s: list[float]  # `build_definitions(project)`
    loaded: list[str]
    top_imports: list[tuple[str, float]]  # import self time summed by top-level package (s)
    bare_s: list[float]  # `python -c pass`: the interpreter's own start
    exit_s: list[float]  # from the snippet's last line to the process's end: interpreter exit
    children: list[tuple[str, float]]  # what assets.definitions imports, cumulative seconds
    n_modules: int  # modules in sys.modules after build_definitions


def time_import(project_dir: Path, rounds: int) -> ImportTiming:
    """Fresh `python -c "import assets.definitions; build_definitions(...)"`, `rounds` times."""
    snippet = IMPORT_SNIPPET.format(modules=(*HEAVY_MODULES, *OTHER_MODULES))
    command = [sys.executable, "-c", snippet, str(project_dir)]
    wall, imported, built, bare, exits = [], [], [], [], []
    result: dict[str, Any] = {}
    for _ in range(rounds):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], env=child_env(), cwd=REPO, check=True)
        bare.append(time.perf_counter() - started)
        started = time.perf_counter()
        done = subprocess.run(command, env=child_env(), cwd=REPO, capture_output=True, text=True)
        wall.append(time.perf_counter() - started)
        ended = time.time()
        if done.returncode != 0:
            raise SystemExit(f"importing the code location failed:\n{done.stderr}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        exits.append(ended - result["done"])
        imported.append(result["import_s"])
        built.append(result["build_s"])
    profiled = subprocess.run(
        [sys.executable, "-X", "importtime", *command[1:]],
        env=child_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    top: dict[str, float] = {}
    children: list[tuple[str, float]] = []
    pending: dict[int, list[tuple[str, float]]] = {}  # depth → modules awaiting their parent
    for line in profiled.stderr.splitlines():
        tree = re.match(r"import time:\s+\d+ \|\s+(\d+) \| ( *)(\S+)$", line)
        if tree:  # children are printed before their parent, two spaces deeper
            depth, name = len(tree.group(2)), tree.group(3)
            below = pending.pop(depth + 2, [])
            if name == "assets.definitions":
                children = sorted(below, key=lambda item: -item[1])[:6]
            pending.setdefault(depth, []).append((name, int(tree.group(1)) / 1e6))
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \| +(\S+)$", line)
        if match:  # self time, summed by top-level package
            name = match.group(2).split(".")[0]
            top[name] = top.get(name, 0.0) + int(match.group(1)) / 1e6
    ranked = sorted(top.items(), key=lambda item: -item[1])[:8]
    return ImportTiming(
        wall_s=wall,
        import_s=imported,
        build_s=built,
        loaded=result["loaded"],
        top_imports=ranked,
        bare_s=bare,
        exit_s=exits,
        children=children,
        n_modules=result["n_modules"],
    )


# ---------------------------------------------------------------------------- report


def machine() -> str:
    """CPU, cores, memory, OS, Python and Dagster versions."""
    import dagster

    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cpu}, {os.cpu_count()} CPUs, {memory_gib:.0f} GiB RAM; Linux {platform.release()}; "
        f"Python {platform.python_version()}; Dagster {dagster.__version__}"
    )


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _f(value: float | None, digits: int = 2) -> str:
    return "–" if value is None or value != value else f"{value:,.{digits}f}"


def _values(runs: list[RunStats], attribute: str) -> list[float]:
    return [v for v in (getattr(r, attribute) for r in runs) if v is not None]


@dataclass
class WayReport:
    """One way's figures, for the tables."""

    child: ChildResult
    runs: list[RunStats]
    dagster_bytes: int
    accepted: int  # accepted utterances in the project's catalogue: both ways did the same

    @property
    def unit_runs(self) -> list[RunStats]:
        return [r for r in self.runs if r.job == "unit_job"]

    @property
    def events(self) -> int:
        return sum(r.events for r in self.runs)

    @property
    def write_s(self) -> float:
        """What one event write takes: the median gap within bursts of materialisations."""
        return _median([gap for r in self.runs for gap in r.write_gaps_s])

    def unit_step_s(self, prefix: str) -> float:
        """Seconds of the unit runs' steps whose key starts with `prefix`."""
        return sum(s for r in self.unit_runs for k, s in r.step_s.items() if k.startswith(prefix))


def totals_table(old: WayReport, new: WayReport) -> list[str]:
    """Total wall, per unit, runs, events, memory: old, new, new / old."""

    def row(name: str, a: float, b: float, digits: int = 2, ratio: bool = True) -> str:
        share = f"{b / a:.2f}" if ratio and a else ""
        return f"| {name} | {_f(a, digits)} | {_f(b, digits)} | {share} |"

    o, n = old.child, new.child
    return [
        "| | old: a run per unit, in process | new: `run_assets`, queued runs | new / old |",
        "|---|---:|---:|---:|",
        row("units", o.units, n.units, 0, ratio=False),
        row("total wall (s)", o.wall_s, n.wall_s),
        row("wall per unit (s)", o.wall_s / o.units, n.wall_s / n.units, 3),
        row("Dagster runs", len(old.runs), len(new.runs), 0),
        row("unit runs", len(old.unit_runs), len(new.unit_runs), 0),
        row("events written", old.events, new.events, 0),
        row("events per unit", old.events / o.units, new.events / n.units, 1),
        row(
            "… of them, the steps' log messages",
            sum(r.log_events for r in old.runs) / o.units,
            sum(r.log_events for r in new.runs) / n.units,
            1,
        ),
        row(
            "one event write: median gap between back-to-back events (ms)",
            1000 * old.write_s,
            1000 * new.write_s,
            0,
        ),
        row("utterances accepted (catalogue)", old.accepted, new.accepted, 0, ratio=False),
        row("Dagster home on disk (MB)", old.dagster_bytes / 1e6, new.dagster_bytes / 1e6, 1),
        row("peak RSS, the voxlake process (MB)", o.rss_self_mb, n.rss_self_mb, 0),
        row("peak RSS, largest child process (MB)", o.rss_children_mb, n.rss_children_mb, 0),
        row("peak RSS, process tree summed (MB)", o.rss_tree_peak_mb, n.rss_tree_peak_mb, 0),
    ]


def runs_table(old: WayReport, new: WayReport) -> list[str]:
    """Per unit run: start overhead, wall against the sum of its steps."""
    lines = [
        "| unit runs | old: median | old: sum | new: median | new: sum |",
        "|---|---:|---:|---:|---:|",
    ]

    def row(name: str, values: Callable[[WayReport], list[float]], digits: int = 2) -> str:
        a, b = values(old), values(new)
        total = 0 if digits <= 1 else 1  # counts are summed as counts
        return (
            f"| {name} | {_f(_median(a), digits)} | {_f(sum(a) if a else None, total)} | "
            f"{_f(_median(b), digits)} | {_f(sum(b) if b else None, total)} |"
        )

    def per_unit(w: WayReport) -> list[float]:
        return [
            ((r.submit_s or 0.0) + (r.launch_s or 0.0) + (r.inside_s or 0.0)) / max(1, r.units)
            for r in w.unit_runs
        ]

    lines += [
        row("units per run", lambda w: [float(r.units) for r in w.unit_runs], 0),
        row(
            "start overhead: creation / RUN_ENQUEUED → RUN_START (s)",
            lambda w: _values(w.unit_runs, "start_overhead_s"),
        ),
        row(
            "submission: creation → RUN_ENQUEUED (s; before the start overhead)",
            lambda w: _values(w.unit_runs, "submit_s"),
        ),
        row(
            "… of it, queue wait: RUN_ENQUEUED → RUN_STARTING (s)",
            lambda w: _values(w.unit_runs, "queue_s"),
        ),
        row(
            "… of it, launch: RUN_STARTING (or creation) → RUN_START (s)",
            lambda w: _values(w.unit_runs, "launch_s"),
        ),
        row(
            "… … process start: RUN_STARTING → “Started process for run” (s)",
            lambda w: _values(w.unit_runs, "spawn_s"),
        ),
        row(
            "… … code location load: “Started process” → RUN_START (s)",
            lambda w: _values(w.unit_runs, "load_s"),
        ),
        row("run wall: RUN_START → RUN_SUCCESS (s)", lambda w: _values(w.unit_runs, "wall_s")),
        row("sum of the run's step durations (s)", lambda w: _values(w.unit_runs, "steps_s")),
        row(
            "waits for a pool slot (`gpu` pool, tokens) (s)",
            lambda w: _values(w.unit_runs, "pool_wait_s"),
        ),
        row(
            "Dagster inside the run: run wall − steps − pool waits (s)",
            lambda w: _values(w.unit_runs, "inside_s"),
        ),
        row(
            "Dagster's cost per unit: (submission + launch + Dagster inside the run) / units (s)",
            per_unit,
            3,
        ),
        row("events per run", lambda w: [float(r.events) for r in w.unit_runs], 0),
    ]
    return lines


def steps_table(old: WayReport, new: WayReport) -> list[str]:
    """Seconds per unit in each per-unit step, summed over the unit runs."""
    lines = ["| step, per unit (s) | old | new |", "|---|---:|---:|"]
    for name in UNIT_ASSET_NAMES:
        a = old.unit_step_s(name) / old.child.units
        b = new.unit_step_s(name) / new.child.units
        lines.append(f"| {name} | {a:.3f} | {b:.3f} |")
    catalogue_old = old.child.phases.get("update_catalogue(units=[unit])", 0.0) / old.child.units
    catalogue_new = sum(r.step_s.get("catalogue", 0.0) for r in new.runs) / new.child.units
    lines.append(
        f"| catalogue (old: `update_catalogue` per unit; new: one lake-wide step) | "
        f"{catalogue_old:.3f} | {catalogue_new:.3f} |"
    )
    return lines


def unit_work_table(old: WayReport, new: WayReport) -> list[str]:
    """The steps' own per-unit times (their log lines): a run's first unit against the rest."""
    lines = [
        "| step's work on one unit (s, from its log line; median) | old: first unit of the "
        "process | old: other units | new: first unit of a run | new: other units |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in UNIT_ASSET_NAMES:
        old_times = [t for r in old.unit_runs for t in r.unit_s.get(name, [])]
        new_first = [r.unit_s[name][0] for r in new.unit_runs if r.unit_s.get(name)]
        new_rest = [t for r in new.unit_runs for t in r.unit_s.get(name, [])[1:]]
        lines.append(
            f"| {name} | {_f(old_times[0] if old_times else None, 1)} | "
            f"{_f(_median(old_times[1:]), 1)} | {_f(_median(new_first), 1)} | "
            f"{_f(_median(new_rest), 1)} |"
        )
    return lines


def phases_table(way: WayReport, title: str, rest: str) -> list[str]:
    """Where one way's wall goes, from its own clock."""
    wall_s = way.child.wall_s
    lines = [f"| {title} | seconds | share |", "|---|---:|---:|"]
    for name, seconds in way.child.phases.items():
        lines.append(f"| {name} | {seconds:.1f} | {seconds / wall_s:.0%} |")
    left = wall_s - sum(way.child.phases.values())
    lines.append(f"| {rest} | {left:.1f} | {left / wall_s:.0%} |")
    return lines


def new_timeline_table(new: WayReport, cores: int) -> list[str]:
    """Where the new way's wall goes: the runs' timeline against the call's own clock."""
    child, runs = new.child, new.runs
    lines = ["| new way, phase | seconds | share |", "|---|---:|---:|"]

    def row(name: str, seconds: float) -> None:
        lines.append(f"| {name} | {seconds:.1f} | {seconds / child.wall_s:.0%} |")

    previous = child.started
    row_before = "before the first run: instance, definitions, plan, code server + daemon start"
    for job, name in (
        ("inventory_job", "inventory run: created → ended"),
        ("unit_job", "unit runs: first created → last ended"),
        ("lake_job", "lake run (catalogue, quality report): created → ended"),
    ):
        picked = [r for r in runs if r.job == job and r.ended is not None]
        if not picked:
            continue
        first, last = min(r.created for r in picked), max(r.ended or 0.0 for r in picked)
        row(row_before if previous == child.started else "gap: re-plan, submit", first - previous)
        row(name, last - first)
        previous = last
    row("after the last run: the follow loop notices, services stop", child.ended - previous)
    unit_runs = new.unit_runs
    if unit_runs:
        span = max(r.ended or 0.0 for r in unit_runs) - min(r.created for r in unit_runs)
        steps = sum(r.steps_s for r in unit_runs)
        launches = sum(_values(unit_runs, "launch_s"))
        lines += [
            "",
            f"Unit stage: {span:.1f} s of wall; the unit runs' steps add up to {steps:.1f} s "
            f"({steps / span:.2f} of {cores} cores busy in steps on average), their launches "
            f"(RUN_STARTING → RUN_START) to {launches:.1f} s, their waits for a `gpu` pool slot "
            f"to {sum(r.pool_wait_s for r in unit_runs):.1f} s.",
        ]
    return lines


def cli_profile_lines(profile: tuple[float, float, list[tuple[str, float]]]) -> list[str]:
    """Where a `voxlake run` with nothing to do spends its time (one run under cProfile)."""
    wall_s, profiled_s, parts = profile
    lines = [
        "| `voxlake run`, nothing to do, under cProfile | seconds | share of the wall |",
        "|---|---:|---:|",
        f"| whole process (cProfile inflates Python-heavy parts) | {wall_s:.2f} | 100% |",
    ]
    lines += [f"| {label} | {seconds:.2f} | {seconds / wall_s:.0%} |" for label, seconds in parts]
    outside = wall_s - profiled_s
    lines.append(
        f"| outside the profile: interpreter start and exit | {outside:.2f} | "
        f"{outside / wall_s:.0%} |"
    )
    return lines


def cli_import_lines(cli_s: list[float], imports: ImportTiming) -> list[str]:
    """The two cold-process requirements."""
    loaded_heavy = [m for m in imports.loaded if m in HEAVY_MODULES]
    loaded_other = [m for m in imports.loaded if m not in HEAVY_MODULES]
    cli_met = min(cli_s) < CLI_TARGET_S and _median(cli_s) < CLI_TARGET_S
    import_met = _median(imports.wall_s) < IMPORT_TARGET_S and not loaded_heavy
    top = ", ".join(f"{name} {seconds:.2f}" for name, seconds in imports.top_imports)
    return [
        "| cold process | rounds | min (s) | median (s) | requirement |",
        "|---|---:|---:|---:|---|",
        f"| `voxlake run --project <dir>`, nothing to do | {len(cli_s)} | {min(cli_s):.2f} | "
        f"{_median(cli_s):.2f} | < {CLI_TARGET_S:.0f} s: {'met' if cli_met else 'NOT met'} |",
        f"| `import assets.definitions` + `build_definitions(project)`, whole process | "
        f"{len(imports.wall_s)} | {min(imports.wall_s):.2f} | {_median(imports.wall_s):.2f} | "
        f"< {IMPORT_TARGET_S:.0f} s: {'met' if import_met else 'NOT met'} |",
        f"| … of it, `import assets.definitions` | {len(imports.import_s)} | "
        f"{min(imports.import_s):.2f} | {_median(imports.import_s):.2f} | |",
        f"| … of it, `build_definitions(project)` | {len(imports.build_s)} | "
        f"{min(imports.build_s):.2f} | {_median(imports.build_s):.2f} | |",
        f"| … of it, interpreter exit after that | {len(imports.exit_s)} | "
        f"{min(imports.exit_s):.2f} | {_median(imports.exit_s):.2f} | |",
        f"| for scale: a bare interpreter, `python -c pass` | {len(imports.bare_s)} | "
        f"{min(imports.bare_s):.2f} | {_median(imports.bare_s):.2f} | |",
        "",
        f"- Heavy modules loaded by the code location ({', '.join(HEAVY_MODULES)} must not be): "
        f"{', '.join(loaded_heavy) or 'none'}",
        f"- Other large libraries it loads: {', '.join(loaded_other) or 'none'} "
        f"({imports.n_modules:,} modules in all)",
        "- What `assets.definitions` imports, by cumulative import time (`-X importtime`, one "
        "run; a module shared by several is counted under the first): "
        + ", ".join(f"{name} {seconds:.2f}" for name, seconds in imports.children),
        f"- Import time by top-level package (`-X importtime`, self seconds summed, one run): "
        f"{top}",
    ]


def reading_lines(old: WayReport, new: WayReport, imports: ImportTiming) -> list[str]:
    """How to read the tables: where each way's time goes, in this run's own figures."""
    runs, n = new.unit_runs, new.child.units
    submit = _median(_values(runs, "submit_s"))
    spawn, load = _median(_values(runs, "spawn_s")), _median(_values(runs, "load_s"))
    first_tokens = [r.unit_s["tokens"][0] for r in runs if r.unit_s.get("tokens")]
    other_tokens = _median([t for r in runs for t in r.unit_s.get("tokens", [])[1:]])
    tokens_extra = sum(t - other_tokens for t in first_tokens)
    planned = _median([float(r.planned_events) for r in runs])
    events_per_unit = new.events / n
    old_start = _median(_values(old.unit_runs, "start_overhead_s"))
    old_inside = _median(_values(old.unit_runs, "inside_s"))
    catalogue = old.child.phases.get("update_catalogue(units=[unit])", 0.0) / old.child.units
    matplotlib = dict(imports.top_imports).get("matplotlib", 0.0)
    quality = dict(imports.children).get("assets.quality", 0.0)
    return [
        "How to read it. The old way pays a whole Dagster run for every unit: "
        f"{old_start:.2f} s from creation to RUN_START, {old_inside:.2f} s of Dagster's own work "
        f"inside the run (median), {old.events / old.child.units:.0f} events written per unit, "
        "Dagster's compute-log capture (two `tail -F` and two `watch_orphans.py` processes) "
        f"started per run, and a catalogue update per unit ({catalogue:.2f} s), all on one core. "
        f"The new way pays per run instead, {len(runs)} unit runs for {n} units: the submission "
        f"({submit:.1f} s median, nearly all of it the run's {planned:.0f} planned "
        f"materialisations and checks written one by one at ~{1000 * new.write_s:.0f} ms each), "
        "the run worker's "
        f"process start ({spawn:.1f} s) and code location load ({load:.1f} s), and in the tokens "
        f"step of every run the torch import and tokenizer load (its first unit takes "
        f"{_median(first_tokens):.1f} s against {other_tokens:.1f} s for the others: "
        f"{tokens_extra:.0f} s over all runs); and it runs "
        f"{max_concurrent_runs_seen(new)} runs at once on the {os.cpu_count()} cores. Per unit "
        f"it still writes {events_per_unit:.0f} events (one planned and one materialisation per "
        "asset, plus the steps' log messages), each a SQLite write: about "
        f"{events_per_unit * new.write_s:.2f} s of event writes per unit. Memory: a run "
        f"worker holds torch ({new.child.rss_children_mb:,.0f} MB resident at most), so with "
        "several at once the new way's process tree peaks at several times the old single "
        "process; the summed figure counts shared pages in every "
        "process, and the old way's counts its forked compute-log watchers with the parent's "
        "pages. The code location loads no torch, but `assets.quality` imports matplotlib through "
        "`pipelines.steps.quality_report` → `quality.report.html` → `quality.report.plots` "
        f"({quality:.2f} s cumulative, matplotlib's own modules {matplotlib:.2f} s), and the "
        f"interpreter's exit after loading it takes {_median(imports.exit_s):.2f} s, nearly all "
        "of it the garbage collections of interpreter shutdown (a `gc.freeze()` just before exit "
        "removes them).",
    ]


def max_concurrent_runs_seen(way: WayReport) -> int:
    """The most unit runs of `way` that were between RUN_START and their end at one time."""
    edges = sorted(
        [(r.started, 1) for r in way.unit_runs if r.started is not None]
        + [(r.ended, -1) for r in way.unit_runs if r.ended is not None]
    )
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def write_readme_section(section: str, readme: Path = README) -> None:
    """Replace (or add) this benchmark's section of `bench/README.md`, keeping the others."""
    text = readme.read_text(encoding="utf-8") if readme.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION_TITLE)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    block = section.rstrip("\n") + "\n\n"
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip("\n") + "\n\n" + block
    readme.write_text(text.rstrip("\n") + "\n", encoding="utf-8")


@contextlib.contextmanager
def work_folder(path: Path | None, keep: bool) -> Iterator[Path]:
    """`path`, or a temporary folder removed afterwards unless `keep`."""
    folder = path or Path(tempfile.mkdtemp(prefix="voxlake-bench-runs-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    finally:
        if not keep and path is None:
            shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, default=200)
    parser.add_argument(
        "--old-units",
        type=int,
        default=None,
        help="units the old way processes (default: all); per unit figures are then over that many",
    )
    parser.add_argument("--cli-rounds", type=int, default=3)
    parser.add_argument("--import-rounds", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the corpus and projects")
    parser.add_argument("--no-readme", action="store_true", help="do not write bench/README.md")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="with --workdir of a kept run: reuse its corpus and both ways' results, measure "
        "only the cold processes again",
    )
    parser.add_argument("--child", choices=["old", "new"], help=argparse.SUPPRESS)
    parser.add_argument("--project", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args.child, args.project, args.result, args.old_units)
        return

    bench_started = time.perf_counter()
    load_before = os.getloadavg()
    if args.reuse and args.workdir is None:
        parser.error("--reuse needs the --workdir of a kept run")
    with work_folder(args.workdir, args.keep or args.reuse) as workdir:
        corpus = workdir / "corpus"
        dirs = {method: workdir / method for method in ("old", "new")}
        if args.reuse:
            old_child, new_child = (
                ChildResult(**json.loads((workdir / f"{m}.json").read_text())) for m in dirs
            )
            audio_s = sum(sf.info(str(p)).duration for p in corpus.rglob("*.wav"))
            args.units = new_child.units
        else:
            shutil.rmtree(corpus, ignore_errors=True)
            audio_s = generate_corpus(corpus, args.units)
            for directory in dirs.values():
                shutil.rmtree(directory, ignore_errors=True)
                make_project(directory, corpus)
            print(f"corpus: {args.units} utterances, {audio_s:.0f} s of audio in {workdir}")
            old_child = run_child("old", dirs["old"], workdir, args.old_units)
            new_child = run_child("new", dirs["new"], workdir, None)
        for child in (old_child, new_child):
            if not child.success:
                raise SystemExit(f"the {child.method} way failed: {child.failures}")
            expected = args.units
            if child is old_child and args.old_units is not None:
                expected = min(args.units, args.old_units)
            if child.units != expected:
                raise SystemExit(f"the {child.method} way had {child.units} units, not {expected}")
        old, new = (
            WayReport(
                child,
                instance_runs(dirs[child.method]),
                folder_bytes(dirs[child.method] / ".dagster"),
                catalogue_accepted(dirs[child.method]),
            )
            for child in (old_child, new_child)
        )
        print("voxlake run, nothing to do ...", flush=True)
        cli_s = time_cli(dirs["new"], args.cli_rounds)
        cli_profile = profile_cli(dirs["new"], workdir)
        print("import of the code location ...", flush=True)
        imports = time_import(dirs["new"], args.import_rounds)
        from assets.instance import max_concurrent_runs, open_instance
        from pipelines.project import load_project

        new_project = load_project(dirs["new"])
        units_per_run = new_project.config.execution.units_per_run
        run_slots = max_concurrent_runs(open_instance(new_project))
    bench_s = time.perf_counter() - bench_started
    cores = os.cpu_count() or 1
    untracked = sorted(set(r.run_id for r in new.runs) - set(new_child.run_ids))
    ratio = new_child.wall_s / (old_child.wall_s / old_child.units * new_child.units)
    old_note = (
        ""
        if old_child.units == new_child.units
        else f" The old way processed only the first {old_child.units} units (`--old-units`); "
        "its per-unit figures are over those."
    )
    section = "\n".join(
        [
            SECTION_TITLE,
            "",
            f"{new_child.units} work units of one tiny utterance each (0.6-1.5 s 16 kHz WAV, "
            f"{audio_s:.0f} s of audio in all, an `audio_folder` source with transcripts, "
            "`units.max_utterances: 1`), through manifest → quality → tokens (demo tokenizer, "
            "CPU, code shards) → catalogue, on two fresh projects on the same corpus, each way "
            "in its own process, one after the other. Old way: the loop of commit c019ab3 (one "
            "`execute_in_process` run per unit, then `update_catalogue(units=[unit])`), "
            "re-implemented in the bench; there the catalogue was a fifth step of each unit run, "
            "so calling `update_catalogue` directly spares that step's Dagster overhead and "
            "favours the old way slightly. New way: `run_assets(project)` (code server + daemon, "
            f"queued runs, `max_concurrent_runs` {run_slots}, `units_per_run` {units_per_run}, "
            "`in_process` executor, one lake-wide catalogue run)." + old_note,
            "",
            f"- Machine: {machine()}",
            f"- Load average before the bench: {' / '.join(f'{x:.2f}' for x in load_before)}; "
            f"1-minute load average before / after the old way "
            f"{old_child.load[0]:.2f} / {old_child.load[1]:.2f}, the new way "
            f"{new_child.load[0]:.2f} / {new_child.load[1]:.2f}; "
            f"the whole bench ran in {bench_s / 60:.1f} min",
            "",
            *totals_table(old, new),
            "",
            f"The new way takes {ratio:.2f}× the old way's wall for the same units ("
            + (f"{1 / ratio:.1f}× faster)." if ratio < 1 else f"{ratio:.1f}× slower)."),
            "",
            *runs_table(old, new),
            "",
            *steps_table(old, new),
            "",
            *unit_work_table(old, new),
            "",
            *phases_table(old, "old way, phase", "the rest (loading the project, the loop)"),
            "",
            *phases_table(
                new,
                "new way, inside `run_assets`",
                "the rest (open the instance, build the definitions, resolve the selection)",
            ),
            "",
            *new_timeline_table(new, cores),
            "",
            *reading_lines(old, new, imports),
            *(
                [
                    "",
                    f"Runs in the new way's instance that `run_assets` did not submit (the "
                    f"catalogue sensor's): {len(untracked)}.",
                ]
                if untracked
                else []
            ),
            "",
            "With everything current, on the new way's project (cold processes: other work on "
            "the machine slows them directly, see the load line):",
            "",
            *cli_import_lines(cli_s, imports),
            "",
            *cli_profile_lines(cli_profile),
            "",
            "Reproduce (about 7 minutes on 2 idle cores, twice that with other work on the "
            "machine; `--units 20` for a quick look):",
            "",
            "```",
            ".venv/bin/python bench/bench_runs.py",
            "```",
        ]
    )
    print()
    print(section)
    if not args.no_readme:
        write_readme_section(section)
        print(f"\nrecorded in {README.relative_to(REPO)}")


if __name__ == "__main__":
    main()
