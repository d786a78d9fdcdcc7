"""Prepare utterance audio for every step: float32, mono, 16 kHz, cut to the segment.

`prepare` turns one utterance into a `PreparedAudio`; `prepare_many` does a
whole unit and decodes and resamples each recording once, however many
segments it serves (a WenetSpeech recording serves hundreds).

>>> import numpy as np
>>> tone = np.sin(2 * np.pi * 440 * np.arange(48000) / 48000).astype(np.float32)
>>> len(resample(tone, 48000))
16000
>>> len(cut(resample(tone, 48000), offset_s=0.25, duration_s=0.5))
8000
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol

import numpy as np
import soxr

from pipelines.audio.decode import CODEC_TOLERANCE_S, AudioDecodeError, decode
from pipelines.audio.flac import passthrough_flac
from pipelines.audio.ref import AudioRefError
from schemas.audio import PCM16_SCALE, TARGET_SAMPLE_RATE_HZ

# soxr quality recipe, chosen by measurement (bench/bench_resampler.py; figures in
# bench/README.md, "Resampler choice"): see `resample`.
SOXR_QUALITY = "HQ"


@dataclass(frozen=True)
class PreparedAudio:
    """One utterance ready for measurement: mono at `TARGET_SAMPLE_RATE_HZ`, cut.

    `samples` is the float32 signal. `pcm16` is set when the utterance is exactly
    16-bit PCM without any rounding: a 16-bit source already mono at 16 kHz (no
    mixing, no resampling); then `samples` is `pcm16 / 32768`, made on first use,
    and `pipelines.audio.pcm.pcm16(samples)` would give `pcm16` back. `flac`, only
    from `prepare_many(..., flac_passthrough=True)`, is the source's own FLAC frames
    as a minimal stream (`pipelines.audio.flac.passthrough_flac`) when the utterance
    is the whole of a 16 kHz mono 16-bit FLAC file: what the audio shards can store.
    """

    source_sample_rate_hz: int
    source_channels: int
    duration_s: float  # len(samples) / 16000
    source_format: str = ""
    float_samples: np.ndarray | None = None
    pcm16: np.ndarray | None = None
    flac: bytes | None = None

    @cached_property
    def samples(self) -> np.ndarray:
        """The float32 mono signal (from `pcm16` when the float form was not kept)."""
        if self.float_samples is not None:
            return self.float_samples
        assert self.pcm16 is not None
        return self.pcm16.astype(np.float32) * np.float32(1.0 / PCM16_SCALE)


class SegmentRef(Protocol):
    """What `prepare_many` needs of an item (a `ManifestRecord` has these fields).

    `duration_s=None` takes everything after `offset_s`: pass it for whole-file
    utterances, so that the measured duration is the decoded one, which the
    quality policy compares with the declared one.
    """

    @property
    def audio_path(self) -> str | None: ...

    @property
    def audio_member(self) -> str | None: ...

    @property
    def offset_s(self) -> float: ...

    @property
    def duration_s(self) -> float | None: ...


@dataclass(frozen=True)
class Segment:
    """A plain `SegmentRef`: a cut of `audio_path` (or of its container member)."""

    audio_path: str | None
    audio_member: str | None = None
    offset_s: float = 0.0
    duration_s: float | None = None


# --- mono, resampling, cutting ------------------------------------------------------------


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Mix down to one channel: the mean over channels, float32, shape (frames,).

    A 1-D array, or a (frames, 1) array, is returned without copying.
    """
    if samples.ndim == 1:
        return samples.astype(np.float32, copy=False)
    channels = samples.shape[1]
    if channels == 1:
        return samples[:, 0].astype(np.float32, copy=False)
    # Column by column: `samples.mean(axis=1)` reduces short rows and is ~25x slower.
    mono = samples[:, 0].astype(np.float32, copy=True)
    for channel in range(1, channels):
        mono += samples[:, channel]
    mono /= np.float32(channels)
    return mono


