"""Benchmark: which resampler `pipelines.audio.resample` uses, soxr or torchaudio.

Candidates: soxr "HQ" and "VHQ", and `torchaudio.functional.resample` with its
default (sinc_interp_hann, lowpass_filter_width 6, rolloff 0.99) and with
librosa's "kaiser_best" settings (kaiser window, width 64, rolloff 0.9475).
For every source rate voxlake meets (44.1, 48, 22.05, 24 and 8 kHz → 16 kHz)
it measures, on one core (torch limited to one thread; soxr is single-threaded):

- speed, in × real time (seconds of audio per second of wall time, best of
  several runs), for a 5 s utterance (per-call set-up included) and for a
  10 min recording;
- tone error: a 1 kHz tone (amplitude 0.5) resampled, against the analytic
  1 kHz tone at 16 kHz; RMS error relative to the tone's RMS, in dB, with the
  first and last 50 ms left out (edge transients);
- aliasing (downsampling): a 9 kHz tone, above the new 8 kHz Nyquist, must
  vanish; output RMS relative to input RMS, in dB;
- imaging (8 kHz upsampling): a 3 kHz tone must not gain a 5 kHz image;
  RMS of output minus the analytic 3 kHz tone, relative to the tone, in dB.

It prints a table and writes it to the "Resampler choice" section of
`bench/README.md`. Reproduce with:

    .venv/bin/python bench/bench_resampler.py
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soxr
import torch
import torchaudio.functional as taf

REPO = Path(__file__).resolve().parent.parent
README = REPO / "bench" / "README.md"
SECTION_TITLE = "## Resampler choice"
TARGET_HZ = 16000
SOURCE_RATES_HZ = (44100, 48000, 22050, 24000, 8000)
EDGE_S = 0.05  # left out of accuracy figures at each end: filter start-up transients

Resampler = Callable[[np.ndarray, int, int], np.ndarray]


def _soxr(quality: str) -> Resampler:
    def run(x: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
        return soxr.resample(x, from_hz, to_hz, quality=quality)

    return run


def _torchaudio(**options: object) -> Resampler:
    def run(x: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
        out = taf.resample(torch.from_numpy(x), from_hz, to_hz, **options)  # type: ignore[arg-type]
        return out.numpy()

    return run


RESAMPLERS: dict[str, Resampler] = {
    "soxr HQ": _soxr("HQ"),
    "soxr VHQ": _soxr("VHQ"),
    "torchaudio default": _torchaudio(),
    "torchaudio kaiser_best": _torchaudio(
        lowpass_filter_width=64,
        rolloff=0.9475937167399596,
        resampling_method="sinc_interp_kaiser",
        beta=14.769656459379492,
    ),
}


def _tone(freq_hz: float, rate_hz: int, duration_s: float, amplitude: float = 0.5) -> np.ndarray:
    n = np.arange(round(duration_s * rate_hz), dtype=np.float64)
    return (amplitude * np.sin(2 * np.pi * freq_hz * n / rate_hz)).astype(np.float32)


DB_FLOOR = -180.0  # a ratio of 1e-9: far below float32 rounding (about -150 dB at 0.5)


def _db(ratio: float) -> float:
    return max(20 * np.log10(max(ratio, 1e-300)), DB_FLOOR)


def _db_text(value: float) -> str:
    return f"≤ {DB_FLOOR:.0f}" if value <= DB_FLOOR else f"{value:.1f}"


def _middle(x: np.ndarray, rate_hz: int) -> np.ndarray:
    edge = round(EDGE_S * rate_hz)
    return x[edge : len(x) - edge]


def tone_error_db(resampler: Resampler, from_hz: int, freq_hz: float = 1000.0) -> float:
    """RMS error of a resampled tone against the analytic tone at 16 kHz, relative, in dB."""
    out = resampler(_tone(freq_hz, from_hz, 2.0), from_hz, TARGET_HZ).astype(np.float64)
    ref = _tone(freq_hz, TARGET_HZ, len(out) / TARGET_HZ).astype(np.float64)
    n = min(len(out), len(ref))
    err, ref = _middle(out[:n] - ref[:n], TARGET_HZ), _middle(ref[:n], TARGET_HZ)
    return _db(np.sqrt(np.mean(err**2)) / np.sqrt(np.mean(ref**2)))


def aliasing_db(resampler: Resampler, from_hz: int, freq_hz: float = 9000.0) -> float:
    """Output RMS of a tone above the new Nyquist, relative to its input RMS, in dB."""
    tone = _tone(freq_hz, from_hz, 2.0)
    out = resampler(tone, from_hz, TARGET_HZ).astype(np.float64)
    rms_in = np.sqrt(np.mean(tone.astype(np.float64) ** 2))
    return _db(np.sqrt(np.mean(_middle(out, TARGET_HZ) ** 2)) / rms_in)


def speed_x_realtime(resampler: Resampler, from_hz: int, duration_s: float,
                     min_total_s: float) -> float:
    """Seconds of audio resampled per second of wall time (best of the repeats)."""
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(round(duration_s * from_hz))).astype(np.float32)
    resampler(x, from_hz, TARGET_HZ)  # warm-up (torch kernels, soxr plans)
    best = float("inf")
    spent = 0.0
    runs = 0
    while spent < min_total_s or runs < 3:
        start = time.perf_counter()
        resampler(x, from_hz, TARGET_HZ)
        elapsed = time.perf_counter() - start
        best = min(best, elapsed)
        spent += elapsed
        runs += 1
    return duration_s / best


def measure(min_total_s: float) -> list[dict[str, object]]:
    """Every resampler at every source rate: speed, tone error, aliasing/imaging."""
    rows: list[dict[str, object]] = []
    for from_hz in SOURCE_RATES_HZ:
        for label, resampler in RESAMPLERS.items():
            if from_hz > TARGET_HZ:
                stop_band = aliasing_db(resampler, from_hz, 9000.0)
            else:
                # Upsampling: any departure from the 3 kHz tone is its image (at 5 kHz).
                stop_band = tone_error_db(resampler, from_hz, 3000.0)
            rows.append({
                "from_hz": from_hz,
                "resampler": label,
                "x_rt_5s": speed_x_realtime(resampler, from_hz, 5.0, min_total_s),
                "x_rt_600s": speed_x_realtime(resampler, from_hz, 600.0, min_total_s),
                "tone_error_db": tone_error_db(resampler, from_hz),
                "stop_band_db": stop_band,
            })
            print(_row(rows[-1]), flush=True)
    return rows


def _row(r: dict[str, object]) -> str:
    return (
        f"| {r['from_hz'] / 1000:g} kHz | {r['resampler']} | {r['x_rt_5s']:,.0f} | "
        f"{r['x_rt_600s']:,.0f} | {_db_text(r['tone_error_db'])} | "  # type: ignore[arg-type]
        f"{_db_text(r['stop_band_db'])} |"  # type: ignore[arg-type]
    )


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        if match:
            cpu = match.group(1).strip()
    return (f"{cpu}, {os.cpu_count()} CPUs; {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}; soxr {soxr.__version__}, "
            f"torch {torch.__version__}")


def _section(rows: list[dict[str, object]]) -> str:
    lines = [
        SECTION_TITLE,
        "",
        "Resampling to 16 kHz, one core (torch limited to one thread). Speed: × real time, "
        "best of repeated runs, for a 5 s utterance (set-up included) and a 10 min recording. "
        "Tone error: a 1 kHz tone (amplitude 0.5) resampled, RMS error against the analytic "
        "tone at 16 kHz, relative, in dB (first and last 50 ms left out). Stop band: for "
        "downsampling, a 9 kHz tone (above the new 8 kHz Nyquist) must vanish, output RMS "
        "relative to input RMS in dB (what is left aliases to 7 kHz); for 8 kHz upsampling, "
        "a 3 kHz tone's error against the analytic tone (its 5 kHz image), in dB. Lower dB "
        f"is better; {DB_FLOOR:.0f} dB is the floor (equal to the analytic tone in float32).",
        "",
        f"- Machine: {_machine()}",
        "",
        "| from | resampler | × RT, 5 s | × RT, 10 min | 1 kHz tone error (dB) | "
        "stop band (dB) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    lines += [_row(r) for r in rows]
    lines += ["", _verdict(rows), "", "Reproduce:", "", "```",
              ".venv/bin/python bench/bench_resampler.py", "```", ""]
    return "\n".join(lines)


def _verdict(rows: list[dict[str, object]]) -> str:
    def span(label: str, key: str) -> str:
        values = [float(r[key]) for r in rows if r["resampler"] == label]  # type: ignore[arg-type]
        fmt = "{:,.0f}" if key.startswith("x_rt") else "{:.0f}"
        return f"{fmt.format(min(values))} to {fmt.format(max(values))}"

    def ratio(key: str, label: str, other_label: str) -> str:
        ratios = []
        for r in rows:
            if r["resampler"] != label:
                continue
            other = next(o for o in rows if o["resampler"] == other_label
                         and o["from_hz"] == r["from_hz"])
            ratios.append(float(r[key]) / float(other[key]))  # type: ignore[arg-type]
        return f"{min(ratios):.2f} to {max(ratios):.1f}"

    hq, ta, kaiser = "soxr HQ", "torchaudio default", "torchaudio kaiser_best"
    return (
        "Choice: **soxr HQ** (`pipelines/audio/prepare.py`, `resample`). "
        "Against torchaudio's default "
        f"it runs {ratio('x_rt_5s', hq, ta)}x as fast on 5 s utterances and "
        f"{ratio('x_rt_600s', hq, ta)}x on 10 min recordings; its 1 kHz tone error is "
        f"{span(hq, 'tone_error_db')} dB against {span(ta, 'tone_error_db')} dB, and its "
        f"stop band {span(hq, 'stop_band_db')} dB against {span(ta, 'stop_band_db')} dB: "
        "torchaudio's default filter (rolloff 0.99, a short Hann-windowed sinc) lets tones "
        "above the new Nyquist alias back. torchaudio with kaiser_best settings stops the "
        f"aliasing ({span(kaiser, 'stop_band_db')} dB) but soxr HQ is "
        f"{ratio('x_rt_600s', hq, kaiser)}x as fast on 10 min and "
        f"{ratio('x_rt_5s', hq, kaiser)}x on 5 s. soxr VHQ is more accurate than a 16-bit "
        f"output can hold and slower than HQ ({span('soxr VHQ', 'x_rt_600s')} × RT on "
        "10 min), so HQ it is."
    )


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
    """Measure every resampler, print the table, record it in bench/README.md."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--min-seconds", type=float, default=1.0,
                        help="least wall time spent timing each case (default 1)")
    parser.add_argument("--no-readme", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = measure(args.min_seconds)
    section = _section(rows)
    print()
    print(section)
    if not args.no_readme:
        write_readme_section(section)
        print(f"recorded in {README.relative_to(REPO)}")


if __name__ == "__main__":
    main()
