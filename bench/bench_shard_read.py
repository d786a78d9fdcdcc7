"""Benchmark: reading our WebDataset shards, against plain tarfile and per-utterance code files.

Workload (built in a temporary folder, removed at the end): `--samples`
utterances (default 2,000) of 5-15 s (uniform) of 16 kHz speech, cut at random
offsets from the committed fixture speech (the LibriSpeech FLAC files of
`tests/data/corpora`, espeak-ng, concatenated and looped) with white noise at
-50 dBFS added (espeak's digital silence would otherwise make the FLAC files
unrealistically small), encoded with `pipelines.audio.encode_flac16`, plus
random uint16 codes at 12.5 per second. `pipelines.shards.write_shards` packs
them into shards of at most `--shard-mb` MB (default 64).

Measured in one run, each reader the fastest of `--rounds` rounds (default
5) twice: warm (the files in the page cache, so CPU cost only) and cold (the
files' pages dropped with `posix_fadvise(POSIX_FADV_DONTNEED)` before each
round, so they come from the disk; directory entries and inodes stay cached,
which favours the many small upstream files):

- whole samples: `webdataset.WebDataset` (raw member bytes, no decoding);
  the same plus decoding (FLAC with soundfile to int16, `decode_codes`,
  `json.loads`); `tarfile` stream iteration reading every member (the
  parsing ceiling); reading the shard files in 1 MiB chunks (the I/O ceiling);
- codes only: the upstream layout, one `<key>_glm4voice.json` per utterance
  holding a JSON list of ints, `json.load` + `np.asarray(uint16)`; against our
  shards through `webdataset` selecting only `.codes.npy` members, and
  through the index (`pipelines.shards.read_member`, an open, a seek and a
  read per utterance; or `read_members`, one open per shard), decoded with
  `np.load` or with `pipelines.shards.decode_codes`.

It prints the tables and writes them to the "Shard reads" section of
`bench/README.md`. Reproduce with:

    .venv/bin/python bench/bench_shard_read.py
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipelines.audio.pcm import encode_flac16, pcm_sha256
from pipelines.shards.reader import read_index, read_member, read_members
from pipelines.shards.writer import ShardSample, write_shards
from schemas.audio import TARGET_SAMPLE_RATE_HZ
from schemas.shards import ShardLimits, ShardSampleMeta, decode_codes, shard_key

README = REPO / "bench" / "README.md"
SECTION_TITLE = "## Shard reads"
FIXTURE_SPEECH = REPO / "tests" / "data" / "corpora" / "librispeech"
CODES_PER_S = 12.5
NOISE_DBFS = -50.0
SOURCE = "bench"
UNIT = "unit-000"


def load_speech_pool() -> np.ndarray:
    """All readable fixture LibriSpeech FLAC audio (16 kHz mono float32), concatenated."""
    pieces = []
    for path in sorted(FIXTURE_SPEECH.rglob("*.flac")):
        try:
            audio, rate_hz = sf.read(path, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError):
            continue  # the fixture corpus holds deliberately broken files
        if rate_hz == TARGET_SAMPLE_RATE_HZ and len(audio):
            pieces.append(audio.mean(axis=1))
    if not pieces:
        raise SystemExit(f"no readable 16 kHz FLAC under {FIXTURE_SPEECH}")
    return np.concatenate(pieces)


def make_samples(count: int, seed: int) -> list[ShardSample]:
    """`count` speech-like utterances of 5-15 s with random codes and plausible metadata."""
    rng = np.random.default_rng(seed)
    pool = load_speech_pool()
    noise_rms = 10 ** (NOISE_DBFS / 20)
    samples = []
    for index in range(count):
        duration_s = float(rng.uniform(5.0, 15.0))
        frames = int(duration_s * TARGET_SAMPLE_RATE_HZ)
        start = int(rng.integers(0, len(pool)))
        picked = np.take(pool, np.arange(start, start + frames), mode="wrap")
        audio = (picked + noise_rms * rng.standard_normal(frames)).astype(np.float32)
        codes = rng.integers(0, 16384, int(duration_s * CODES_PER_S), dtype=np.uint16)
        utterance_id = f"spk{index % 40:03d}/chapter{index % 7}/utt-{index:06d}"
        meta = ShardSampleMeta(
            utterance_id=utterance_id, source=SOURCE, text="a sentence of about this length "
            "spoken in the benchmark", speaker=f"spk{index % 40:03d}", language="en",
            split="train", duration_s=frames / TARGET_SAMPLE_RATE_HZ, snr_db=25.0,
            stnr_snr_db=30.0, clipping_ratio=0.0, silence_ratio=0.1, rms_dbfs=-24.0,
            bandwidth_hz=7900.0, chars_per_s=14.0, n_codes=len(codes),
            pcm_sha256=pcm_sha256(audio), tokenizer_sha256="0" * 64, tokenizer_is_demo=True,
            policy_version="bench",
        )
        samples.append(ShardSample(shard_key(utterance_id), utterance_id, encode_flac16(audio),
                                   codes, meta))
    return samples


def evict(paths: list[Path]) -> None:
    """Drop these files' pages from the page cache (`POSIX_FADV_DONTNEED`; they are synced)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


