"""Benchmark: inventory of a million-segment `WenetSpeech.json`, streamed vs `json.load`.

Writes a synthetic `WenetSpeech.json` (default 10,000 recordings x 100
segments, the real corpus's fields and text lengths; generated as a stream,
never held in memory), then measures in separate subprocesses, so that each
peak RSS is that of one method alone:

- `voxlake`: `pipelines.ingest.inventory_source` with a `wenetspeech` source
  and a temporary lake (streams the file with ijson, writes the unit plans);
- `json.load`: the baseline, loading the whole file and counting segments.

It prints a table and writes the figures to the "WenetSpeech inventory"
section of `bench/README.md`. Reproduce with:

    .venv/bin/python bench/bench_wenetspeech_inventory.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "bench" / "README.md"
SECTION_TITLE = "## WenetSpeech inventory"
RSS_LIMIT_MB = 1024

# Real subsets per training segment: S ⊂ M ⊂ L, plus the weakly labelled W.
TRAIN_SUBSETS = (["L"], ["L", "M"], ["L", "M", "S"], ["W"])
SPLIT_BLOCKS = (  # (split, folder, subsets, share of recordings), in file order
    ("train", "youtube", None, 0.55),
    ("train", "podcast", None, 0.40),
    ("dev", "third_party", ["DEV"], 0.02),
    ("test_net", "youtube", ["TEST_NET"], 0.02),
    ("test_meeting", "third_party", ["TEST_MEETING"], 0.01),
)
HANZI = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细引听该铁价严龙飞"  # noqa: E501
FILLERS = (" ", "\u00a0", "Ω")  # the corpus's text quirks, in a small share of texts


def _text(rng: random.Random) -> str:
    # WenetSpeech segments average about 12 characters; a few are long.
    length = max(2, int(rng.lognormvariate(2.4, 0.5)))
    chars = rng.choices(HANZI, k=length)
    if rng.random() < 0.05:
        chars.insert(rng.randrange(len(chars)), rng.choice(FILLERS))
    return "".join(chars)


def _aid(rng: random.Random, index: int, source: str) -> str:
    letter = "Y" if source == "youtube" else "X"
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
    return f"{letter}{index:010d}_{''.join(rng.choices(alphabet, k=11))}"


def generate(path: Path, n_audios: int, segments_per_audio: int, seed: int = 0) -> int:
    """Write a synthetic `WenetSpeech.json` one recording at a time; return its size in bytes."""
    rng = random.Random(seed)
    plan: list[tuple[str, str, list[str] | None]] = []
    for split, folder, subsets, share in SPLIT_BLOCKS:
        plan.extend([(split, folder, subsets)] * max(1, round(share * n_audios)))
    plan = plan[:n_audios]
    with path.open("w", encoding="utf-8") as out:
        out.write('{\n "dataset": "WenetSpeech",\n "language": "Chinese Mandarin",\n')
        out.write(' "version": "v1.0-bench",\n "description": "synthetic benchmark file",\n')
        out.write(' "audios": [\n')
        for index, (split, folder, fixed_subsets) in enumerate(plan):
            aid = _aid(rng, index, folder)
            segments = []
            cursor = rng.uniform(0.0, 5.0)
            for s_index in range(segments_per_audio):
                begin = round(cursor, 2)
                end = round(begin + rng.uniform(1.0, 12.0), 2)
                cursor = end + rng.uniform(0.1, 3.0)
                subsets = fixed_subsets or rng.choice(TRAIN_SUBSETS)
                segments.append(
                    {
                        "sid": f"{aid}_S{s_index:05d}",
                        "confidence": 1.0 if subsets != ["W"] else round(rng.uniform(0.6, 1), 2),
                        "begin_time": begin,
                        "end_time": end,
                        "subsets": subsets,
                        "text": _text(rng),
                    }
                )
            audio: dict[str, object] = {
                "aid": aid,
                "duration": round(cursor + rng.uniform(0.0, 10.0), 2),
                "md5": f"{rng.getrandbits(128):032x}",
                "path": f"audio/{split}/{folder}/B{index // 1000:05d}/{aid}.opus",
                "source": folder if folder != "third_party" else "third_party",
                "tags": [rng.choice(["drama", "news", "vlog", "talk", "sports", "edu"])],
                "url": f"https://example.com/watch?v={aid[-11:]}",
            }
            if rng.random() < 0.3:
                audio["batch_id"] = f"B{index // 1000:05d}"
            audio["segments"] = segments
            separator = ",\n" if index < len(plan) - 1 else "\n"
            out.write("  " + json.dumps(audio, ensure_ascii=False) + separator)
        out.write(' ],\n "notes": "written by bench/bench_wenetspeech_inventory.py"\n}\n')
    return path.stat().st_size


def _peak_rss_mb() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_inventory(corpus_dir: Path, lake_dir: Path) -> dict[str, float]:
    """Run voxlake's inventory of `corpus_dir` (in this process) and report rows/s and RSS."""
    from pipelines.lake.paths import Lake
    from pipelines.steps.inventory import inventory_source
    from schemas import SourceConfig, UnitLimits

    source = SourceConfig(name="wenet", kind="wenetspeech", path=str(corpus_dir))
    rss_before = _peak_rss_mb()
    start = time.perf_counter()
    plans = inventory_source(source, corpus_dir, Lake(lake_dir), UnitLimits())
    seconds = time.perf_counter() - start
    return {
        "rows": sum(p.n_inputs for p in plans),
        "units": len(plans),
        "seconds": seconds,
        "rss_after_imports_mb": rss_before,
        "peak_rss_mb": _peak_rss_mb(),
    }