def resample(
    samples_1d: np.ndarray, from_hz: int, to_hz: int = TARGET_SAMPLE_RATE_HZ
) -> np.ndarray:
    """Resample a mono float32 signal from `from_hz` to `to_hz` (both in Hz).

    The output has round(len · to_hz / from_hz) samples and no delay (sample 0
    stays at time 0). At equal rates the input is returned as it is, not a copy.

    Resampler: soxr, quality "HQ" (linear phase, 20-bit precision), chosen by
    measurement over `torchaudio.functional.resample` (bench/bench_resampler.py,
    figures in bench/README.md "Resampler choice"; 44.1/48/22.05/24/8 kHz to
    16 kHz, one core of this machine's Xeon). Against torchaudio's default
    (sinc_interp_hann, width 6, rolloff 0.99) soxr HQ is as fast on 5 s
    utterances (1.0-2.4x) and 2-5x faster on 10 min recordings (4,300-13,400
    × real time); its 1 kHz tone error is -133 to -137 dB against -68 to
    -77 dB; and a 9 kHz tone, above the new 8 kHz Nyquist, comes out at
    -141 to -148 dB against -17 dB: torchaudio's default aliases it to 7 kHz.
    torchaudio with kaiser_best settings stops the aliasing but is 2.5-12x
    slower than soxr HQ; soxr "VHQ" is more accurate than a 16-bit result can
    hold, at half the speed.
    """
    if from_hz == to_hz:
        return samples_1d
    if samples_1d.size == 0:
        return np.zeros(0, dtype=np.float32)
    signal = np.ascontiguousarray(samples_1d, dtype=np.float32)
    return soxr.resample(signal, from_hz, to_hz, quality=SOXR_QUALITY)


def cut(
    samples_16k: np.ndarray,
    offset_s: float,
    duration_s: float | None,
    sample_rate_hz: int = TARGET_SAMPLE_RATE_HZ,
    *,
    name: str = "recording",
) -> np.ndarray:
    """The segment [offset_s, offset_s + duration_s) of a signal, sample-exact (a view).

    start = round(offset_s · rate) and length = round(duration_s · rate), with
    Python's `round` (half to even); `duration_s=None` runs to the end. A
    segment that ends past the end of the signal by at most `CODEC_TOLERANCE_S`
    (50 ms: codec padding and trimming) is shortened to the end; further, or
    one that starts at or past the end, raises `AudioDecodeError`
    ("segment_out_of_range"). A negative or non-finite offset, or a duration
    that is not positive and finite, raises "invalid_timing".
    """
    if (
        not math.isfinite(offset_s)
        or offset_s < 0
        or (duration_s is not None and (not math.isfinite(duration_s) or duration_s <= 0))
    ):
        raise AudioDecodeError(
            "invalid_timing", f"{name}: offset {offset_s} s, duration {duration_s} s"
        )
    total = len(samples_16k)
    start = round(offset_s * sample_rate_hz)
    stop = total if duration_s is None else start + round(duration_s * sample_rate_hz)
    tolerance = round(CODEC_TOLERANCE_S * sample_rate_hz)
    if start >= total or stop > total + tolerance:
        end_text = "the end" if duration_s is None else f"{stop / sample_rate_hz:.4f} s"
        raise AudioDecodeError(
            "segment_out_of_range",
            f"{name}: segment {offset_s:.4f} s to {end_text} is past the end of the "
            f"audio ({total / sample_rate_hz:.4f} s)",
        )
    return samples_16k[start : min(stop, total)]


# --- preparation --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Recording16k:
    """A whole recording at 16 kHz mono, and what it was before.

    Exactly one of `samples` (float32) and `pcm16` (int16, when the recording is
    16-bit PCM at 16 kHz mono already) is set; `flac` as in `PreparedAudio`.
    """

    samples: np.ndarray | None
    source_sample_rate_hz: int
    source_channels: int
    source_format: str
    pcm16: np.ndarray | None = None
    flac: bytes | None = None

    @property
    def signal(self) -> np.ndarray:
        """The 16 kHz mono signal as it is held: int16 PCM or float32."""
        return self.pcm16 if self.pcm16 is not None else self.samples  # type: ignore[return-value]


