"""The model-free quality measures on signals whose answers are known."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from quality import wada_table
from quality.levels import clipping, dc_offset, non_finite_count, peak_dbfs, rms_dbfs, silence
from quality.measures import Measures, chars_per_second, measure
from quality.snr import frame_powers_db, stnr_snr_db, wada_snr_db, wada_statistic
from quality.spectrum import effective_bandwidth_hz
from schemas.quality import QualityRecord

RATE_HZ = 16000


def sine(freq_hz: float, amplitude: float, seconds: float, rate_hz: int = RATE_HZ) -> np.ndarray:
    t = np.arange(round(seconds * rate_hz)) / rate_hz
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def gamma_model_signal(snr_db: float, n: int, seed: int) -> np.ndarray:
    """Kim & Stern's model: Gamma(0.4) amplitudes with random sign plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    speech = rng.gamma(0.4, 1.0, n) * rng.choice([-1.0, 1.0], n)
    noise = rng.standard_normal(n) * math.sqrt(0.4 * 1.4 / 10 ** (snr_db / 10))
    z = speech + noise
    return (0.5 * z / np.abs(z).max()).astype(np.float32)


def mix_white(clean: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    """clean + white noise with 10 log10(sum clean^2 / sum noise^2) = snr_db exactly."""
    noise = np.random.default_rng(seed).standard_normal(clean.size)
    clean = clean.astype(np.float64)
    noise *= np.sqrt(np.sum(clean**2) / (np.sum(noise**2) * 10 ** (snr_db / 10)))
    return (clean + noise).astype(np.float32)


@pytest.fixture(scope="module")
def espeak_utterances(corpora: Path, load_expected) -> list[np.ndarray]:
    """The ok dev-clean-2 LibriSpeech utterances of the test corpora (espeak, 16 kHz FLAC)."""
    out = []
    for row in load_expected("librispeech"):
        if row["status"] == "ok" and row["split"] == "dev-clean-2":
            path = corpora / "librispeech" / "LibriSpeech" / row["audio_path"]
            samples, rate = sf.read(path, dtype="float32")
            assert rate == RATE_HZ
            out.append(samples)
    assert len(out) >= 4
    return out


# ---------------------------------------------------------------- levels, tone


def test_tone_has_known_levels_and_no_defects() -> None:
    tone = sine(1000.0, 0.5, 2.0)
    assert rms_dbfs(tone) == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=0.01)
    assert rms_dbfs(tone) == pytest.approx(-9.03, abs=0.01)
    assert peak_dbfs(tone) == pytest.approx(-6.02, abs=0.01)
    assert abs(dc_offset(tone)) < 1e-6
    assert clipping(tone) == (0.0, 0)
    assert silence(tone, RATE_HZ) == (0.0, 0.0, 0.0)
    assert non_finite_count(tone) == 0
    assert effective_bandwidth_hz(tone, RATE_HZ) == pytest.approx(1000.0, abs=100.0)


def test_bandwidth_follows_the_tone_and_the_sample_rate() -> None:
    assert effective_bandwidth_hz(sine(3000.0, 0.3, 1.0), RATE_HZ) == pytest.approx(3000, abs=100)
    assert effective_bandwidth_hz(sine(300.0, 0.3, 1.0, 8000), 8000) == pytest.approx(300, abs=100)


def test_dc_offset_is_the_mean_and_does_not_move_the_bandwidth() -> None:
    tone = sine(1000.0, 0.2, 1.0) + np.float32(0.25)
    assert dc_offset(tone) == pytest.approx(0.25, abs=1e-6)
    assert effective_bandwidth_hz(tone, RATE_HZ) == pytest.approx(1000.0, abs=100.0)


def test_all_zeros_is_silence_at_the_floor() -> None:
    m = measure(np.zeros(RATE_HZ, dtype=np.float32), RATE_HZ, "text")
    assert m.wada_snr_db is None
    assert m.stnr_snr_db is None
    assert (m.silence_ratio, m.leading_silence_s, m.trailing_silence_s) == (1.0, 1.0, 1.0)
    assert m.rms_dbfs == -120.0
    assert m.peak_dbfs == -120.0
    assert m.dc_offset == 0.0
    assert m.bandwidth_hz == 0.0
    assert (m.clipping_ratio, m.longest_clipped_run) == (0.0, 0)


def test_empty_signal_is_defined() -> None:
    m = measure(np.zeros(0, dtype=np.float32), RATE_HZ, "abc")
    assert m.duration_s == 0.0
    assert m.wada_snr_db is None and m.stnr_snr_db is None
    assert m.rms_dbfs == -120.0 and m.peak_dbfs == -120.0
    assert m.silence_ratio == 1.0
    assert m.chars_per_s is None