@dataclass(frozen=True)
class Timing:
    """One reader: items and amount (bytes or codes) read, fastest warm and cold seconds."""

    name: str
    count: int
    amount: int
    warm_s: float
    cold_s: float


def measure(name: str, rounds: int, run: Callable[[], tuple[int, int]],
            files: list[Path]) -> Timing:
    """Fastest of `rounds` calls of `run` with `files` cached (warm) and just evicted (cold)."""
    print(f"timing {name} ...", flush=True)
    run()  # warms the page cache and the imports
    warm_s = cold_s = float("inf")
    result = (0, 0)
    for _ in range(rounds):
        start = time.perf_counter()
        result = run()
        warm_s = min(warm_s, time.perf_counter() - start)
    for _ in range(rounds):
        evict(files)
        start = time.perf_counter()
        run()
        cold_s = min(cold_s, time.perf_counter() - start)
    return Timing(name, result[0], result[1], warm_s, cold_s)


def read_webdataset(urls: str) -> tuple[int, int]:
    """All samples through webdataset, raw bytes."""
    import webdataset as wds

    count = size = 0
    for sample in wds.WebDataset(urls, shardshuffle=False):
        count += 1
        size += len(sample["flac"]) + len(sample["codes.npy"]) + len(sample["json"])
    return count, size


def read_webdataset_decoded(urls: str) -> tuple[int, int]:
    """All samples through webdataset, FLAC decoded to int16, codes and JSON parsed."""
    import webdataset as wds

    count = size = 0
    for sample in wds.WebDataset(urls, shardshuffle=False):
        audio, _ = sf.read(io.BytesIO(sample["flac"]), dtype="int16")
        codes = decode_codes(sample["codes.npy"])
        meta = json.loads(sample["json"])
        count += 1
        size += len(sample["flac"]) + len(sample["codes.npy"]) + len(sample["json"])
        if len(codes) != meta["n_codes"] or not len(audio):
            raise AssertionError(f"{sample['__key__']}: bad read")
    return count, size


def read_tarfile(shards: list[Path]) -> tuple[int, int]:
    """All members through `tarfile` stream iteration (what webdataset does underneath)."""
    members = size = 0
    for path in shards:
        with tarfile.open(path, mode="r|") as tar:
            for info in tar:
                handle = tar.extractfile(info)
                if handle is not None:
                    size += len(handle.read())
                    members += 1
    return members // 3, size


def read_raw(shards: list[Path]) -> tuple[int, int]:
    """The shard files read in 1 MiB chunks: no parsing at all."""
    size = 0
    for path in shards:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                size += len(chunk)
    return 0, size


def write_upstream_codes(samples: list[ShardSample], folder: Path) -> list[Path]:
    """The upstream layout: one `<key>_glm4voice.json` (a JSON list of ints) per utterance."""
    folder.mkdir(parents=True)
    paths = []
    for sample in samples:
        path = folder / f"{sample.key}_glm4voice.json"
        with path.open("w", encoding="utf-8") as handle:
            handle.write(json.dumps(sample.codes.tolist()))
            handle.flush()
            os.fsync(handle.fileno())  # clean pages, so that `evict` can drop them
        paths.append(path)
    return paths


def read_upstream_codes(paths: list[Path]) -> tuple[int, int]:
    """Codes from per-utterance JSON files; returns (utterances, codes)."""
    n_codes = 0
    for path in paths:
        with path.open("rb") as handle:
            codes = np.asarray(json.load(handle), dtype=np.uint16)
        n_codes += len(codes)
    return len(paths), n_codes


def read_codes_webdataset(urls: str) -> tuple[int, int]:
    """Codes from the shards through webdataset, only `.codes.npy` members selected."""
    import webdataset as wds

    count = n_codes = 0
    dataset = wds.WebDataset(urls, shardshuffle=False,
                             select_files=lambda name: name.endswith(".codes.npy"))
    for sample in dataset:
        n_codes += len(decode_codes(sample["codes.npy"]))
        count += 1
    return count, n_codes


