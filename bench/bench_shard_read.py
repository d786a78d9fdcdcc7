"""Benchmark: reading our WebDataset shards, against plain tarfile and per-utterance code files.

Workload (built in a temporary folder, removed at the end): `--samples`
utterances (default 2,000) of 5-15 s (uniform) of 16 kHz speech, cut at random
offsets from the committed fixture speech (the LibriSpeech FLAC files of
`tests/data/corpora`, espeak-ng, concatenated and looped) with white noise at
-50 dBFS added (espeak's digital silence would otherwise make the FLAC files
unrealistically small), encoded with `pipelines.audio.encode_flac16`, plus
random uint16 codes at 12.5 per second. `pipelines.shards.writer.write_shards`
packs them as the pipeline does: audio shards (`<key>.flac` + `<key>.json`) of
at most `--shard-mb` MB (default 64), and code shards (`<key>.codes.npy` +
`<key>.json`) cut at the same boundaries.

Measured in one run, each reader the fastest of `--rounds` rounds (default
5) twice: warm (the files in the page cache, so CPU cost only) and cold (the
files' pages dropped with `posix_fadvise(POSIX_FADV_DONTNEED)` before each
round, so they come from the disk; directory entries and inodes stay cached,
which favours the many small upstream files):

- audio shards: `webdataset.WebDataset` (raw member bytes, no decoding); the
  same plus decoding (FLAC with soundfile to int16, `json.loads`); `tarfile`
  stream iteration reading every member (the parsing ceiling); reading the
  shard files in 1 MiB chunks (the I/O ceiling); and audio joined with codes
  by key (`pipelines.shards.joined.iter_joined`, both tars walked in lockstep);
- codes only (what training reads): the upstream layout, one
  `<key>_glm4voice.json` per utterance holding a JSON list of ints,
  `json.load` + `np.asarray(uint16)`; against our code shards through
  `webdataset` (as the trainer streams them), and through the code index
  (`pipelines.shards.reader.read_member`, an open, a seek and a read per
  utterance; or `read_members`, one open per shard), decoded with `np.load` or
  with `schemas.shards.decode_codes`.

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
from pipelines.lake.paths import Lake
from pipelines.shards.joined import iter_joined
from pipelines.shards.reader import read_code_index, read_member, read_members
from pipelines.shards.writer import PlacedSample, ShardField, ShardSample, encode_meta, write_shards
from schemas.audio import TARGET_SAMPLE_RATE_HZ
from schemas.shards import (
    AUDIO_MEMBERS,
    AUDIO_SHARD_PREFIX,
    CODE_INDEX_ARROW_SCHEMA,
    CODE_MEMBERS,
    CODE_SHARD_PREFIX,
    SHARD_INDEX_ARROW_SCHEMA,
    AudioSampleMeta,
    CodeIndexRow,
    CodeSampleMeta,
    ShardIndexRow,
    ShardLimits,
    decode_codes,
    encode_codes,
    shard_key,
)

README = REPO / "bench" / "README.md"
SECTION_TITLE = "## Shard reads"
FIXTURE_SPEECH = REPO / "tests" / "data" / "corpora" / "librispeech"
CODES_PER_S = 12.5
NOISE_DBFS = -50.0
SOURCE = "bench"
UNIT = "unit-000"
TOKENIZER_SHA256 = "0" * 64
AUDIO_FIELD = ShardField(AUDIO_SHARD_PREFIX, AUDIO_MEMBERS)
CODE_FIELD = ShardField(CODE_SHARD_PREFIX, CODE_MEMBERS)


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


@dataclass(frozen=True)
class Utterance:
    """One benchmark utterance: its audio shard sample, its code shard sample, its codes."""

    audio: ShardSample
    codes: ShardSample
    code_values: np.ndarray
    duration_s: float
    pcm_sha256: str

    @property
    def key(self) -> str:
        return self.audio.key


def make_samples(count: int, seed: int) -> list[Utterance]:
    """`count` speech-like utterances of 5-15 s with random codes and plausible metadata."""
    rng = np.random.default_rng(seed)
    pool = load_speech_pool()
    noise_rms = 10 ** (NOISE_DBFS / 20)
    made = []
    for index in range(count):
        duration_s = float(rng.uniform(5.0, 15.0))
        frames = int(duration_s * TARGET_SAMPLE_RATE_HZ)
        start = int(rng.integers(0, len(pool)))
        picked = np.take(pool, np.arange(start, start + frames), mode="wrap")
        audio = (picked + noise_rms * rng.standard_normal(frames)).astype(np.float32)
        codes = rng.integers(0, 16384, int(duration_s * CODES_PER_S), dtype=np.uint16)
        utterance_id = f"spk{index % 40:03d}/chapter{index % 7}/utt-{index:06d}"
        common = dict(
            utterance_id=utterance_id, source=SOURCE, text="a sentence of about this length "
            "spoken in the benchmark", speaker=f"spk{index % 40:03d}", language="en",
            split="train", duration_s=frames / TARGET_SAMPLE_RATE_HZ, pcm_sha256=pcm_sha256(audio),
        )
        audio_meta = AudioSampleMeta(
            **common, snr_db=25.0, stnr_snr_db=30.0, clipping_ratio=0.0, silence_ratio=0.1,
            rms_dbfs=-24.0, bandwidth_hz=7900.0, chars_per_s=14.0,
        )
        code_meta = CodeSampleMeta(
            **common, n_codes=len(codes), tokenizer_sha256=TOKENIZER_SHA256,
            tokenizer_is_demo=True,
        )
        key = shard_key(utterance_id)
        made.append(Utterance(
            ShardSample(key, utterance_id, (encode_flac16(audio), encode_meta(audio_meta))),
            ShardSample(key, utterance_id, (encode_codes(codes), encode_meta(code_meta))),
            codes, audio_meta.duration_s, audio_meta.pcm_sha256,
        ))
    return made


def write_unit(lake: Lake, samples: list[Utterance], shard_mb: int) -> list[CodeIndexRow]:
    """The unit's audio shards and aligned code shards with their indexes; the code rows."""
    by_key = {u.key: u for u in samples}

    def audio_row(placed: PlacedSample) -> ShardIndexRow:
        (flac_offset, flac_size), (json_offset, json_size) = placed.ranges
        u = by_key[placed.sample.key]
        return ShardIndexRow(
            key=u.key, utterance_id=placed.sample.utterance_id, source=SOURCE, unit=UNIT,
            shard=placed.shard, shard_sha256=placed.shard_sha256, shard_bytes=placed.shard_bytes,
            flac_offset=flac_offset, flac_size=flac_size, json_offset=json_offset,
            json_size=json_size, duration_s=u.duration_s, pcm_sha256=u.pcm_sha256,
        )

    audio = write_shards(
        [u.audio for u in samples], lake.shards_dir(SOURCE, UNIT), AUDIO_FIELD,
        lake_root=lake.root, index_row=audio_row, index_schema=SHARD_INDEX_ARROW_SCHEMA,
        limits=ShardLimits(max_bytes=shard_mb * 10**6),
    )
    audio_shard = {p.sample.key: p.shard for p in audio}
    order = [p.shard for p in audio]  # key order, so grouped by shard

    def code_row(placed: PlacedSample) -> CodeIndexRow:
        (codes_offset, codes_size), (json_offset, json_size) = placed.ranges
        u = by_key[placed.sample.key]
        return CodeIndexRow(
            key=u.key, utterance_id=placed.sample.utterance_id, source=SOURCE, unit=UNIT,
            shard=placed.shard, shard_sha256=placed.shard_sha256, shard_bytes=placed.shard_bytes,
            codes_offset=codes_offset, codes_size=codes_size, json_offset=json_offset,
            json_size=json_size, duration_s=u.duration_s, n_codes=len(u.code_values),
            audio_shard=audio_shard[u.key], tokenizer_sha256=TOKENIZER_SHA256,
            tokenizer_is_demo=True,
        )

    write_shards(
        [u.codes for u in samples], lake.codes_dir(TOKENIZER_SHA256, SOURCE, UNIT), CODE_FIELD,
        lake_root=lake.root, index_row=code_row, index_schema=CODE_INDEX_ARROW_SCHEMA,
        sizes=[order.count(shard) for shard in dict.fromkeys(order)],
    )
    return read_code_index(lake.codes_dir(TOKENIZER_SHA256, SOURCE, UNIT))


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
    """All audio samples through webdataset, raw bytes."""
    import webdataset as wds

    count = size = 0
    for sample in wds.WebDataset(urls, shardshuffle=False):
        count += 1
        size += len(sample["flac"]) + len(sample["json"])
    return count, size