# ---------------------------------------------------------------- clipping


def test_clipping_counts_samples_within_one_lsb_of_full_scale() -> None:
    x = np.zeros(1000, dtype=np.float32)
    x[100:105] = 1.0
    x[500:512] = -1.0
    x[700] = 1.0 - 1.0 / 32768  # exactly one LSB below full scale: clipped
    x[800] = 1.0 - 2.0 / 32768  # two LSB below: not clipped
    ratio, run = clipping(x)
    assert ratio == pytest.approx(18 / 1000)
    assert run == 12


def test_clipped_sine_has_the_analytic_clipped_fraction() -> None:
    # A sine of amplitude 2 clipped at 1 spends 1 - (2/pi) asin(1/2) = 2/3 of its time clipped;
    # at 100 Hz a half period is 80 samples, so each clipped run is ~53 samples.
    x = np.clip(sine(100.0, 2.0, 1.0), -1.0, 1.0)
    ratio, run = clipping(x)
    assert ratio == pytest.approx(2 / 3, abs=0.01)
    assert run in (53, 54)
    assert measure(x, RATE_HZ).clipping_ratio == ratio


# ---------------------------------------------------------------- silence


def test_leading_and_trailing_silence_on_frame_boundaries() -> None:
    x = np.concatenate([np.zeros(8000), sine(440.0, 0.1, 1.0), np.zeros(4800)]).astype(np.float32)
    ratio, leading_s, trailing_s = silence(x, RATE_HZ)
    assert leading_s == pytest.approx(0.5)
    assert trailing_s == pytest.approx(0.3)
    assert ratio == pytest.approx(40 / 90)


def test_silence_threshold_is_an_absolute_frame_rms() -> None:
    quiet = sine(440.0, 10 ** (-60 / 20) * math.sqrt(2), 1.0)  # -60 dBFS RMS
    loud = sine(440.0, 10 ** (-40 / 20) * math.sqrt(2), 1.0)  # -40 dBFS RMS
    assert silence(quiet, RATE_HZ)[0] == 1.0
    assert silence(loud, RATE_HZ)[0] == 0.0
    assert silence(quiet, RATE_HZ, threshold_dbfs=-70.0)[0] == 0.0


def test_partial_last_frame_counts_by_its_own_samples() -> None:
    x = np.concatenate([np.zeros(RATE_HZ), sine(440.0, 0.5, 0.005)]).astype(np.float32)
    ratio, leading_s, trailing_s = silence(x, RATE_HZ)
    assert leading_s == pytest.approx(1.0)
    assert trailing_s == 0.0
    assert ratio == pytest.approx(50 / 51)


# ---------------------------------------------------------------- bandwidth


def test_white_noise_reads_near_nyquist_and_band_limited_noise_below_its_cutoff() -> None:
    rng = np.random.default_rng(1)
    white = rng.standard_normal(3 * RATE_HZ).astype(np.float32) * 0.1
    assert effective_bandwidth_hz(white, RATE_HZ) > 7500
    spectrum = np.fft.rfft(white)
    spectrum[np.fft.rfftfreq(white.size, 1 / RATE_HZ) > 3000] = 0
    low_passed = np.fft.irfft(spectrum, white.size).astype(np.float32)
    assert 2500 < effective_bandwidth_hz(low_passed, RATE_HZ) <= 3000


def test_8khz_audio_upsampled_to_16khz_is_narrow_band(espeak_utterances) -> None:
    rng = np.random.default_rng(2)
    narrow_noise = soxr.resample(rng.standard_normal(3 * 8000).astype(np.float32), 8000, RATE_HZ)
    assert effective_bandwidth_hz(narrow_noise, RATE_HZ) < 4000
    for speech in espeak_utterances:
        telephone = soxr.resample(soxr.resample(speech, RATE_HZ, 8000), 8000, RATE_HZ)
        assert effective_bandwidth_hz(telephone, RATE_HZ) < 4000
        assert effective_bandwidth_hz(speech, RATE_HZ) > 4500


def test_energy_share_must_be_a_fraction() -> None:
    with pytest.raises(ValueError, match="energy_share"):
        effective_bandwidth_hz(sine(440.0, 0.1, 0.1), RATE_HZ, energy_share=99.0)


# ---------------------------------------------------------------- WADA-SNR


