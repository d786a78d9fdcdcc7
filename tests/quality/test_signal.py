"""The measures' shared pass (`quality.signal.Signal`): measuring 16-bit PCM directly
(`measure_pcm16`) gives bit for bit what `measure` gives for its float form k / 32768,
the same as the float path up to rounding, the same as the measures' textbook
definitions computed over the whole array, and does not depend on how the audio is cut
into chunks."""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import pytest

import quality.signal as signal_module
from pipelines.audio.pcm import pcm16
from quality.measures import _measures, measure, measure_pcm16
from quality.signal import Signal
from quality.snr import stnr_snr_db, wada_snr_db, wada_table
from quality.spectrum import effective_bandwidth_hz

RATE = 16000


def _speech_like(seconds: float, seed: int, noise: float = 0.01) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    bursts = (np.sin(2 * np.pi * 1.7 * t) > 0.2).astype(np.float64)
    voiced = 0.4 * np.sin(2 * np.pi * 180 * t) * np.sign(np.sin(2 * np.pi * 7 * t)) * bursts
    return voiced * rng.gamma(0.4, 1.0, n) / 2 + noise * rng.standard_normal(n)


def _cases() -> dict[str, np.ndarray]:
    speech = _speech_like(7.3, seed=1)
    padded = np.concatenate([np.zeros(4000), speech[:30000], np.zeros(3333)])
    clipped = np.clip(3 * _speech_like(2.0, seed=2), -1.0, 1.0)
    return {
        "speech": pcm16(speech),
        "long (several chunks)": pcm16(_speech_like(13.1, seed=3)),
        "padded with digital zeros": pcm16(padded),
        "clipped": pcm16(clipped),
        "shorter than a segment": pcm16(speech[:300]),
        "one sample": pcm16(speech[:1] + 0.5),
        "silence": np.zeros(5000, dtype=np.int16),
        "full scale": np.full(1000, -32768, dtype=np.int16),
        "empty": np.zeros(0, dtype=np.int16),
    }


CASES = _cases()


@pytest.mark.parametrize("name", list(CASES))
def test_pcm16_measures_are_those_of_its_float_form_bit_for_bit(name: str) -> None:
    pcm = CASES[name]
    assert asdict(measure_pcm16(pcm, RATE, "some words")) == asdict(
        measure(pcm.astype(np.float32) / 32768, RATE, "some words")
    )


@pytest.mark.parametrize("name", list(CASES))
def test_pcm16_and_float_paths_agree_up_to_rounding(name: str) -> None:
    pcm = CASES[name]
    exact = asdict(_measures(Signal.of_pcm16(pcm, RATE), "words", 0))
    floats = asdict(_measures(Signal.of_floats(pcm.astype(np.float64) / 32768, RATE), "words", 0))
    assert exact.keys() == floats.keys()
    for key, value in exact.items():
        other = floats[key]
        if value is None or other is None:
            assert value is other, key
        else:
            assert other == pytest.approx(value, rel=1e-9, abs=1e-9), key


def _reference(x: np.ndarray) -> dict[str, float | None]:
    """The measures' definitions over the whole float64 array, without any shared pass."""
    out: dict[str, float | None] = {}
    magnitude = np.abs(x)
    nonzero = magnitude[magnitude > 0]
    if nonzero.size:
        z = np.maximum(nonzero / nonzero.max(), 1e-10)
        g = math.log(np.mean(z)) - np.mean(np.log(z))
        table_snr, table_g = wada_table()
        out["wada_snr_db"] = float(np.interp(g, table_g, table_snr))
    else:
        out["wada_snr_db"] = None
    out["rms_dbfs"] = max(-120.0, 10 * math.log10(np.mean(x * x))) if np.any(x) else -120.0
    out["dc_offset"] = float(np.mean(x)) if x.size else 0.0
    frame = 320
    frames = [x[i : i + frame] for i in range(0, x.size, frame)]
    silent = [np.mean(f * f) < 1e-5 for f in frames]
    out["silence_ratio"] = float(np.mean(silent)) if frames else 1.0
    return out


@pytest.mark.parametrize("name", ["speech", "long (several chunks)", "padded with digital zeros"])
def test_the_shared_pass_gives_the_textbook_values(name: str) -> None:
    pcm = CASES[name]
    x = pcm.astype(np.float64) / 32768
    got = asdict(measure_pcm16(pcm, RATE))
    for key, value in _reference(x).items():
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-9), key
    # The standalone functions read the same Signal.
    assert wada_snr_db(x) == pytest.approx(got["wada_snr_db"], abs=1e-9)
    assert stnr_snr_db(x, RATE) == pytest.approx(got["stnr_snr_db"], abs=1e-9)
    assert effective_bandwidth_hz(x, RATE) == got["bandwidth_hz"]


@pytest.mark.parametrize("chunk", [160 * 7, 4096, 1 << 20])
def test_measures_do_not_depend_on_the_chunk_size(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    pcm = CASES["long (several chunks)"]
    floats = _speech_like(5.1, seed=9).astype(np.float32)
    default = asdict(measure_pcm16(pcm, RATE)), asdict(measure(floats, RATE))
    monkeypatch.setattr(signal_module, "CHUNK_SAMPLES", chunk)
    monkeypatch.setattr(signal_module, "FFT_CHUNK_SAMPLES", chunk)
    other = asdict(measure_pcm16(pcm, RATE)), asdict(measure(floats, RATE))
    for before, after in zip(default, other, strict=True):
        for key, value in before.items():
            if isinstance(value, float):
                assert after[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
            else:
                assert after[key] == value, key


def test_float_samples_off_the_16_bit_grid_take_the_float_path() -> None:
    x = _speech_like(1.0, seed=4).astype(np.float32)
    on_grid = pcm16(x).astype(np.float32) / 32768
    assert measure(x, RATE).wada_snr_db != measure(on_grid, RATE).wada_snr_db
    assert measure(x, RATE).wada_snr_db == pytest.approx(
        measure(on_grid, RATE).wada_snr_db, abs=1.0
    )


def test_measure_pcm16_rejects_floats_and_bad_shapes() -> None:
    with pytest.raises(TypeError, match="int16"):
        measure_pcm16(np.zeros(10, np.float32), RATE)
    with pytest.raises(ValueError, match="mono"):
        measure_pcm16(np.zeros((2, 10), np.int16), RATE)
    with pytest.raises(ValueError, match="sample_rate_hz"):
        measure_pcm16(np.zeros(10, np.int16), 0)


def test_stnr_percentile_is_numpys() -> None:
    from quality.snr import percentile

    rng = np.random.default_rng(11)
    for size in [1, 2, 3, 19, 20, 21, 100, 1271, 5000]:
        for _ in range(20):
            values = rng.normal(-40.0, 10.0, size)
            if size > 3:
                values[: size // 3] = np.round(values[: size // 3])  # ties
            for q in (95.0, 50.0, 0.0, 100.0, 99.9):
                assert percentile(values, q) == float(np.percentile(values, q)), (size, q)
