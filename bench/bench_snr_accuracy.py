"""How accurate are the blind SNR estimates? Speech mixed with noise at known SNRs.

Clean speech: the espeak-ng utterances of the committed test corpora (the ok
LibriSpeech FLACs and the ok WenetSpeech Opus segments, cut at their declared
offsets), resampled to 16 kHz with soxr. Each is mixed with

- white Gaussian noise,
- pink (1/f power) noise, shaped in the FFT domain,
- babble: 3-5 other utterances of the set, each scaled to the same RMS, looped
  from a random start to the utterance's length and summed,

at 0, 5, 10, 15, 20 and 30 dB, where the true SNR is over the whole utterance:
10 log10(sum clean^2 / sum noise^2), pauses (digital silence in espeak's output)
included. For WADA-SNR and the STNR-style estimate it prints the bias (mean of
estimate - truth) and the mean absolute error per noise and level, and replaces
the `## SNR accuracy` section of `bench/README.md`. It also times
`quality.measures.measure` on 10 s of audio. Fixed seeds throughout.

Run: `.venv/bin/python bench/bench_snr_accuracy.py`
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from quality.measures import measure
from quality.snr import frame_powers_db, stnr_snr_db, wada_snr_db, wada_table

ROOT = Path(__file__).resolve().parent.parent
CORPORA = ROOT / "tests" / "data" / "corpora"
README = Path(__file__).resolve().parent / "README.md"
SECTION = "## SNR accuracy"
SAMPLE_RATE_HZ = 16000
LEVELS_DB = (0, 5, 10, 15, 20, 30)
TARGET_LEVELS_DB = (0, 5, 10, 15, 20)
TARGET_MAE_DB = 2.0
SEED = 20080922  # Kim & Stern, Interspeech 2008


@dataclass(frozen=True)
class Utterance:
    """One clean utterance: where it came from and its 16 kHz samples."""

    name: str
    corpus: str
    samples: np.ndarray


def _expected_ok(name: str) -> list[dict]:
    path = CORPORA / "expected" / f"{name}.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [row for row in rows if row["status"] == "ok"]


def _to_16k(samples: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    if sample_rate_hz != SAMPLE_RATE_HZ:
        samples = soxr.resample(samples, sample_rate_hz, SAMPLE_RATE_HZ, quality="HQ")
    return np.ascontiguousarray(samples, dtype=np.float32)


def load_utterances() -> list[Utterance]:
    """The ok LibriSpeech and WenetSpeech utterances of the test corpora, at 16 kHz."""
    utterances = []
    for row in _expected_ok("librispeech"):
        path = CORPORA / "librispeech" / "LibriSpeech" / row["audio_path"]
        samples, rate = sf.read(path, dtype="float32", always_2d=False)
        utterances.append(Utterance(row["native_id"], "librispeech", _to_16k(samples, rate)))
    recordings: dict[str, tuple[np.ndarray, int]] = {}
    for row in _expected_ok("wenetspeech"):
        if row["audio_path"] not in recordings:
            path = CORPORA / "wenetspeech" / row["audio_path"]
            samples, rate = sf.read(path, dtype="float32", always_2d=False)
            recordings[row["audio_path"]] = (samples, rate)
        samples, rate = recordings[row["audio_path"]]
        start = round(row["offset_s"] * rate)
        stop = start + round(row["duration_s"] * rate)
        utterances.append(
            Utterance(row["native_id"], "wenetspeech", _to_16k(samples[start:stop], rate))
        )
    return utterances


def white_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Gaussian white noise, unit variance."""
    return rng.standard_normal(n)