def read_codes_index(lake_root: Path, out_dir: Path, how: str) -> tuple[int, int]:
    """Codes from the shards through the index (its loading timed too).

    `how`: "np.load" (`read_member` + `np.load`), "decode" (`read_member` +
    `decode_codes`) or "batched" (`read_members`, one open per shard, + `decode_codes`).
    """
    rows = read_index(out_dir)
    if how == "batched":
        payloads = read_members(lake_root, rows, "codes")
    else:
        payloads = (read_member(lake_root, row, "codes") for row in rows)
    count = n_codes = 0
    for data in payloads:
        if how == "np.load":
            codes = np.load(io.BytesIO(data), allow_pickle=False)
        else:
            codes = decode_codes(data)
        n_codes += len(codes)
        count += 1
    return count, n_codes


def machine() -> str:
    """CPU model and count, memory, OS and Python, for the README."""
    model = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        model = match.group(1).strip() if match else model
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        match = re.search(r"^MemTotal:\s*(\d+) kB", meminfo.read_text(), re.MULTILINE)
        memory = f", {int(match.group(1)) / 2**20:.0f} GiB RAM" if match else ""
    return (f"{model}, {os.cpu_count()} CPUs{memory}; {platform.system()} "
            f"{platform.release()}; Python {platform.python_version()}")


