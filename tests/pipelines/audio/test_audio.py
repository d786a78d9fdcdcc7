"""Audio decoding and preparation: every fixture format, segment cuts, broken files, hashes."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import pipelines.audio.prepare as prepare_module
from pipelines.audio.decode import CODEC_TOLERANCE_S, AudioDecodeError, DecodedAudio, decode
from pipelines.audio.pcm import encode_flac16, pcm16, pcm_sha256
from pipelines.audio.prepare import (
    PreparedAudio,
    Segment,
    cut,
    prepare,
    prepare_many,
    resample,
    to_mono,
)
from pipelines.audio.ref import AudioOpener
from schemas.audio import TARGET_SAMPLE_RATE_HZ

RATE = TARGET_SAMPLE_RATE_HZ
FFMPEG_CLI = shutil.which("ffmpeg")
needs_ffmpeg_cli = pytest.mark.skipif(FFMPEG_CLI is None, reason="the ffmpeg command is absent")

# custom/folder: every format the fixtures hold, with what its header says.
FOLDER_FORMATS = {
    "speaker_a/a1.wav": (16000, 1, "WAV/PCM_16"),
    "speaker_a/a2.flac": (44100, 2, "FLAC/PCM_16"),
    "speaker_b/b1.mp3": (22050, 1, "MP3/MPEG_LAYER_III"),
    "speaker_b/b2.ogg": (48000, 2, "OGG/VORBIS"),
    "speaker_b/b3.opus": (48000, 1, "OGG/OPUS"),
    "speaker_c/c1.wav": (8000, 1, "WAV/PCM_16"),
}


def _expected_16k_frames(frames: int, rate_hz: int) -> int:
    return round(frames * RATE / rate_hz)


def _ok_rows(load_expected: Callable[[str], list[dict]], name: str) -> list[dict]:
    return [row for row in load_expected(name) if row["status"] == "ok"]


def _tone(freq_hz: float, rate_hz: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    n = np.arange(round(seconds * rate_hz))
    return (amplitude * np.sin(2 * np.pi * freq_hz * n / rate_hz)).astype(np.float32)


def _write(samples: np.ndarray, rate_hz: int, fmt: str, subtype: str) -> io.BytesIO:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate_hz, format=fmt, subtype=subtype)
    buffer.seek(0)
    return buffer


def _ffmpeg(args: list[str], out: Path) -> Path:
    assert FFMPEG_CLI is not None
    subprocess.run([FFMPEG_CLI, "-loglevel", "error", "-y", *args, str(out)], check=True)
    return out


def _no_ffmpeg(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `from torchcodec.decoders import AudioDecoder` fail, as without FFmpeg."""
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", None)


# --- every fixture format ------------------------------------------------------------------


@pytest.mark.parametrize("relative", sorted(FOLDER_FORMATS))
def test_every_folder_format_decodes_and_resamples_to_16k(
    corpora: Path, load_expected: Callable[[str], list[dict]], relative: str
) -> None:
    path = corpora / "custom" / "folder" / relative
    rate_hz, channels, fmt = FOLDER_FORMATS[relative]
    header = sf.info(str(path))

    decoded = decode(path, relative)
    assert (decoded.sample_rate_hz, decoded.channels, decoded.format) == (rate_hz, channels, fmt)
    assert decoded.samples.dtype == np.float32
    assert decoded.samples.shape == (header.frames, channels)  # every promised frame

    prepared = prepare(path, relative)
    assert prepared.samples.ndim == 1 and prepared.samples.dtype == np.float32
    assert len(prepared.samples) == _expected_16k_frames(header.frames, rate_hz)
    assert (prepared.source_sample_rate_hz, prepared.source_channels) == (rate_hz, channels)
    declared = next(r for r in load_expected("custom_folder") if r["audio_path"] == relative)
    assert prepared.duration_s == pytest.approx(declared["duration_s"], abs=CODEC_TOLERANCE_S)
    assert 0.01 < float(np.sqrt(np.mean(prepared.samples**2))) < 1.0  # speech, not silence