def read_webdataset_decoded(urls: str) -> tuple[int, int]:
    """All audio samples through webdataset, FLAC decoded to int16, JSON parsed."""
    import webdataset as wds

    count = size = 0
    for sample in wds.WebDataset(urls, shardshuffle=False):
        audio, _ = sf.read(io.BytesIO(sample["flac"]), dtype="int16")
        meta = json.loads(sample["json"])
        count += 1
        size += len(sample["flac"]) + len(sample["json"])
        if len(audio) != round(meta["duration_s"] * TARGET_SAMPLE_RATE_HZ):
            raise AssertionError(f"{sample['__key__']}: bad read")
    return count, size


def read_joined(lake_root: Path, pairs: list[tuple[str, str]]) -> tuple[int, int]:
    """Audio joined with codes by key: each audio shard and its code shard in lockstep."""
    count = size = 0
    for audio_shard, code_shard in pairs:
        for sample in iter_joined(lake_root, audio_shard, code_shard):
            count += 1
            size += len(sample.flac) + 2 * len(sample.codes)
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
    return members // len(AUDIO_MEMBERS), size


def read_raw(shards: list[Path]) -> tuple[int, int]:
    """The shard files read in 1 MiB chunks: no parsing at all."""
    size = 0
    for path in shards:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                size += len(chunk)
    return 0, size