def test_stored_wada_table_matches_the_integral_and_is_invertible() -> None:
    table = json.loads(wada_table.TABLE_PATH.read_text(encoding="utf-8"))
    assert table["snr_db"] == list(range(-20, 101))
    g = np.array(table["g"])
    assert np.all(np.diff(g) > 0)
    picks = np.array([-20, 0, 10, 20, 50, 100])
    assert np.allclose(wada_table.g_of_snr(picks), g[picks + 20], atol=1e-8)
    # Limits: pure Gaussian noise has G = ln sqrt(2/pi) - (digamma(1/2) + ln 2) / 2, and
    # noiseless Gamma(0.4) speech has G = ln 0.4 - digamma(0.4).
    gaussian_g = 0.5 * math.log(2 / math.pi) - 0.5 * (-1.9635100260214235 + math.log(2))
    assert g[0] == pytest.approx(gaussian_g, abs=1e-3)
    assert g[-1] < math.log(0.4) + 2.5613845445851161


def test_wada_table_agrees_with_a_monte_carlo_of_the_model() -> None:
    rng = np.random.default_rng(7)
    n = 2_000_000
    speech = rng.gamma(0.4, 1.0, n) * rng.choice([-1.0, 1.0], n)
    noise = rng.standard_normal(n)
    for snr_db in (0, 10, 20):
        z = speech + noise * math.sqrt(0.56 / 10 ** (snr_db / 10))
        g_mc = math.log(np.mean(np.abs(z))) - np.mean(np.log(np.abs(z)))
        assert wada_table.g_of_snr(np.array([snr_db]))[0] == pytest.approx(g_mc, abs=0.01)


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 5.0, 10.0, 15.0, 20.0, 30.0])
def test_wada_recovers_the_snr_of_gamma_model_signals(snr_db: float) -> None:
    x = gamma_model_signal(snr_db, 400_000, seed=int(snr_db) + 100)
    assert wada_snr_db(x) == pytest.approx(snr_db, abs=1.0)


def test_wada_clamps_to_the_table_range() -> None:
    rng = np.random.default_rng(3)
    assert wada_snr_db(rng.standard_normal(100_000)) == pytest.approx(-20.0, abs=3.0)
    assert wada_snr_db(sine(440.0, 0.5, 1.0)) == -20.0  # a sine is less peaky than noise
    single_spike = np.zeros(1000, dtype=np.float32)
    single_spike[10] = 0.5
    assert wada_snr_db(single_spike) == -20.0  # G = 0 on one non-zero sample


def test_wada_ignores_digital_zero_padding() -> None:
    x = gamma_model_signal(10.0, 100_000, seed=5)
    padded = np.concatenate([np.zeros(300_000, np.float32), x, np.zeros(200_000, np.float32)])
    assert wada_statistic(padded) == pytest.approx(wada_statistic(x), rel=1e-9)
    assert wada_snr_db(padded) == pytest.approx(wada_snr_db(x), abs=1e-6)
    assert wada_snr_db(padded) == pytest.approx(10.0, abs=1.0)


def test_wada_of_padded_noisy_speech_is_not_the_ceiling(espeak_utterances) -> None:
    noisy = mix_white(espeak_utterances[0], 15.0, seed=11)
    padded = np.concatenate([noisy, np.zeros(5 * RATE_HZ, np.float32)])
    assert wada_snr_db(padded) == pytest.approx(wada_snr_db(noisy), abs=1e-6)
    assert wada_snr_db(padded) < 25.0


def test_wada_on_espeak_speech_in_white_noise_at_10_db(espeak_utterances) -> None:
    estimates = [wada_snr_db(mix_white(x, 10.0, seed=i)) for i, x in enumerate(espeak_utterances)]
    for estimate in estimates:
        assert estimate == pytest.approx(10.0, abs=2.0)


def test_wada_is_none_without_non_zero_samples() -> None:
    assert wada_snr_db(np.zeros(100, np.float32)) is None
    assert wada_snr_db(np.zeros(0, np.float32)) is None


# ---------------------------------------------------------------- STNR


