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
from pathlib import Path
from typing import Protocol

import numpy as np
import soxr

from pipelines.audio.decode import CODEC_TOLERANCE_S, AudioDecodeError, decode
from pipelines.audio.ref import AudioRefError
from schemas.audio import TARGET_SAMPLE_RATE_HZ

# soxr quality recipe, chosen by measurement (bench/bench_resampler.py; figures in
# bench/README.md, "Resampler choice"): see `resample`.
SOXR_QUALITY = "HQ"


@dataclass(frozen=True)
class PreparedAudio:
    """One utterance ready for measurement: float32 mono at `TARGET_SAMPLE_RATE_HZ`, cut."""

    samples: np.ndarray
    source_sample_rate_hz: int
    source_channels: int
    duration_s: float  # len(samples) / 16000
    source_format: str = ""


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
    if not math.isfinite(offset_s) or offset_s < 0 or (
        duration_s is not None and (not math.isfinite(duration_s) or duration_s <= 0)
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
    """A whole recording at 16 kHz mono, and what it was before."""

    samples: np.ndarray
    source_sample_rate_hz: int
    source_channels: int
    source_format: str


def _load_16k(source: Path | io.BytesIO, name: str) -> _Recording16k:
    decoded = decode(source, name)
    mono = to_mono(decoded.samples)
    return _Recording16k(
        samples=resample(mono, decoded.sample_rate_hz, TARGET_SAMPLE_RATE_HZ),
        source_sample_rate_hz=decoded.sample_rate_hz,
        source_channels=decoded.channels,
        source_format=decoded.format,
    )


def _segment(recording: _Recording16k, offset_s: float, duration_s: float | None,
             name: str) -> PreparedAudio:
    if offset_s == 0.0 and duration_s is None:
        samples = recording.samples
    else:
        # A copy, so that a long recording is freed once its segments are cut.
        samples = cut(recording.samples, offset_s, duration_s, name=name).copy()
    return PreparedAudio(
        samples=samples,
        source_sample_rate_hz=recording.source_sample_rate_hz,
        source_channels=recording.source_channels,
        duration_s=len(samples) / TARGET_SAMPLE_RATE_HZ,
        source_format=recording.source_format,
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
                recording = _load_16k(open_fn(audio_path, audio_member), name)
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