def test_emilia_mp3_members_decode_through_the_opener(
    corpora: Path, load_expected: Callable[[str], list[dict]]
) -> None:
    rows = _ok_rows(load_expected, "emilia")
    assert len(rows) == 9
    with AudioOpener(corpora / "emilia") as opener:
        for row in rows:
            member = opener.open(row["audio_path"], row["audio_member"])
            decoded = decode(member, row["audio_member"])
            assert decoded.format == "MP3/MPEG_LAYER_III"
            assert decoded.sample_rate_hz == 24000 and decoded.channels == 1
            prepared = prepare(member, row["audio_member"])
            assert len(prepared.samples) == _expected_16k_frames(decoded.frames, 24000)
            # the JSON's duration is the MP3's to within codec padding (here under 1 ms)
            assert prepared.duration_s == pytest.approx(row["duration_s"], abs=CODEC_TOLERANCE_S)


@pytest.mark.parametrize(
    "corpus, folder",
    [
        ("custom_hf_disk", "custom/hf_disk"),
        ("custom_hf_parquet", "custom/hf_parquet"),
    ],
)
def test_hugging_face_cells_decode_through_the_opener(
    corpora: Path, load_expected: Callable[[str], list[dict]], corpus: str, folder: str
) -> None:
    rows = _ok_rows(load_expected, corpus)
    assert rows
    segments = [Segment(r["audio_path"], r["audio_member"]) for r in rows]
    with AudioOpener(corpora / folder) as opener:
        results = dict(prepare_many(segments, opener.open))
    for index, row in enumerate(rows):
        prepared = results[index]
        assert isinstance(prepared, PreparedAudio), prepared
        assert prepared.source_sample_rate_hz == row["sample_rate_hz"]
        # lossless 16 kHz cells: the decoded duration is the declared one, to the sample
        assert round(prepared.duration_s * RATE) == round(row["duration_s"] * RATE)


def test_a_cell_of_garbage_is_unreadable(corpora: Path) -> None:
    with AudioOpener(corpora / "custom" / "hf_disk") as opener:
        [(_, result)] = prepare_many(
            [Segment("test/data-00000-of-00001.arrow", "audio@1")], opener.open
        )
    assert isinstance(result, AudioDecodeError) and result.reason == "unreadable_audio"


# --- segments of long recordings -----------------------------------------------------------


def test_wenetspeech_segments_are_sample_exact_slices_of_the_decoded_recording(
    corpora: Path, load_expected: Callable[[str], list[dict]]
) -> None:
    """'Exact': segment[k] is bit-for-bit sample round(offset·16000) + k of the whole
    recording decoded independently (libsndfile, no resampling: the Opus is 16 kHz), and
    len(segment) == round(duration·16000)."""
    root = corpora / "wenetspeech"
    rows = _ok_rows(load_expected, "wenetspeech")
    segments = [Segment(r["audio_path"], None, r["offset_s"], r["duration_s"]) for r in rows]
    with AudioOpener(root) as opener:
        results = dict(prepare_many(segments, opener.open))
    wholes: dict[str, np.ndarray] = {}
    for index, row in enumerate(rows):
        if row["audio_path"] not in wholes:
            wholes[row["audio_path"]], rate_hz = sf.read(root / row["audio_path"], dtype="float32")
            assert rate_hz == RATE
        start = round(row["offset_s"] * RATE)
        length = round(row["duration_s"] * RATE)
        prepared = results[index]
        assert isinstance(prepared, PreparedAudio), prepared
        assert len(prepared.samples) == length
        np.testing.assert_array_equal(
            prepared.samples, wholes[row["audio_path"]][start : start + length]
        )


@pytest.mark.parametrize(
    "source_rate_hz, fmt, subtype",
    [
        (16000, "OGG", "OPUS"),
        (48000, "OGG", "OPUS"),
        (16000, "FLAC", "PCM_16"),
        (44100, "FLAC", "PCM_16"),
    ],
)
def test_clicks_land_on_their_sample_in_every_segment(
    source_rate_hz: int, fmt: str, subtype: str
) -> None:
    """A 20 s recording with single-sample clicks at known 16 kHz sample numbers: in each cut
    segment the click's peak is at exactly (click - round(offset·16000)), whatever the codec
    (lossy Opus included) and the source rate."""
    rng = np.random.default_rng(7)
    clicks_16k = [12_345, 80_007, 160_001, 249_997]
    signal = (0.01 * rng.standard_normal(20 * source_rate_hz)).astype(np.float32)
    for click in clicks_16k:
        signal[round(click * source_rate_hz / RATE)] = 0.9
    data = _write(signal, source_rate_hz, fmt, subtype).getvalue()
    offsets_s = [0.5, 4.7503, 9.9, 15.0]  # 4.7503 s is sample 76004.8 → 76005
    segments = [Segment("rec", None, offset, 2.0) for offset in offsets_s]

    results = dict(prepare_many(segments, lambda path, member: io.BytesIO(data)))

    for index, (offset_s, click) in enumerate(zip(offsets_s, clicks_16k, strict=True)):
        prepared = results[index]
        assert isinstance(prepared, PreparedAudio)
        assert len(prepared.samples) == 2 * RATE
        assert int(np.argmax(np.abs(prepared.samples))) == click - round(offset_s * RATE)