def _load_16k(
    source: Path | io.BytesIO, name: str, flac_passthrough: bool = False
) -> _Recording16k:
    if flac_passthrough and isinstance(source, Path) and source.suffix.lower() == ".flac":
        # The bytes that are passed through must be the bytes that were decoded and
        # measured: read the file once, decode that.
        try:
            source = io.BytesIO(source.read_bytes())
        except OSError:
            pass  # decode reports it
    decoded = decode(source, name, int16=True)
    samples = decoded.samples
    rate = decoded.sample_rate_hz
    if samples.dtype == np.int16 and decoded.channels == 1 and rate == TARGET_SAMPLE_RATE_HZ:
        pcm = samples.reshape(-1)
        flac = None
        if flac_passthrough and decoded.format == "FLAC/PCM_16" and isinstance(source, io.BytesIO):
            with source.getbuffer() as view:
                flac = passthrough_flac(view, decoded.frames)
        return _Recording16k(None, rate, decoded.channels, decoded.format, pcm16=pcm, flac=flac)
    if samples.dtype == np.int16:
        # libsndfile's float form of 16-bit PCM: k / 32768, exactly.
        floats = samples.astype(np.float32)
        floats *= np.float32(1.0 / PCM16_SCALE)
        samples = floats
    mono = to_mono(samples)
    return _Recording16k(
        samples=resample(mono, rate, TARGET_SAMPLE_RATE_HZ),
        source_sample_rate_hz=rate,
        source_channels=decoded.channels,
        source_format=decoded.format,
    )


def _segment(
    recording: _Recording16k, offset_s: float, duration_s: float | None, name: str
) -> PreparedAudio:
    signal = recording.signal
    if offset_s == 0.0 and duration_s is None:
        part, whole = signal, True
    else:
        part = cut(signal, offset_s, duration_s, name=name)
        whole = part.size == signal.size
        if not whole:
            # A copy, so that a long recording is freed once its segments are cut.
            part = part.copy()
    exact = recording.pcm16 is not None
    return PreparedAudio(
        source_sample_rate_hz=recording.source_sample_rate_hz,
        source_channels=recording.source_channels,
        duration_s=len(part) / TARGET_SAMPLE_RATE_HZ,
        source_format=recording.source_format,
        float_samples=None if exact else part,
        pcm16=part if exact else None,
        flac=recording.flac if whole else None,
    )


def prepare(
    source: Path | io.BytesIO,
    name: str,
    offset_s: float = 0.0,
    duration_s: float | None = None,
) -> PreparedAudio:
    """Decode one utterance, mix to mono, resample to 16 kHz and cut [offset_s, +duration_s).

    Raises `AudioDecodeError` as `decode` and `cut` do.
    """
    return _segment(_load_16k(source, name), offset_s, duration_s, name)


def _display_name(audio_path: str | None, audio_member: str | None) -> str:
    # "<container>/<member>": reads as a path, and its suffix is the member's (or none).
    return f"{audio_path}/{audio_member}" if audio_member else str(audio_path)


def prepare_many(
    items: Iterable[SegmentRef],
    open_fn: Callable[[str, str | None], Path | io.BytesIO],
    *,
    flac_passthrough: bool = False,
) -> Iterator[tuple[int, PreparedAudio | AudioDecodeError]]:
    """Prepare a unit's utterances, decoding and resampling each recording once.

    Items are grouped by (audio_path, audio_member); each group's recording is
    opened with `open_fn(audio_path, audio_member)` (e.g. `AudioOpener.open`),
    decoded, mixed and resampled once, every item of the group is cut from the
    16 kHz signal, and then the recording is released, so one recording at a
    time is in memory. Yields `(index of the item in items, PreparedAudio or
    AudioDecodeError)` for every item: groups in order of first appearance,
    items within a group in input order (so input order when each
    recording's items are contiguous, as connectors write them). An
    `AudioRefError` from `open_fn` becomes an `AudioDecodeError` with the same
    reason; other exceptions (disk, programming errors) propagate.
    `flac_passthrough=True` also gives each whole-file utterance of a 16 kHz mono
    16-bit FLAC its `PreparedAudio.flac`.
    """
    groups: dict[tuple[str | None, str | None], list[tuple[int, SegmentRef]]] = {}
    for index, item in enumerate(items):
        groups.setdefault((item.audio_path, item.audio_member), []).append((index, item))
    for (audio_path, audio_member), members in groups.items():
        name = _display_name(audio_path, audio_member)
        recording: _Recording16k | AudioDecodeError
        if audio_path is None:
            recording = AudioDecodeError("missing_audio", "the item names no audio")
        else:
            try:
                recording = _load_16k(open_fn(audio_path, audio_member), name, flac_passthrough)
            except AudioRefError as error:
                recording = AudioDecodeError(error.reason, error.message)
            except AudioDecodeError as error:
                recording = error
        for index, item in members:
            if isinstance(recording, AudioDecodeError):
                yield index, recording
                continue
            try:
                yield index, _segment(recording, item.offset_s, item.duration_s, name)
            except AudioDecodeError as error:
                yield index, error
        del recording