def bursts_in_noise(speech_amplitude: float, noise_rms: float, seed: int) -> np.ndarray:
    """0.5 s tone bursts separated by 0.5 s pauses, in stationary white noise, 6 s."""
    gate = (np.arange(6 * RATE_HZ) // (RATE_HZ // 2)) % 2 == 0
    tone = sine(300.0, speech_amplitude, 6.0) * gate
    noise = np.random.default_rng(seed).standard_normal(tone.size) * noise_rms
    return (tone + noise).astype(np.float32)


@pytest.mark.parametrize("amplitude, noise_rms", [(0.1, 0.01), (0.3, 0.003), (0.05, 0.02)])
def test_stnr_is_burst_level_over_noise_floor(amplitude: float, noise_rms: float) -> None:
    # Burst frames hold amplitude^2/2 + noise_rms^2; pause frames hold noise_rms^2.
    x = bursts_in_noise(amplitude, noise_rms, seed=4)
    expected_db = 10 * math.log10((amplitude**2 / 2 + noise_rms**2) / noise_rms**2)
    assert stnr_snr_db(x, RATE_HZ) == pytest.approx(expected_db, abs=1.0)


def test_stnr_is_undefined_without_pauses_or_samples() -> None:
    rng = np.random.default_rng(6)
    assert stnr_snr_db(rng.standard_normal(5 * RATE_HZ).astype(np.float32), RATE_HZ) is None
    assert stnr_snr_db(sine(440.0, 0.3, 3.0), RATE_HZ) is None
    assert stnr_snr_db(np.zeros(RATE_HZ, np.float32), RATE_HZ) is None
    assert stnr_snr_db(sine(440.0, 0.3, 0.015), RATE_HZ) is None  # shorter than one frame


def test_stnr_reads_digital_silence_as_the_power_floor() -> None:
    x = bursts_in_noise(0.1, 0.0, seed=0)
    assert stnr_snr_db(x, RATE_HZ) == pytest.approx(10 * math.log10(0.1**2 / 2) + 120, abs=1.0)


def test_frame_powers_are_20ms_frames_every_10ms() -> None:
    x = np.concatenate([np.zeros(160), np.full(160, 0.5), np.zeros(320)]).astype(np.float32)
    powers = frame_powers_db(x, RATE_HZ)
    assert powers.size == 3
    assert powers == pytest.approx([10 * math.log10(0.125), 10 * math.log10(0.125), -120.0])


# ---------------------------------------------------------------- text, NaN, the record


def test_chars_per_second_skips_whitespace_and_punctuation() -> None:
    assert chars_per_second("Hello, world!", 2.0) == pytest.approx(5.0)
    assert chars_per_second("你好，世界。", 2.0) == pytest.approx(2.0)
    assert chars_per_second(" \t\n", 1.0) == 0.0
    assert chars_per_second(None, 1.0) is None
    assert chars_per_second("abc", 0.0) is None


def test_non_finite_samples_are_counted_then_zeroed() -> None:
    clean = sine(440.0, 0.5, 1.0)
    dirty = clean.copy()
    dirty[[10, 20, 30]] = [np.nan, np.inf, -np.inf]
    zeroed = clean.copy()
    zeroed[[10, 20, 30]] = 0.0
    m = measure(dirty, RATE_HZ, "abc")
    assert m.non_finite_samples == 3
    reference = measure(zeroed, RATE_HZ, "abc")
    assert asdict(m) == {**asdict(reference), "non_finite_samples": 3}
    for value in asdict(m).values():
        assert value is None or math.isfinite(value)


def test_measures_fill_a_quality_record() -> None:
    measure_columns = {f.name for f in fields(Measures)}
    assert measure_columns <= set(QualityRecord.model_fields)
    m = measure(sine(440.0, 0.5, 1.0), RATE_HZ, "a tone")
    record = QualityRecord(
        **asdict(m),
        utterance_id="u",
        source="s",
        unit="u0",
        status="accepted",
        policy_version="v",
    )
    assert record.rms_dbfs == pytest.approx(-9.03, abs=0.01)
    assert record.duration_s == 1.0
    assert record.chars_per_s == pytest.approx(5.0)


def test_measure_rejects_bad_shapes_and_rates() -> None:
    with pytest.raises(ValueError, match="mono"):
        measure(np.zeros((2, 100), np.float32), RATE_HZ)
    with pytest.raises(ValueError, match="sample_rate_hz"):
        measure(np.zeros(100, np.float32), 0)


def test_measure_takes_milliseconds_for_10_seconds(espeak_utterances) -> None:
    # The quality step must keep >= 60 % of decode-only throughput; a regression to
    # tens of milliseconds per 10 s would break that. Measured ~3 ms; the bound is loose.
    speech = np.concatenate(espeak_utterances * 3)[: 10 * RATE_HZ]
    noisy = mix_white(speech, 10.0, seed=0)
    measure(noisy, RATE_HZ, "warm up")
    best_s = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        measure(noisy, RATE_HZ, "text")
        best_s = min(best_s, time.perf_counter() - start)
    assert best_s < 0.05