def measure_json_load(json_path: Path) -> dict[str, float]:
    """Load the whole file with `json.load` and count segments: the naive baseline."""
    rss_before = _peak_rss_mb()
    start = time.perf_counter()
    with json_path.open(encoding="utf-8") as handle:
        document = json.load(handle)
    rows = sum(len(audio["segments"]) for audio in document["audios"])
    seconds = time.perf_counter() - start
    return {
        "rows": rows,
        "seconds": seconds,
        "rss_after_imports_mb": rss_before,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _run_child(method: str, corpus_dir: Path, lake_dir: Path) -> dict[str, float]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", method,
               "--workdir", str(corpus_dir), "--lake", str(lake_dir)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{method} run failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        if match:
            cpu = match.group(1).strip()
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        match = re.search(r"^MemTotal:\s*(\d+) kB", meminfo.read_text(), re.MULTILINE)
        if match:
            memory = f", {int(match.group(1)) / 1024 / 1024:.0f} GiB RAM"
    return (f"{cpu}, {os.cpu_count()} CPUs{memory}; {platform.system()} "
            f"{platform.release()}; Python {platform.python_version()}")


def _ijson_backend() -> str:
    from pipelines.sources.wenetspeech import _ijson_backend as backend

    return backend().__name__.rsplit(".", 1)[-1]


def _section(results: dict[str, dict[str, float]], size_mb: dict[str, float],
             args: argparse.Namespace, generate_s: float) -> str:
    inv, base = results["voxlake"], results["json.load"]
    met = "met" if inv["peak_rss_mb"] < RSS_LIMIT_MB else "NOT met"
    lines = [
        SECTION_TITLE,
        "",
        f"Inventory of a synthetic `WenetSpeech.json`: {args.audios:,} recordings x "
        f"{args.segments_per_audio} segments = {int(inv['rows']):,} segments, "
        f"{size_mb['voxlake']:,.0f} MB (generated in {generate_s:.0f} s). Each method runs in "
        "its own subprocess; peak RSS is `ru_maxrss` of that process, imports included. "
        "The voxlake run includes writing every unit's inventory JSONL to the lake.",
        "",
        f"- Machine: {_machine()}",
        f"- ijson backend: `{_ijson_backend()}`; default unit limits "
        f"({int(inv['units'])} units written)",
        "",
        "| method | segments | file | seconds | rows/s | RSS after imports | peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    labels = {
        "voxlake": "voxlake inventory (ijson stream)",
        "json.load": "`json.load` + count (baseline)",
        "voxlake-scale": "voxlake inventory, larger file",
    }
    for name, r in results.items():
        lines.append(
            f"| {labels[name]} | {int(r['rows']):,} | {size_mb[name]:,.0f} MB | "
            f"{r['seconds']:.1f} | {r['rows'] / r['seconds']:,.0f} | "
            f"{r['rss_after_imports_mb']:,.0f} MB | {r['peak_rss_mb']:,.0f} MB |"
        )
    lines += [
        "",
        f"Requirement, inventory peak RSS < {RSS_LIMIT_MB} MB: {met} "
        f"({inv['peak_rss_mb']:,.0f} MB; `json.load` needs {base['peak_rss_mb']:,.0f} MB "
        "just to count).",
    ]
    if "voxlake-scale" in results:
        big = results["voxlake-scale"]
        per_million = (big["peak_rss_mb"] - inv["peak_rss_mb"]) / (
            (big["rows"] - inv["rows"]) / 1e6
        )
        lines += [
            "",
            "The connector holds one recording at a time, so what still grows with the "
            f"file is about {per_million:,.0f} MB per million segments: the unit planner "
            "(`pipelines/units.py`) keeps every id it has seen, to mark `duplicate_id`.",
        ]
    command = ".venv/bin/python bench/bench_wenetspeech_inventory.py"
    if args.audios != 10_000:
        command += f" --audios {args.audios}"
    if args.segments_per_audio != 100:
        command += f" --segments-per-audio {args.segments_per_audio}"
    if args.scale_audios:
        command += f" --scale-audios {args.scale_audios}"
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
    """Generate the file, measure both methods in subprocesses, print and record the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, help="folder for the synthetic corpus (kept)")
    parser.add_argument("--audios", type=int, default=10_000)
    parser.add_argument("--segments-per-audio", type=int, default=100)
    parser.add_argument("--scale-audios", type=int, default=0,
                        help="also run the inventory on a file this many recordings long, "
                        "to show how peak RSS grows with the file")
    parser.add_argument("--no-readme", action="store_true", help="print only")
    parser.add_argument("--child", choices=["voxlake", "json.load"], help=argparse.SUPPRESS)
    parser.add_argument("--lake", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        if args.child == "voxlake":
            result = measure_inventory(args.workdir, args.lake)
        else:
            result = measure_json_load(args.workdir / "WenetSpeech.json")
        print(json.dumps(result))
        return

    with tempfile.TemporaryDirectory(prefix="bench_wenet_") as tmp:
        corpus_dir = args.workdir or Path(tmp) / "wenetspeech"
        corpus_dir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        size_bytes = generate(corpus_dir / "WenetSpeech.json", args.audios,
                              args.segments_per_audio)
        generate_s = time.perf_counter() - start
        print(f"wrote {corpus_dir / 'WenetSpeech.json'} ({size_bytes / 1e6:,.0f} MB) "
              f"in {generate_s:.0f} s", flush=True)
        results: dict[str, dict[str, float]] = {}
        size_mb: dict[str, float] = {}
        for method in ("voxlake", "json.load"):
            results[method] = _run_child(method, corpus_dir, Path(tmp) / f"lake-{method}")
            size_mb[method] = size_bytes / 1e6
            print(f"{method}: {results[method]}", flush=True)
        if args.scale_audios:
            scale_dir = Path(tmp) / "wenetspeech-scale"
            scale_dir.mkdir()
            scale_bytes = generate(scale_dir / "WenetSpeech.json", args.scale_audios,
                                   args.segments_per_audio, seed=1)
            results["voxlake-scale"] = _run_child("voxlake", scale_dir, Path(tmp) / "lake-scale")
            size_mb["voxlake-scale"] = scale_bytes / 1e6
            print(f"voxlake (larger file): {results['voxlake-scale']}", flush=True)
    section = _section(results, size_mb, args, generate_s)
    print()
    print(section)
    if not args.no_readme:
        write_readme_section(section)
        print(f"recorded in {README.relative_to(REPO)}")


if __name__ == "__main__":
    main()