def write_upstream_codes(samples: list[Utterance], folder: Path) -> list[Path]:
    """The upstream layout: one `<key>_glm4voice.json` (a JSON list of ints) per utterance."""
    folder.mkdir(parents=True)
    paths = []
    for sample in samples:
        path = folder / f"{sample.key}_glm4voice.json"
        with path.open("w", encoding="utf-8") as handle:
            handle.write(json.dumps(sample.code_values.tolist()))
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
    """Codes from the code shards through webdataset (`.codes.npy` and `.json`, as training)."""
    import webdataset as wds

    count = n_codes = 0
    for sample in wds.WebDataset(urls, shardshuffle=False):
        n_codes += len(decode_codes(sample["codes.npy"]))
        count += 1
    return count, n_codes


def read_codes_index(lake_root: Path, out_dir: Path, how: str) -> tuple[int, int]:
    """Codes from the code shards through their index (its loading timed too).

    `how`: "np.load" (`read_member` + `np.load`), "decode" (`read_member` +
    `decode_codes`) or "batched" (`read_members`, one open per shard, + `decode_codes`).
    """
    rows = read_code_index(out_dir)
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
        f"{info['shards']} audio shards of at most {info['shard_mb']} MB, "
        f"{info['shard_bytes'] / mb:,.0f} MB in all "
        f"(FLAC at {info['flac_ratio']:.0%} of 16-bit PCM), and as many code shards, "
        f"{info['code_shard_bytes'] / mb:,.1f} MB in all; "
        f"`write_shards` (both fields) took {info['write_s']:.1f} s "
        f"({info['shard_bytes'] / mb / info['write_s']:,.0f} MB/s). One process; each reader "
        f"the fastest of {info['rounds']} rounds, warm (files in the page cache) and cold "
        "(the files' pages dropped with `posix_fadvise(DONTNEED)` before each round; "
        "directory entries and inodes stay cached).",
        "",
        f"- Machine: {info['machine']}; load average before / after: {info['load']}",
        f"- webdataset {info['webdataset']}, numpy {np.__version__}, "
        f"soundfile {sf.__version__} (libsndfile {sf.__libsndfile_version__})",
        "",
        "Audio shards (MB/s counts member data bytes; the raw read counts file bytes; the "
        "join counts FLAC and code bytes):",
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
        "Codes only, what training reads (each utterance's codes as a uint16 array; "
        "M codes/s):",
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
    wds_raw, wds_decoded, tar_iter, _, joined = whole
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
        f"- Decoding dominates an audio read: FLAC decoding runs at "
        f"{info['audio_h'] * 3600 / wds_decoded.warm_s:,.0f}x real time on one core, "
        f"so the decoded read runs at {wds_raw.warm_s / wds_decoded.warm_s:.0%} of the raw read's "
        "speed. Joining the codes by key (`iter_joined`, `tarfile` underneath) takes "
        f"{joined.warm_s / tar_iter.warm_s:.2f}x the time of `tarfile` iteration over the audio "
        f"alone, warm: the code shards are {info['code_shard_bytes'] / info['shard_bytes']:.2%} "
        "of the audio shards' bytes.",
        f"- Codes only: training streams the code shards through `webdataset` at "
        f"{wds_codes.count / wds_codes.warm_s:,.0f} utterances/s warm, "
        f"{upstream.warm_s / wds_codes.warm_s:.1f}x the speed of the upstream per-utterance JSON "
        f"files ({upstream.cold_s / wds_codes.cold_s:.1f}x cold), with "
        f"{info['samples'] / info['shards']:,.0f}x fewer files and no audio byte read; the "
        "upstream cold figure is flattered by cached directory entries, and object stores or "
        "NFS charge per file. Through the index (`read_members` + `decode_codes`): "
        f"{index_batched.count / index_batched.warm_s:,.0f} utterances/s warm. `np.load` instead "
        f"of `decode_codes` costs "
        f"{(index_npload.warm_s - index_decode.warm_s) / index_npload.count * 1e6:.0f} µs an "
        "array (it parses the npy header as Python).",
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
        lake = Lake(Path(tmp))
        lake_root = lake.root
        start = time.perf_counter()
        code_rows = write_unit(lake, samples, args.shard_mb)
        write_s = time.perf_counter() - start
        audio_dir = lake.shards_dir(SOURCE, UNIT)
        codes_dir = lake.codes_dir(TOKENIZER_SHA256, SOURCE, UNIT)
        shards = sorted(audio_dir.glob(f"{AUDIO_SHARD_PREFIX}-*.tar"))
        code_shards = sorted(codes_dir.glob(f"{CODE_SHARD_PREFIX}-*.tar"))
        last = len(shards) - 1
        urls = f"{audio_dir}/{AUDIO_SHARD_PREFIX}-{{000000..{last:06d}}}.tar"
        code_urls = f"{codes_dir}/{CODE_SHARD_PREFIX}-{{000000..{last:06d}}}.tar"
        pairs = list(dict.fromkeys((row.audio_shard, row.shard) for row in code_rows))
        upstream = write_upstream_codes(samples, lake_root / "upstream")
        audio_s = sum(s.duration_s for s in samples)
        info = {
            "samples": len(code_rows), "shards": len(shards), "shard_mb": args.shard_mb,
            "shard_bytes": sum(p.stat().st_size for p in shards),
            "code_shard_bytes": sum(p.stat().st_size for p in code_shards), "write_s": write_s,
            "audio_h": audio_s / 3600,
            "flac_ratio": sum(len(s.audio.payloads[0]) for s in samples) / (audio_s * 16000 * 2),
            "rounds": args.rounds, "machine": machine(), "webdataset": webdataset.__version__,
        }
        del samples
        load_before = os.getloadavg()[0]

        index = [codes_dir / "index.parquet"]
        whole = [
            measure("`webdataset.WebDataset`, raw bytes", args.rounds,
                    lambda: read_webdataset(urls), shards),
            measure("`webdataset` + decode (FLAC → int16, JSON)", args.rounds,
                    lambda: read_webdataset_decoded(urls), shards),
            measure("`tarfile` stream iteration (parsing ceiling)", args.rounds,
                    lambda: read_tarfile(shards), shards),
            measure("file read, 1 MiB chunks (I/O ceiling)", args.rounds,
                    lambda: read_raw(shards), shards),
            measure("audio + codes joined by key (`iter_joined`, raw bytes)", args.rounds,
                    lambda: read_joined(lake_root, pairs), shards + code_shards),
        ]
        codes = [
            measure("upstream: one `<key>_glm4voice.json` per utterance", args.rounds,
                    lambda: read_upstream_codes(upstream), upstream),
            measure("code shards via `webdataset`, `decode_codes` (as training)",
                    args.rounds, lambda: read_codes_webdataset(code_urls), code_shards),
            measure("code shards via index, `read_member` + `np.load`", args.rounds,
                    lambda: read_codes_index(lake_root, codes_dir, "np.load"),
                    code_shards + index),
            measure("code shards via index, `read_member` + `decode_codes`", args.rounds,
                    lambda: read_codes_index(lake_root, codes_dir, "decode"),
                    code_shards + index),
            measure("code shards via index, `read_members` + `decode_codes`", args.rounds,
                    lambda: read_codes_index(lake_root, codes_dir, "batched"),
                    code_shards + index),
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