def section(info: dict, whole: list[Timing], codes: list[Timing], command: str) -> str:
    """The README section: setup, the two tables, how to reproduce."""
    mb = 1e6
    lines = [
        SECTION_TITLE,
        "",
        f"{info['samples']:,} utterances of 5-15 s ({info['audio_h']:.2f} h): fixture espeak-ng "
        f"LibriSpeech speech looped, plus white noise at {NOISE_DBFS:.0f} dBFS, 16-bit FLAC "
        f"(`encode_flac16`), random uint16 codes at {CODES_PER_S} per second. "
        f"{info['shards']} shards of at most {info['shard_mb']} MB, "
        f"{info['shard_bytes'] / mb:,.0f} MB in all "
        f"(FLAC at {info['flac_ratio']:.0%} of 16-bit PCM); "
        f"`write_shards` took {info['write_s']:.1f} s "
        f"({info['shard_bytes'] / mb / info['write_s']:,.0f} MB/s). One process; each reader "
        f"the fastest of {info['rounds']} rounds, warm (files in the page cache) and cold "
        "(the files' pages dropped with `posix_fadvise(DONTNEED)` before each round; "
        "directory entries and inodes stay cached).",
        "",
        f"- Machine: {info['machine']}; load average before / after: {info['load']}",
        f"- webdataset {info['webdataset']}, numpy {np.__version__}, "
        f"soundfile {sf.__version__} (libsndfile {sf.__libsndfile_version__})",
        "",
        "Whole samples (MB/s counts member data bytes; the raw read counts file bytes):",
        "",
        "| method | samples | warm s | warm samples/s | warm MB/s | cold s | cold samples/s "
        "| cold MB/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in whole:
        cells = [t.name, f"{t.count:,}" if t.count else "-"]
        for seconds in (t.warm_s, t.cold_s):
            cells += [f"{seconds:.3f}", f"{t.count / seconds:,.0f}" if t.count else "-",
                      f"{t.amount / mb / seconds:,.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Codes only (each utterance's codes as a uint16 array; M codes/s):",
        "",
        "| method | utterances | warm s | warm utt/s | warm M codes/s | cold s | cold utt/s "
        "| cold M codes/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in codes:
        cells = [t.name, f"{t.count:,}"]
        for seconds in (t.warm_s, t.cold_s):
            cells += [f"{seconds:.3f}", f"{t.count / seconds:,.0f}",
                      f"{t.amount / 1e6 / seconds:,.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    wds_raw, wds_decoded, tar_iter, _ = whole
    upstream, wds_codes, index_npload, index_decode, index_batched = codes
    overhead_us = (wds_raw.warm_s - tar_iter.warm_s) / wds_raw.count * 1e6
    overhead = (f"{overhead_us:.0f} µs a sample of its own" if overhead_us >= 1
                else "no measurable cost of its own")
    lines += [
        "",
        "How to read it:",
        "",
        f"- `webdataset` delivers raw samples at {tar_iter.warm_s / wds_raw.warm_s:.0%} of the "
        f"speed of plain `tarfile` iteration warm ({overhead}), "
        "and both parse tar headers far below the I/O ceiling: one reader process is "
        "CPU-bound, not disk-bound.",
        f"- Decoding dominates a training read: FLAC decoding runs at "
        f"{info['audio_h'] * 3600 / wds_decoded.warm_s:,.0f}x real time on one core, "
        f"so the decoded read runs at {wds_raw.warm_s / wds_decoded.warm_s:.0%} of the raw read's "
        "speed.",
        f"- Codes only: through the index (`read_members` + `decode_codes`) the shards give codes "
        f"{upstream.warm_s / index_batched.warm_s:.1f}x as fast as "
        f"the upstream per-utterance JSON files warm and "
        f"{upstream.cold_s / index_batched.cold_s:.1f}x cold, with "
        f"{info['samples'] / info['shards']:,.0f}x fewer files; the upstream cold figure is "
        "flattered by cached directory entries, and object stores or NFS charge per file. "
        f"`np.load` instead of `decode_codes` costs "
        f"{(index_npload.warm_s - index_decode.warm_s) / index_npload.count * 1e6:.0f} µs an "
        "array (it parses the npy header as Python). `webdataset` has to stream every FLAC byte "
        f"to reach the codes ({wds_codes.count / wds_codes.warm_s:,.0f} utterances/s): "
        "codes-only jobs should use the index.",
    ]
    lines += ["", "Reproduce:", "", "```", command, "```", ""]
    return "\n".join(lines)


def write_readme_section(text: str, readme: Path = README) -> None:
    """Replace (or add) this benchmark's section of `bench/README.md`, keeping the others."""
    current = readme.read_text(encoding="utf-8") if readme.exists() else "# Benchmarks\n\n"
    pattern = re.compile(rf"^{re.escape(SECTION_TITLE)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(current):
        current = pattern.sub(lambda _: text + "\n", current, count=1)
    else:
        current = current.rstrip("\n") + "\n\n" + text + "\n"
    readme.write_text(current.rstrip("\n") + "\n", encoding="utf-8")


def main() -> None:
    """Build the workload, time every reader, print the tables, record them in the README."""
    import webdataset

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2000, help="utterances (2000)")
    parser.add_argument("--shard-mb", type=int, default=64, help="shard size bound in MB (64)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the fastest counts (5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-readme", action="store_true", help="print only")
    args = parser.parse_args()

    print(f"building {args.samples} samples ...", flush=True)
    samples = make_samples(args.samples, args.seed)
    with tempfile.TemporaryDirectory(prefix="bench_shard_read.") as tmp:
        lake_root = Path(tmp)
        out_dir = lake_root / "shards" / SOURCE / UNIT
        start = time.perf_counter()
        rows = write_shards(samples, out_dir, ShardLimits(max_bytes=args.shard_mb * 10**6),
                            source=SOURCE, unit=UNIT, lake_root=lake_root)
        write_s = time.perf_counter() - start
        shards = sorted(out_dir.glob("shard-*.tar"))
        urls = f"{out_dir}/shard-{{000000..{len(shards) - 1:06d}}}.tar"
        upstream = write_upstream_codes(samples, lake_root / "upstream")
        audio_s = sum(s.meta.duration_s for s in samples)
        info = {
            "samples": len(rows), "shards": len(shards), "shard_mb": args.shard_mb,
            "shard_bytes": sum(p.stat().st_size for p in shards), "write_s": write_s,
            "audio_h": audio_s / 3600,
            "flac_ratio": sum(len(s.flac) for s in samples) / (audio_s * 16000 * 2),
            "rounds": args.rounds, "machine": machine(), "webdataset": webdataset.__version__,
        }
        del samples
        load_before = os.getloadavg()[0]

        index = [out_dir / "index.parquet"]
        whole = [
            measure("`webdataset.WebDataset`, raw bytes", args.rounds,
                    lambda: read_webdataset(urls), shards),
            measure("`webdataset` + decode (FLAC → int16, codes, JSON)", args.rounds,
                    lambda: read_webdataset_decoded(urls), shards),
            measure("`tarfile` stream iteration (parsing ceiling)", args.rounds,
                    lambda: read_tarfile(shards), shards),
            measure("file read, 1 MiB chunks (I/O ceiling)", args.rounds,
                    lambda: read_raw(shards), shards),
        ]
        codes = [
            measure("upstream: one `<key>_glm4voice.json` per utterance", args.rounds,
                    lambda: read_upstream_codes(upstream), upstream),
            measure("shards via `webdataset`, `.codes.npy` selected, `decode_codes`",
                    args.rounds, lambda: read_codes_webdataset(urls), shards),
            measure("shards via index, `read_member` + `np.load`", args.rounds,
                    lambda: read_codes_index(lake_root, out_dir, "np.load"), shards + index),
            measure("shards via index, `read_member` + `decode_codes`", args.rounds,
                    lambda: read_codes_index(lake_root, out_dir, "decode"), shards + index),
            measure("shards via index, `read_members` + `decode_codes`", args.rounds,
                    lambda: read_codes_index(lake_root, out_dir, "batched"), shards + index),
        ]

    info["load"] = f"{load_before:.2f} / {os.getloadavg()[0]:.2f}"
    command = ".venv/bin/python bench/bench_shard_read.py"
    if sys.argv[1:]:
        command += " " + " ".join(sys.argv[1:])
    text = section(info, whole, codes, command)
    print()
    print(text)
    if not args.no_readme:
        write_readme_section(text)
        print(f"recorded in {README.relative_to(REPO)}")


if __name__ == "__main__":
    main()