def pink_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """1/f-power noise: white noise with its spectrum scaled by 1/sqrt(f), no DC."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    scale = np.zeros_like(freqs)
    scale[1:] = 1.0 / np.sqrt(freqs[1:])
    return np.fft.irfft(spectrum * scale, n)


def babble_noise(rng: np.random.Generator, n: int, others: list[np.ndarray]) -> np.ndarray:
    """Sum of 3-5 of `others`, each scaled to unit RMS and looped from a random start."""
    talkers = rng.choice(len(others), size=int(rng.integers(3, 6)), replace=False)
    total = np.zeros(n)
    for index in talkers:
        voice = others[index].astype(np.float64)
        voice = voice / np.sqrt(np.mean(voice**2))
        start = int(rng.integers(0, voice.size))
        total += np.resize(np.roll(voice, -start), n)
    return total


def mix_at(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """clean + noise scaled so that 10 log10(sum clean^2 / sum noise^2) = snr_db."""
    clean = clean.astype(np.float64)
    gain = np.sqrt(np.sum(clean**2) / (np.sum(noise**2) * 10.0 ** (snr_db / 10.0)))
    return (clean + gain * noise).astype(np.float32)


ESTIMATORS: dict[str, Callable[[np.ndarray], float | None]] = {
    "WADA": wada_snr_db,
    "STNR": lambda x: stnr_snr_db(x, SAMPLE_RATE_HZ),
}
NOISES = ("white", "pink", "babble")


def run(utterances: list[Utterance]) -> dict[tuple[str, str, int], list[float | None]]:
    """Estimate minus truth for every estimator x noise x level x utterance (None: no estimate)."""
    errors: dict[tuple[str, str, int], list[float | None]] = {}
    for u_index, utt in enumerate(utterances):
        others = [o.samples for o in utterances if o.name != utt.name]
        for n_index, kind in enumerate(NOISES):
            rng = np.random.default_rng([SEED, u_index, n_index])
            n = utt.samples.size
            if kind == "white":
                noise = white_noise(rng, n)
            elif kind == "pink":
                noise = pink_noise(rng, n)
            else:
                noise = babble_noise(rng, n, others)
            for level in LEVELS_DB:
                mixed = mix_at(utt.samples, noise, level)
                for name, estimator in ESTIMATORS.items():
                    estimate = estimator(mixed)
                    error = None if estimate is None else estimate - level
                    errors.setdefault((name, kind, level), []).append(error)
    return errors


def clean_facts(utterances: list[Utterance]) -> list[str]:
    """What the clean utterances look like to the estimators, one README line per fact."""
    lines = []
    for corpus in ("librispeech", "wenetspeech"):
        group = [u.samples for u in utterances if u.corpus == corpus]
        for name, estimator in ESTIMATORS.items():
            readings = [estimator(x) for x in group]
            present = [r for r in readings if r is not None]
            none = len(readings) - len(present)
            lines.append(
                f"{name} on the clean {corpus} utterances: median {np.median(present):.1f} dB, "
                f"range {min(present):.1f} ... {max(present):.1f} dB"
                + (f", {none} none" if none else "")
            )
        zeros = [float(np.mean(x == 0)) for x in group]
        lines.append(
            f"exact digital zeros in the clean {corpus} utterances: "
            f"{min(zeros):.1%} ... {max(zeros):.1%} of the samples"
        )
    table_snr_db, table_g = wada_table()
    ceiling = 0
    for u in utterances:
        # The statistic with the zeros kept (floored at 1e-10), as Kim & Stern's code does.
        magnitude = np.maximum(np.abs(u.samples) / np.abs(u.samples).max(), 1e-10)
        g = np.log(magnitude.mean()) - np.mean(np.log(magnitude))
        ceiling += float(np.interp(g, table_g, table_snr_db)) >= 99.0
    lines.append(
        f"WADA with the digital zeros kept would read the 100 dB ceiling on {ceiling} of the "
        f"{len(utterances)} clean utterances"
    )
    peak_over_mean = []
    for u in utterances:
        powers_db = frame_powers_db(u.samples, SAMPLE_RATE_HZ)
        mean_db = 10 * np.log10(np.mean(u.samples.astype(np.float64) ** 2))
        peak_over_mean.append(float(np.percentile(powers_db, 95)) - mean_db)
    lines.append(
        "95th-percentile 20 ms frame power over the mean power of the clean utterance: "
        f"median {np.median(peak_over_mean):.1f} dB "
        f"({min(peak_over_mean):.1f} ... {max(peak_over_mean):.1f} dB)"
    )
    return lines


def time_measure(utterances: list[Utterance]) -> float:
    """Microseconds of `measure` per second of 16 kHz audio (10 s of speech in noise at 10 dB)."""
    speech = np.concatenate([u.samples for u in utterances])[: 10 * SAMPLE_RATE_HZ]
    noise = white_noise(np.random.default_rng(SEED), speech.size)
    samples = mix_at(speech, noise, 10.0)
    measure(samples, SAMPLE_RATE_HZ, "warm up")
    repeats = 50
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            measure(samples, SAMPLE_RATE_HZ, "some text")
        best = min(best, (time.perf_counter() - start) / repeats)
    return best / (samples.size / SAMPLE_RATE_HZ) * 1e6


def _machine() -> str:
    """CPU model and count, for the README."""
    cpuinfo = Path("/proc/cpuinfo")
    model = platform.processor() or platform.machine()
    if cpuinfo.exists():
        for line in cpuinfo.read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} CPUs"


def _stats(values: list[float | None]) -> tuple[float, float, int]:
    present = np.array([v for v in values if v is not None], dtype=np.float64)
    missing = len(values) - present.size
    if present.size == 0:
        return float("nan"), float("nan"), missing
    return float(np.mean(present)), float(np.mean(np.abs(present))), missing


def _cell(values: list[float | None]) -> str:
    bias, mae, missing = _stats(values)
    text = f"{bias:+.1f} / {mae:.1f}"
    return text + (f" ({missing} none)" if missing else "")


def render(
    errors: dict[tuple[str, str, int], list[float | None]],
    facts: list[str],
    utterances: list[Utterance],
    measure_us_per_s: float,
    seconds: float,
) -> str:
    """The README section: setup, the table, the target check, interpretation."""
    n_libri = sum(u.corpus == "librispeech" for u in utterances)
    total_s = sum(u.samples.size for u in utterances) / SAMPLE_RATE_HZ
    header = "| estimator | noise | " + " | ".join(f"{lv} dB" for lv in LEVELS_DB)
    header += " | MAE 0-20 dB |\n|---|---|" + "---:|" * (len(LEVELS_DB) + 1) + "\n"
    rows = []
    for name in ESTIMATORS:
        for kind in NOISES:
            cells = [_cell(errors[(name, kind, lv)]) for lv in LEVELS_DB]
            pooled = [e for lv in TARGET_LEVELS_DB for e in errors[(name, kind, lv)]]
            rows.append(
                f"| {name} | {kind} | " + " | ".join(cells) + f" | {_stats(pooled)[1]:.2f} |"
            )
    white = [e for lv in TARGET_LEVELS_DB for e in errors[("WADA", "white", lv)]]
    white_mae = _stats(white)[1]
    verdict = "met" if white_mae <= TARGET_MAE_DB else "NOT met"
    by_corpus = []
    for corpus in ("librispeech", "wenetspeech"):
        idx = [i for i, u in enumerate(utterances) if u.corpus == corpus]
        for kind in ("white", "babble"):
            cells = [
                f"{_stats([errors[('WADA', kind, lv)][i] for i in idx])[0]:+.1f}"
                for lv in LEVELS_DB
            ]
            by_corpus.append(f"| {corpus} | {kind} | " + " | ".join(cells) + " |")
    return (
        f"{SECTION}\n\n"
        f"{len(utterances)} espeak-ng utterances from `tests/data/corpora` ({n_libri} LibriSpeech "
        f"FLAC, {len(utterances) - n_libri} WenetSpeech Opus segments; {total_s:.0f} s at 16 kHz) "
        "mixed with white, pink (1/f) and babble (3-5 other utterances) noise. "
        "True SNR = 10 log10(sum clean^2 / sum noise^2) over the whole utterance, pauses included. "
        "Each cell: bias (mean estimate - truth) / mean absolute error, in dB; "
        '"none" counts utterances without an estimate.\n\n'
        f"- Machine: {_machine()}; Python {sys.version.split()[0]}; "
        f"benchmark ran in {seconds:.0f} s\n"
        + "".join(f"- {line}\n" for line in facts)
        + f"- `quality.measures.measure` (all measures): {measure_us_per_s:.0f} µs per second "
        f"of 16 kHz audio ({measure_us_per_s * 10 / 1000:.1f} ms for 10 s of speech in noise; "
        "best of 5 x 50 calls)\n\n"
        + header
        + "\n".join(rows)
        + f"\n\nTarget, WADA-SNR MAE <= {TARGET_MAE_DB:.0f} dB over 0-20 dB in white noise: "
        f"{verdict} ({white_mae:.2f} dB).\n\n"
        "WADA-SNR bias (dB) by corpus:\n\n"
        "| corpus | noise | " + " | ".join(f"{lv} dB" for lv in LEVELS_DB) + " |\n"
        "|---|---|"
        + "---:|" * len(LEVELS_DB)
        + "\n"
        + "\n".join(by_corpus)
        + "\n\n"
        + INTERPRETATION
        + "\nReproduce:\n\n```\n.venv/bin/python bench/bench_snr_accuracy.py\n```\n"
    )


INTERPRETATION = """\
How to read it. **WADA-SNR** is unbiased within a few tenths of a dB in white and
pink noise up to 15 dB: it looks only at the amplitude distribution, and pink noise
is as Gaussian as white noise. Above that it reads low and saturates, because the
clean espeak speech itself does not follow the Gamma(0.4) model: with its digital
zeros left out, the clean signal already reads ~20 dB (LibriSpeech FLAC) or ~30 dB
(WenetSpeech Opus, whose pauses hold a low-level floor after lossy coding instead
of digital silence). Gamma(0.4)
was fitted on natural recordings, where the quiet tails and low-level pauses supply
the mass near zero; espeak's voiced stretches are much less peaky, so an added
noise that is 20-30 dB down hardly changes the statistic, and the estimate cannot
exceed what the clean signal reads. No principled change to the estimator removes
this (refitting alpha to espeak would tune it to synthetic speech); the LibriSpeech
rows show it (-2.8 dB at 20 dB, -7 dB at 30 dB). Keeping the digital zeros, as the
original code does, is worse: clean utterances with padding would read the 100 dB
ceiling (see the line above); in the noisy mixtures there are no exact zeros, so
their exclusion changes nothing there. **Babble** is the failure case: 3-5 summed
talkers are themselves super-Gaussian, so WADA takes part of the babble for speech
and overestimates by 4-7 dB at 0-5 dB SNR: a 5 dB `min_snr_db` gate lets speech
in babble at 0 dB through. **STNR** measures something else by
definition: the 95th-percentile speech frame over the noise-floor mode, and the
95th-percentile frame of espeak speech is ~6 dB above its mean power, so it reads
+3 to +7 dB above the whole-utterance SNR from 5 to 30 dB for every noise (more at
0 dB, where few utterances get an estimate at all). It
needs pauses: the espeak utterances are short (1.6-5 s) with short pauses, so at
0 dB the noise mode no longer stands out and most utterances get no estimate
("none"; errors are averaged over the utterances that have one), and at 30 dB the
lowest qualifying histogram peak is sometimes a speech onset or decay rather than
the floor, which widens the spread (MAE 5-6 dB). Without noise it reads the
distance to the -120 dB digital floor (~100 dB) where an utterance has a full
20 ms frame of digital silence. Use WADA for gating in stationary noise, read
STNR as a speech-peak-over-pause-floor figure, and neither for babble.
"""


def write_section(section: str) -> None:
    """Replace (or append) this benchmark's section of bench/README.md, leaving the others."""
    text = README.read_text(encoding="utf-8") if README.exists() else "# Benchmarks\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == SECTION), None)
    if start is None:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        rest = "".join(lines[end:])
        text = "".join(lines[:start]) + section + ("\n" + rest if rest else "")
    README.write_text(text, encoding="utf-8")


def main() -> None:
    """Run the benchmark, print the section, write it into bench/README.md."""
    started = time.perf_counter()
    utterances = load_utterances()
    errors = run(utterances)
    facts = clean_facts(utterances)
    measure_us_per_s = time_measure(utterances)
    section = render(errors, facts, utterances, measure_us_per_s, time.perf_counter() - started)
    print(section)
    write_section(section)


if __name__ == "__main__":
    main()