def test_a_recording_is_decoded_and_resampled_once_per_unit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = {"decode": 0, "resample": 0}
    real_decode, real_resample = prepare_module.decode, prepare_module.resample

    def counting_decode(*args: object, **kwargs: object) -> DecodedAudio:
        calls["decode"] += 1
        return real_decode(*args, **kwargs)  # type: ignore[arg-type]

    def counting_resample(*args: object, **kwargs: object) -> np.ndarray:
        calls["resample"] += 1
        return real_resample(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(prepare_module, "decode", counting_decode)
    monkeypatch.setattr(prepare_module, "resample", counting_resample)
    files = {
        "long.flac": _write(_tone(440, 48000, 12.0), 48000, "FLAC", "PCM_16").getvalue(),
        "other.flac": _write(_tone(440, 48000, 3.0), 48000, "FLAC", "PCM_16").getvalue(),
    }
    segments = [
        Segment("long.flac", None, 0.0, 2.0),
        Segment("long.flac", None, 3.0, 2.0),
        Segment("other.flac", None, 0.0, None),
        Segment("long.flac", None, 6.0, 2.0),  # not contiguous: still the same decode
        Segment("long.flac", None, 11.0, 5.0),  # past the end: rejected, no second decode
    ]

    results = list(prepare_many(segments, lambda path, member: io.BytesIO(files[path])))

    assert calls == {"decode": 2, "resample": 2}
    assert [index for index, _ in results] == [0, 1, 3, 4, 2]  # grouped by recording
    by_index = dict(results)
    assert [len(by_index[i].samples) for i in (0, 1, 3, 2)] == [32000, 32000, 32000, 48000]
    assert isinstance(by_index[4], AudioDecodeError)
    assert by_index[4].reason == "segment_out_of_range"


def test_open_errors_are_reported_per_item_with_their_reason(corpora: Path) -> None:
    segments = [
        Segment("audio/train/youtube/B00000/Y0000000004_pP8sLr2TzQ0.opus", None, 1.0, 3.0),
        Segment("../../outside.opus", None, 1.0, 3.0),
        Segment(None),
    ]
    with AudioOpener(corpora / "wenetspeech") as opener:
        reasons = [
            error.reason
            for _, error in prepare_many(segments, opener.open)
            if isinstance(error, AudioDecodeError)
        ]
    assert reasons == ["missing_audio", "path_escape", "missing_audio"]


# --- broken files --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "relative, reason",
    [
        ("custom/folder/broken/truncated.flac", "truncated_audio"),
        ("librispeech/LibriSpeech/dev-clean-2/2428/83699/2428-83699-0002.flac", "truncated_audio"),
        ("custom/folder/broken/empty.wav", "empty_audio"),
        ("custom/folder/broken/garbage.mp3", "unreadable_audio"),
    ],
)
def test_broken_files_are_rejected_with_their_reason(
    corpora: Path, relative: str, reason: str
) -> None:
    with pytest.raises(AudioDecodeError) as caught:
        prepare(corpora / relative, relative)
    assert caught.value.reason == reason
    assert relative in caught.value.message


