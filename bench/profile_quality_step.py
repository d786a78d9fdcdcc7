"""Profile the manifest and quality steps in-process, per hour of audio, phase by phase.

The marginal cost of `voxlake run` per hour of audio is the manifest step and the
quality step (decode once → mono → 16 kHz → 16-bit PCM → model-free measures →
policy → FLAC + JSON audio shards and their index → the decisions' Parquet). This
script times those two steps called directly (no Dagster, no subprocesses), on the
1 h corpora of `bench/bench_vs_lhotse.py` (generated with its functions, or reused
from its cache under `--work-dir`), with every BLAS/OpenMP/torch pool at one thread:

1. a fresh project with one source (as `bench_vs_lhotse.make_project` builds it:
   `units.max_utterances` = `--unit-utterances`), its inventory and its manifests;
2. `--repeat` timed rounds of the manifest step (`build_manifest` of every unit)
   and of the quality step (`assess_unit` of every unit, its stored decisions and
   audio shards removed first, so every round decodes and writes everything);
   best and median, wall and CPU seconds, per hour of audio;
3. one instrumented round: the functions the step calls are wrapped by timers
   (decode, mono, resample, pcm16, the measures' shared pass and each measure, sha256,
   FLAC encode or passthrough, JSON, pydantic, tar and index writes, Parquet, polars;
   `PHASES`, names that do not exist in the code imported are skipped, so an older
   checkout can be profiled too), each phase reported by its exclusive time
   (time inside it minus time inside the other timed phases it calls), so that the
   phases and "unattributed" add up to the round's total;
4. one cProfile round, top entries by own time and by cumulative time.

    .venv/bin/python bench/profile_quality_step.py                       # both corpora
    .venv/bin/python bench/profile_quality_step.py --corpora emilia --repeat 5
    .venv/bin/python bench/profile_quality_step.py --code /tmp/voxlake-base   # another tree
    .venv/bin/python bench/profile_quality_step.py --json out.json --no-profile

`--code DIR` imports `pipelines`, `quality` and `schemas` from another checkout (say a
`git archive HEAD | tar -x -C /tmp/voxlake-base` copy), so one shell can time two
versions interleaved (run them alternately, compare the best CPU figures: other work
on the machine inflates wall time). Nothing is written outside `--work-dir`.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse
import cProfile
import importlib
import io
import json
import pstats
import shutil
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
DEFAULT_WORK_DIR = Path("/tmp/voxlake-bench-vs-lhotse")  # bench_vs_lhotse's, to share its cache
CORPORA = ("librispeech", "emilia", "wenetspeech")

# (phase label, module, attribute): each attribute is replaced by a timing wrapper while
# the instrumented round runs. Missing attributes (another version of the code) are
# skipped. Order is the report's order.
PHASES: tuple[tuple[str, str, str], ...] = (
    ("manifest read (polars)", "pipelines.steps.quality", "unit_manifest"),
    ("stored decisions / index read", "pipelines.steps.quality", "stored_decisions"),
    ("open (tar member / file)", "pipelines.audio.ref", "AudioOpener.open"),
    ("decode", "pipelines.audio.prepare", "decode"),
    ("mono", "pipelines.audio.prepare", "to_mono"),
    ("resample (soxr)", "pipelines.audio.prepare", "resample"),
    ("pcm16", "pipelines.steps.quality", "pcm16"),
    ("pcm16", "pipelines.audio.pcm", "pcm16"),
    ("measure (own work)", "pipelines.steps.quality", "measure"),
    ("measure (own work)", "pipelines.steps.quality", "measure_pcm16"),
    ("  measure: non-finite", "quality.measures", "non_finite_count"),
    ("  measure: shared pass (sums, energies)", "quality.signal", "Signal._sums.func"),
    ("  measure: WADA-SNR", "quality.measures", "wada_snr_db"),
    ("  measure: WADA-SNR", "quality.measures", "wada_snr_db_of"),
    ("  measure: STNR", "quality.measures", "stnr_snr_db"),
    ("  measure: STNR", "quality.measures", "stnr_snr_db_of"),
    ("  measure: clipping", "quality.measures", "clipping"),
    ("  measure: clipping", "quality.measures", "clipping_of"),
    ("  measure: silence", "quality.measures", "silence"),
    ("  measure: silence", "quality.measures", "silence_of"),
    ("  measure: rms", "quality.measures", "rms_dbfs"),
    ("  measure: rms", "quality.measures", "rms_dbfs_of"),
    ("  measure: peak", "quality.measures", "peak_dbfs"),
    ("  measure: peak", "quality.measures", "peak_dbfs_of"),
    ("  measure: dc", "quality.measures", "dc_offset"),
    ("  measure: dc", "quality.measures", "dc_offset_of"),
    ("  measure: bandwidth", "quality.measures", "effective_bandwidth_hz"),
    ("  measure: bandwidth", "quality.measures", "effective_bandwidth_hz_of"),
    ("  measure: chars/s", "quality.measures", "chars_per_second"),
    ("sha256 (pcm)", "pipelines.steps.quality", "bytes_sha256"),
    ("FLAC encode", "pipelines.steps.quality", "flac16_of_pcm"),
    ("FLAC passthrough (parse, CRC)", "pipelines.audio.prepare", "passthrough_flac"),
    ("read source file bytes", "pathlib", "Path.read_bytes"),
    ("JSON meta", "pipelines.steps.quality", "encode_meta"),
    ("judge (policy)", "pipelines.steps.quality", "judge"),
    ("QualityRecord validate (pydantic)", "schemas.quality", "QualityRecord.model_validate"),
    ("QualityRecord dump (pydantic)", "schemas.quality", "QualityRecord.model_dump"),
    ("AudioSampleMeta (pydantic)", "schemas.shards", "AudioSampleMeta.model_dump"),
    ("tar write", "pipelines.shards.writer", "_write_one_shard"),
    ("shard plan (headers)", "pipelines.shards.writer", "_encode"),
    ("index rows (pydantic)", "pipelines.shards.writer", "audio_index_row"),
    ("index parquet write", "pipelines.shards.writer", "write_parquet_atomic"),
    ("index read back", "pipelines.steps.quality", "read_index"),
    ("decisions parquet write", "pipelines.steps.quality", "write_parquet_atomic"),
    ("arrow table (from_pylist)", "pyarrow", "Table.from_pylist"),
    ("polars from_arrow", "pipelines.steps.quality", "pl.from_arrow"),
    ("file sha256", "pipelines.steps.quality", "file_sha256"),
)
MANIFEST_PHASES: tuple[tuple[str, str, str], ...] = (
    ("inventory items read", "pipelines.steps.manifest", "read_unit_items"),
    ("header probe", "pipelines.steps.manifest", "probe_header"),
    ("wav truncation check", "pipelines.steps.manifest", "wav_truncation"),
    ("open (tar member / file)", "pipelines.audio.ref", "AudioOpener.open"),
    ("path safety", "pipelines.audio.ref", "AudioOpener.path"),
    ("ManifestRecord validate (pydantic)", "schemas", "ManifestRecord.model_validate"),
    ("ManifestRecord dump (pydantic)", "schemas", "ManifestRecord.model_dump"),
    ("arrow table (from_pylist)", "pyarrow", "Table.from_pylist"),
    ("manifest parquet write", "pipelines.steps.manifest", "write_parquet_atomic"),
)


# ============================================================================ timers


class PhaseTimer:
    """Exclusive wall time per phase label: a stack subtracts the time of nested phases."""

    def __init__(self) -> None:
        self.exclusive: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list[float]] = []  # per active phase: [start, time in children]

    def wrap(self, label: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            frame = [time.perf_counter(), 0.0]
            self._stack.append(frame)
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - frame[0]
                self._stack.pop()
                self.exclusive[label] += elapsed - frame[1]
                self.calls[label] += 1
                if self._stack:
                    self._stack[-1][1] += elapsed

        timed.__wrapped__ = function  # type: ignore[attr-defined]
        return timed


def _resolve(module_name: str, attribute: str) -> tuple[Any, str, Any] | None:
    """(owner object, attribute name, current value) or None when it does not exist."""
    try:
        owner: Any = importlib.import_module(module_name)
    except ImportError:
        return None
    *path, last = attribute.split(".")
    for part in path:
        owner = getattr(owner, part, None)
        if owner is None:
            return None
    if last not in vars(owner) and not hasattr(owner, last):
        return None
    return owner, last, getattr(owner, last)


class instrumented:
    """Patch every phase function with a timer for the duration of the block."""

    def __init__(self, timer: PhaseTimer, phases: tuple[tuple[str, str, str], ...]) -> None:
        self.timer, self.phases = timer, phases
        self._undo: list[tuple[Any, str, Any, bool]] = []

    def __enter__(self) -> PhaseTimer:
        seen: set[tuple[int, str]] = set()
        for label, module_name, attribute in self.phases:
            found = _resolve(module_name, attribute)
            if found is None:
                continue
            owner, name, value = found
            if (id(owner), name) in seen:
                continue
            seen.add((id(owner), name))
            had_own = name in vars(owner)
            raw = vars(owner).get(name, value)
            if isinstance(raw, classmethod):
                wrapped: Any = classmethod(self.timer.wrap(label, raw.__func__))
            elif isinstance(raw, staticmethod):
                wrapped = staticmethod(self.timer.wrap(label, raw.__func__))
            else:
                wrapped = self.timer.wrap(label, value)
            try:
                setattr(owner, name, wrapped)
            except (TypeError, AttributeError):  # a builtin type's attribute
                continue
            self._undo.append((owner, name, raw, had_own))
        return self.timer

    def __exit__(self, *exc: object) -> None:
        for owner, name, raw, had_own in reversed(self._undo):
            if had_own:
                setattr(owner, name, raw)
            else:
                delattr(owner, name)


# ============================================================================ the work


def ensure_corpus(work_dir: Path, corpus: str, hours: float, seed: int) -> tuple[Path, dict]:
    sys.path.insert(0, str(BENCH))
    import bench_vs_lhotse

    args = argparse.Namespace(hours=hours, seed=seed, wenet_recording_minutes=10.0)
    return bench_vs_lhotse.ensure_corpus(work_dir, corpus, args)


def fresh_project(directory: Path, corpus: str, folder: Path, info: dict, unit_utterances: int):
    from pipelines.project import init_project
    from schemas import ProjectConfig, SourceConfig

    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
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
    return init_project(directory, config)


def run_manifests(project, source, plans) -> None:
    from pipelines.steps.manifest import build_manifest

    for plan in plans:
        build_manifest(source, project.directory, project.lake, plan.unit, plan.n_inputs)


def clear_quality(project, source) -> None:
    """Remove the stored decisions and the audio shards, so the next round decodes again."""
    shutil.rmtree(project.lake.root / "quality" / source.name, ignore_errors=True)
    shutil.rmtree(project.lake.root / "shards" / source.name, ignore_errors=True)


def run_quality(project, source, plans) -> list:
    from pipelines.steps.quality import assess_unit

    return [assess_unit(project, source, plan.unit) for plan in plans]


def timed(function: Callable[[], Any]) -> tuple[float, float, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def profile_top(function: Callable[[], Any], top: int) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    function()
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs()
    out.write("--- by own time (tottime)\n")
    stats.sort_stats("tottime").print_stats(top)
    out.write("--- by cumulative time\n")
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def profile_corpus(corpus: str, args: argparse.Namespace) -> dict[str, Any]:
    from pipelines.steps.inventory import inventory_source

    folder, info = ensure_corpus(args.work_dir, corpus, args.hours, args.seed)
    hours = info["audio_s"] / 3600.0
    project = fresh_project(
        args.work_dir / "profile-quality" / corpus, corpus, folder, info, args.unit_utterances
    )
    source = project.config.sources[0]
    limits = project.config.unit_limits(source)
    inventory_s, _, plans = timed(
        lambda: inventory_source(source, project.directory, project.lake, limits)
    )
    run_manifests(project, source, plans)  # warm-up: imports, caches, page cache
    clear_quality(project, source)
    summaries = run_quality(project, source, plans)  # warm-up
    accepted = sum(s.n_accepted for s in summaries)
    rows = sum(s.n_manifest_rows for s in summaries)

    rounds: dict[str, list[tuple[float, float]]] = {"manifest": [], "quality": []}
    for _ in range(args.repeat):
        wall, cpu, _ = timed(lambda: run_manifests(project, source, plans))
        rounds["manifest"].append((wall, cpu))
        clear_quality(project, source)
        wall, cpu, _ = timed(lambda: run_quality(project, source, plans))
        rounds["quality"].append((wall, cpu))

    breakdown: dict[str, dict[str, Any]] = {}
    if not args.no_breakdown:
        for step, phases, work in (
            ("manifest", MANIFEST_PHASES, lambda: run_manifests(project, source, plans)),
            ("quality", PHASES, lambda: run_quality(project, source, plans)),
        ):
            clear_quality(project, source)
            timer = PhaseTimer()
            with instrumented(timer, phases):
                total, _, _ = timed(work)
            breakdown[step] = {
                "total_s": total,
                "phases": {k: (v, timer.calls[k]) for k, v in timer.exclusive.items()},
            }

    profile_text = ""
    if not args.no_profile:
        clear_quality(project, source)
        profile_text = "=== quality step\n" + profile_top(
            lambda: run_quality(project, source, plans), args.top
        )
        profile_text += "=== manifest step\n" + profile_top(
            lambda: run_manifests(project, source, plans), args.top
        )
    return {
        "corpus": corpus,
        "format": info["format"],
        "hours": hours,
        "units": len(plans),
        "rows": rows,
        "accepted": accepted,
        "inventory_s": inventory_s,
        "rounds": rounds,
        "breakdown": breakdown,
        "profile": profile_text,
        "threads_torch": _torch_threads(),
        "torch_imported": "torch" in sys.modules,
    }


def _torch_threads() -> int | None:
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    torch.set_num_threads(1)
    return int(torch.get_num_threads())


# ============================================================================ report


def per_hour(seconds: float, hours: float) -> str:
    return f"{seconds / hours:6.3f}"


def report(result: dict[str, Any]) -> None:
    hours = result["hours"]
    print(
        f"\n##### {result['corpus']}: {result['format']}, {hours:.3f} h, {result['units']} units, "
        f"{result['rows']} rows ({result['accepted']} accepted); torch imported: "
        f"{result['torch_imported']}"
    )
    print(f"inventory (once): {result['inventory_s']:.3f} s")
    print("step       best wall s/h  median wall s/h  best CPU s/h  median CPU s/h  (rounds)")
    for step, values in result["rounds"].items():
        walls = [w for w, _ in values]
        cpus = [c for _, c in values]
        print(
            f"{step:<10} {per_hour(min(walls), hours):>13}  "
            f"{per_hour(statistics.median(walls), hours):>15}  "
            f"{per_hour(min(cpus), hours):>12}  {per_hour(statistics.median(cpus), hours):>14}"
            f"  ({len(values)})"
        )
    both = [
        m[0] + q[0]
        for m, q in zip(result["rounds"]["manifest"], result["rounds"]["quality"], strict=True)
    ]
    print(f"manifest + quality, best round: {per_hour(min(both), hours)} s/h (wall)")
    for step, data in result["breakdown"].items():
        total = data["total_s"]
        print(f"\n{step} step, instrumented round ({total / hours:.3f} s/h wall, timers included):")
        print(f"  {'phase':<40} {'s/h':>7} {'share':>6} {'calls':>7}")
        labels = [label for label, _, _ in (PHASES if step == "quality" else MANIFEST_PHASES)]
        ordered = list(dict.fromkeys(labels))
        attributed = 0.0
        for label in ordered:
            if label not in data["phases"]:
                continue
            seconds, calls = data["phases"][label]
            attributed += seconds
            print(f"  {label:<40} {seconds / hours:7.3f} {100 * seconds / total:5.1f}% {calls:7d}")
        rest = total - attributed
        share = 100 * rest / total
        print(f"  {'unattributed (loops, glue)':<40} {rest / hours:7.3f} {share:5.1f}%")
    if result["profile"]:
        print()
        print(result["profile"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpora", default=",".join(CORPORA))
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds (default 3)")
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--unit-utterances", type=int, default=100)
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    parser.add_argument("--code", type=Path, help="import voxlake from this checkout instead")
    parser.add_argument("--top", type=int, default=25, help="cProfile entries shown")
    parser.add_argument("--no-breakdown", action="store_true")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    code = (args.code or REPO).resolve()
    sys.path.insert(0, str(code))
    # Imported before bench_vs_lhotse (which puts this checkout first on sys.path).
    import pipelines
    import quality
    import schemas

    del quality, schemas

    print(f"voxlake code from {Path(pipelines.__file__).resolve().parent.parent}")
    results = []
    for corpus in [c for c in args.corpora.split(",") if c]:
        if corpus not in CORPORA:
            parser.error(f"unknown corpus {corpus!r} (known: {', '.join(CORPORA)})")
        result = profile_corpus(corpus, args)
        report(result)
        results.append(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