def test_a_file_that_decodes_short_is_truncated(corpora: Path) -> None:
    """libsndfile returns fewer frames than an MP3's Xing header promises, without an error."""
    data = (corpora / "custom/folder/speaker_b/b1.mp3").read_bytes()
    with pytest.raises(AudioDecodeError) as caught:
        decode(io.BytesIO(data[: len(data) * 6 // 10]), "b1.mp3")
    assert caught.value.reason == "truncated_audio"
    assert "66674 frames" in caught.value.message


def test_nan_file_decodes_and_keeps_its_non_finite_samples(corpora: Path) -> None:
    prepared = prepare(corpora / "custom/folder/broken/nan.wav", "nan.wav")
    assert len(prepared.samples) == 39565
    assert not np.isfinite(prepared.samples).any()


def test_a_header_without_samples_in_a_bytes_buffer_is_empty() -> None:
    with pytest.raises(AudioDecodeError) as caught:
        decode(_write(np.zeros(0, np.float32), RATE, "WAV", "PCM_16"), "cell")
    assert caught.value.reason == "empty_audio"


# --- FFmpeg formats ------------------------------------------------------------------------


@needs_ffmpeg_cli
def test_m4a_decodes_through_ffmpeg(tmp_path: Path) -> None:
    m4a = _ffmpeg(
        [
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=1000:duration=2:sample_rate=44100",
            "-ac",
            "2",
            "-c:a",
            "aac",
        ],
        tmp_path / "tone.m4a",
    )
    decoded = decode(m4a, "tone.m4a")
    assert decoded.format == "ffmpeg/aac"
    assert (decoded.sample_rate_hz, decoded.channels) == (44100, 2)
    # AAC adds its priming/padding frames: within the codec tolerance of 2 s
    assert decoded.duration_s == pytest.approx(2.0, abs=CODEC_TOLERANCE_S)
    prepared = prepare(io.BytesIO(m4a.read_bytes()), "tone.m4a")
    assert len(prepared.samples) == _expected_16k_frames(decoded.frames, 44100)
    # still a 1 kHz tone: 2 zero crossings per millisecond, in the steady middle
    middle = prepared.samples[4000:28000]
    crossings = np.count_nonzero(np.diff(np.signbit(middle)))
    assert crossings == pytest.approx(2 * len(middle) / 16, abs=4)


def test_m4a_without_ffmpeg_is_unsupported(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_ffmpeg(monkeypatch)
    with pytest.raises(AudioDecodeError) as caught:
        decode(io.BytesIO(b"\x00\x00\x00\x20ftypM4A " + bytes(200)), "talk.m4a")
    assert caught.value.reason == "unsupported_format"
    assert "talk.m4a" in caught.value.message and "FFmpeg" in caught.value.message


@needs_ffmpeg_cli
def test_mp3_without_a_length_header_is_read_to_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A VBR MP3 with no Xing header: libsndfile estimates ~10 % of its length and stops
    there; voxlake hands it to FFmpeg, which reads it all, or rejects it without FFmpeg."""
    mp3 = _ffmpeg(
        [
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=3.3:sample_rate=22050",
            "-c:a",
            "libmp3lame",
            "-q:a",
            "4",
            "-write_xing",
            "0",
        ],
        tmp_path / "vbr.mp3",
    )
    estimated = sf.info(str(mp3)).frames
    decoded = decode(mp3, "vbr.mp3")
    assert decoded.format == "ffmpeg/mp3"
    assert decoded.frames > 3.3 * 22050 > 2 * estimated  # the whole file, not the estimate
    _no_ffmpeg(monkeypatch)
    with pytest.raises(AudioDecodeError) as caught:
        decode(mp3, "vbr.mp3")
    assert caught.value.reason == "unsupported_format"


# --- mono, resampling, cutting -------------------------------------------------------------


def test_to_mono_is_the_channel_mean() -> None:
    stereo = np.array([[1.0, 0.0], [0.5, -0.5], [-1.0, -0.5]], dtype=np.float32)
    np.testing.assert_array_equal(to_mono(stereo), np.array([0.5, 0.0, -0.75], np.float32))
    single = np.arange(4, dtype=np.float32).reshape(4, 1)
    assert to_mono(single).shape == (4,) and np.shares_memory(to_mono(single), single)


def test_resample_at_the_same_rate_returns_the_input() -> None:
    x = _tone(440, RATE, 0.1)
    assert resample(x, RATE) is x


@pytest.mark.parametrize("from_hz", [44100, 48000, 22050, 24000, 8000])
def test_resample_keeps_a_1khz_tone_and_its_length(from_hz: int) -> None:
    out = resample(_tone(1000, from_hz, 2.0), from_hz)
    assert len(out) == 2 * RATE and out.dtype == np.float32
    reference = _tone(1000, RATE, 2.0)
    edge = 800  # 50 ms of filter start-up at each end
    error = out[edge:-edge] - reference[edge:-edge]
    # soxr "HQ" is specified to 20 bits (-120 dB); its "LQ"/"MQ" recipes miss this at 44.1 kHz
    assert 20 * np.log10(np.std(error) / np.std(reference)) < -120


def test_resample_removes_tones_above_the_new_nyquist() -> None:
    out = resample(_tone(9000, 48000, 2.0), 48000)  # 9 kHz would alias to 7 kHz
    assert 20 * np.log10(np.std(out[800:-800]) / (0.5 / np.sqrt(2))) < -120


def test_cut_rounds_offset_and_length_to_samples() -> None:
    x = np.arange(RATE * 3, dtype=np.float32)
    segment = cut(x, 0.50003, 1.00004)  # 8000.48 → 8000; 16000.64 → 16001 samples
    assert segment[0] == 8000 and len(segment) == 16001
    assert cut(x, 1.0, None)[0] == 16000 and len(cut(x, 1.0, None)) == 32000
    assert len(cut(x, 0.0, 2.5 / RATE)) == 2  # 2.5 rounds half to even


def test_cut_within_the_codec_tolerance_is_shortened_beyond_it_rejected() -> None:
    x = np.zeros(RATE * 3, dtype=np.float32)
    assert len(cut(x, 2.0, 1.0 + CODEC_TOLERANCE_S)) == RATE  # 50 ms over: shortened
    for offset_s, duration_s in [(2.0, 1.06), (3.0, 0.5), (3.01, None)]:
        with pytest.raises(AudioDecodeError) as caught:
            cut(x, offset_s, duration_s, name="rec.opus")
        assert caught.value.reason == "segment_out_of_range"
        assert "rec.opus" in caught.value.message
    for offset_s, duration_s in [(-0.1, 1.0), (0.0, 0.0), (float("nan"), 1.0)]:
        with pytest.raises(AudioDecodeError) as caught:
            cut(x, offset_s, duration_s)
        assert caught.value.reason == "invalid_timing"


# --- 16-bit PCM, hash, FLAC ----------------------------------------------------------------


def test_pcm16_rule() -> None:
    x = np.array(
        [0.0, 0.5, 1.0, -1.0, 2.0, -3.0, 1.5 / 32768, 2.5 / 32768, np.nan, np.inf], dtype=np.float32
    )
    assert pcm16(x).tolist() == [0, 16384, 32767, -32768, 32767, -32768, 2, 2, 0, 32767]


def test_pcm16_inverts_the_int16_to_float_reading() -> None:
    every_int16 = np.arange(-32768, 32768, dtype=np.int16)
    np.testing.assert_array_equal(pcm16(every_int16.astype(np.float32) / 32768), every_int16)


def test_pcm_hash_is_the_same_for_wav_and_flac_of_the_same_audio(tmp_path: Path) -> None:
    pcm = np.random.default_rng(3).integers(-20000, 20000, size=3 * RATE, dtype=np.int16)
    sf.write(tmp_path / "a.wav", pcm, RATE, subtype="PCM_16")
    sf.write(tmp_path / "a.flac", pcm, RATE, subtype="PCM_16")
    from_wav = prepare(tmp_path / "a.wav", "a.wav").samples
    from_flac = prepare(tmp_path / "a.flac", "a.flac").samples
    expected = hashlib.sha256(pcm.astype("<i2").tobytes()).hexdigest()
    assert pcm_sha256(from_wav) == pcm_sha256(from_flac) == expected
    assert pcm_sha256(from_wav[1:]) != expected


def test_flac_bytes_are_deterministic_and_round_trip(corpora: Path) -> None:
    samples = prepare(corpora / "custom/folder/speaker_a/a2.flac", "a2.flac").samples
    first, second = encode_flac16(samples), encode_flac16(samples.copy())
    assert first == second and first[:4] == b"fLaC"
    back, rate_hz = sf.read(io.BytesIO(first), dtype="float32")
    assert rate_hz == RATE
    np.testing.assert_array_equal(pcm16(back), pcm16(samples))
    assert pcm_sha256(back) == pcm_sha256(samples)
