"""Decode utterance audio and prepare it for measurement: float32, mono, 16 kHz, cut to the segment.

`decode` reads wav/flac/mp3/ogg vorbis/ogg opus with libsndfile and the
formats libsndfile cannot read (m4a, aac, mp4, webm, wma) with FFmpeg through
torchcodec, when FFmpeg's shared libraries are installed. Every failure is an
`AudioDecodeError` carrying a `RejectReason` code, never a crash of the unit.
`prepare` turns one utterance into a `PreparedAudio`; `prepare_many` does a
whole unit and decodes and resamples each recording once, however many
segments it serves (a WenetSpeech recording serves hundreds). `pcm16`,
`pcm_sha256` and `encode_flac16` fix the 16-bit form the shards store and the
content hash that finds duplicate audio.

>>> import numpy as np
>>> tone = np.sin(2 * np.pi * 440 * np.arange(48000) / 48000).astype(np.float32)
>>> len(resample(tone, 48000))
16000
>>> len(cut(resample(tone, 48000), offset_s=0.25, duration_s=0.5))
8000
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import soundfile as sf
import soxr

from pipelines.audio_ref import FFMPEG_ONLY_EXTENSIONS, AudioRefError

TARGET_SAMPLE_RATE_HZ = 16000

# Codecs pad or trim a few milliseconds (Opus pre-skip, MP3 encoder delay, AAC priming),
# so a segment may end this far past the decoded end, and a file may decode this much
# shorter than its header says, before either counts as an error. Equal to ingest's
# `SEGMENT_END_TOLERANCE_S`, so a segment ingest accepted is not rejected here.
CODEC_TOLERANCE_S = 0.05

# soxr quality recipe, chosen by measurement (bench/bench_resampler.py; figures in
# bench/README.md, "Resampler choice"): see `resample`.
SOXR_QUALITY = "HQ"

# A name without a suffix (a Hugging Face cell, "<file>/audio@3") says nothing of the
# format: when libsndfile cannot open it, FFmpeg is tried before it is called unreadable.
# Only then: FFmpeg's probe is lenient (it finds the MP3 frames inside a tar, say), so a
# file whose suffix names a format libsndfile reads is never handed to it on failure.

# An MP3's frame count is exact only when its first frame carries a Xing/Info (LAME)
# or VBRI header; otherwise libsndfile estimates it from the first frame's bitrate and
# stops reading at the estimate, which silently drops most of a VBR file.
_MP3_LENGTH_TAGS = (b"Xing", b"Info", b"VBRI")


class AudioDecodeError(Exception):
    """Audio that cannot be used. `reason` is a `RejectReason` code, `message` names the file.

    Reasons raised here: `unreadable_audio`, `empty_audio`, `truncated_audio`,
    `unsupported_format`, `segment_out_of_range`, `invalid_timing`; and, from
    `prepare_many`, whatever `AudioRefError` reason opening the file gave
    (`missing_audio`, `path_escape`, ...).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class DecodedAudio:
    """A whole file decoded: `samples` float32 shaped (frames, channels), nominally in [-1, 1]."""

    samples: np.ndarray
    sample_rate_hz: int
    channels: int
    format: str  # "<container>/<codec>" as libsndfile names it, or "ffmpeg/<codec>"

    @property
    def frames(self) -> int:
        """Number of frames (samples per channel)."""
        return int(self.samples.shape[0])

    @property
    def duration_s(self) -> float:
        """Duration in seconds (frames / rate)."""
        return self.frames / self.sample_rate_hz


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


# --- decoding -----------------------------------------------------------------------------


def decode(source: Path | io.BytesIO, name: str) -> DecodedAudio:
    """Decode a whole audio file to float32 samples shaped (frames, channels).

    `source` is a path or the complete bytes of a file (a tar member, an Arrow
    cell); `name` is used for messages and its suffix picks the decoder:
    FFmpeg for m4a/aac/mp4/webm/wma and for MP3s whose length libsndfile can
    only estimate, libsndfile for everything else, and FFmpeg again for a
    name without a suffix that libsndfile cannot open. Samples are not clipped,
    and non-finite samples are returned as they are (the quality step counts
    them).

    Raises `AudioDecodeError`: `unreadable_audio` (no decoder recognises it),
    `empty_audio` (zero frames), `truncated_audio` (decoding fails or ends
    more than `CODEC_TOLERANCE_S` before the frame count the header promised),
    `unsupported_format` (it needs FFmpeg and FFmpeg is not available).
    """
    if isinstance(source, io.BytesIO):
        source.seek(0)
    suffix = Path(name).suffix.lower()
    if suffix in FFMPEG_ONLY_EXTENSIONS:
        return _decode_ffmpeg(source, name, f"{suffix} is a format libsndfile cannot read")
    try:
        handle = sf.SoundFile(source)
    except RuntimeError as error:  # soundfile.LibsndfileError is a RuntimeError
        if not suffix and _ffmpeg_decoder_class() is not None:
            return _decode_ffmpeg(source, name, f"libsndfile cannot read it ({error})",
                                  format_known=False)
        raise AudioDecodeError(
            "unreadable_audio", f"{name}: not a readable audio file ({error})"
        ) from error
    with handle:
        if handle.format == "MP3" and not _mp3_length_is_exact(source):
            handle.close()
            return _decode_ffmpeg(
                source,
                name,
                "this MP3 has no Xing/Info/VBRI header, so libsndfile can only estimate "
                "its length and would stop reading at the estimate",
            )
        return _read_libsndfile(handle, name)


def _read_libsndfile(handle: sf.SoundFile, name: str) -> DecodedAudio:
    frames = int(handle.frames)
    rate = int(handle.samplerate)
    if frames <= 0:
        raise AudioDecodeError("empty_audio", f"{name}: the file holds no samples")
    try:
        # libsndfile never reads past the header's frame count, so this reads everything.
        samples = handle.read(frames, dtype="float32", always_2d=True)
    except RuntimeError as error:  # FLAC "lost sync", mpg123 errors: the data ran out
        raise AudioDecodeError(
            "truncated_audio",
            f"{name}: the header promises {frames} frames ({frames / rate:.3f} s) but "
            f"decoding fails before the end ({error})",
        ) from error
    _check_length(name, len(samples), frames, rate)
    return DecodedAudio(
        samples=samples,
        sample_rate_hz=rate,
        channels=int(handle.channels),
        format=f"{handle.format}/{handle.subtype}",
    )


def _check_length(name: str, got_frames: int, promised_frames: int, rate: int) -> None:
    if got_frames == 0:
        raise AudioDecodeError(
            "truncated_audio" if promised_frames > 0 else "empty_audio",
            f"{name}: decoding yields no samples (the header promises {promised_frames})",
        )
    if promised_frames - got_frames > CODEC_TOLERANCE_S * rate:
        raise AudioDecodeError(
            "truncated_audio",
            f"{name}: the header promises {promised_frames} frames "
            f"({promised_frames / rate:.3f} s) but only {got_frames} "
            f"({got_frames / rate:.3f} s) decode",
        )


def _mp3_length_is_exact(source: Path | io.BytesIO) -> bool:
    """True when the first MPEG frame carries a Xing/Info/VBRI header (an exact length)."""
    if isinstance(source, io.BytesIO):
        with source.getbuffer() as view:
            head = bytes(view[:10])
            start = _id3v2_size(head)
            frame = bytes(view[start : start + 4096])
    else:
        with source.open("rb") as file:
            head = file.read(10)
            start = _id3v2_size(head)
            file.seek(start)
            frame = file.read(4096)
    sync = _first_frame_sync(frame)
    if sync < 0:
        return False
    # The tag sits after the 4-byte frame header and the side info (9 to 32 bytes),
    # or at a fixed 36 bytes for VBRI: the first 48 bytes of the frame hold it.
    window = frame[sync : sync + 48]
    return any(tag in window for tag in _MP3_LENGTH_TAGS)


def _id3v2_size(head: bytes) -> int:
    """Bytes taken by a leading ID3v2 tag (0 when there is none)."""
    if len(head) < 10 or head[:3] != b"ID3":
        return 0
    size = 0
    for byte in head[6:10]:  # a "syncsafe" integer: 7 bits per byte
        size = (size << 7) | (byte & 0x7F)
    footer = 10 if head[5] & 0x10 else 0
    return 10 + size + footer


def _first_frame_sync(data: bytes) -> int:
    """Offset of the first MPEG audio frame sync (11 set bits), or -1."""
    for index in range(len(data) - 1):
        if data[index] == 0xFF and data[index + 1] & 0xE0 == 0xE0:
            return index
    return -1


def _ffmpeg_decoder_class() -> type | None:
    """torchcodec's `AudioDecoder`, or None when torchcodec or FFmpeg's libraries do not load."""
    try:
        from torchcodec.decoders import AudioDecoder
    except (ImportError, OSError, RuntimeError):
        # torchcodec raises RuntimeError (or OSError) when it finds no FFmpeg libraries.
        return None
    return AudioDecoder


def _decode_ffmpeg(
    source: Path | io.BytesIO, name: str, why: str, format_known: bool = True
) -> DecodedAudio:
    """Decode with FFmpeg; `format_known=False` (a guess) makes every failure unreadable."""
    decoder_class = _ffmpeg_decoder_class()
    if decoder_class is None:
        raise AudioDecodeError(
            "unsupported_format",
            f"{name}: {why}; decoding it needs FFmpeg (torchcodec with FFmpeg's shared "
            "libraries, e.g. `apt-get install ffmpeg`), which is not available here",
        )
    data = source.getvalue() if isinstance(source, io.BytesIO) else source.read_bytes()
    try:
        decoder = decoder_class(data)
    except (RuntimeError, ValueError) as error:
        raise AudioDecodeError(
            "unreadable_audio", f"{name}: FFmpeg cannot read it ({error})"
        ) from error
    metadata = decoder.metadata
    rate = int(metadata.sample_rate)
    header_s = metadata.duration_seconds_from_header
    promised = round(header_s * rate) if header_s else 0
    try:
        decoded = decoder.get_all_samples()
    except RuntimeError as error:
        raise AudioDecodeError(
            "truncated_audio" if promised and format_known else "unreadable_audio",
            f"{name}: FFmpeg fails while decoding ({error})",
        ) from error
    # torchcodec gives (channels, frames); the rest of voxlake uses (frames, channels).
    samples = np.ascontiguousarray(decoded.data.numpy().T, dtype=np.float32)
    if samples.shape[0] == 0 and not promised:
        raise AudioDecodeError("empty_audio", f"{name}: the file holds no samples")
    _check_length(name, samples.shape[0], promised, rate)
    return DecodedAudio(
        samples=samples,
        sample_rate_hz=rate,
        channels=int(samples.shape[1]),
        format=f"ffmpeg/{metadata.codec}",
    )


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


# --- 16-bit PCM: the stored form and the content hash --------------------------------------


def pcm16(samples: np.ndarray) -> np.ndarray:
    """float samples → int16 PCM, the inverse of libsndfile's int16 → float (k / 32768).

    Rule: NaN → 0 and ±inf → ±1, then clip to [-1, 1], then
    `np.round(x * 32768)` (half to even; float32 input is computed in float32,
    where this is exact, anything else in float64), then clip to
    [-32768, 32767] (so +1.0 → 32767). Every int16 value
    k survives k / 32768 → pcm16 unchanged, so a 16-bit file hashes the same
    whether it is read as int16 or as float, and
    `pcm16(decode(encode_flac16(x))) == pcm16(x)`. (Scaling by 32767 instead,
    as libsndfile does when it writes floats, moves every |k| > 16384 by one
    on each round trip.)
    """
    values = np.asarray(samples)
    # float32 stays float32: scaling by 2^15 and rounding are exact there, and twice as fast.
    work = np.float32 if values.dtype == np.float32 else np.float64
    # Clipping to [-1, 32767/32768] first is the rule above in one clip: every x above
    # 32767/32768 ends at 32767 either way. ±inf are clipped; NaN stays NaN until zeroed.
    scaled = np.clip(values.astype(work, copy=False), work(-1.0), work(32767 / 32768))
    scaled *= work(32768.0)
    np.rint(scaled, out=scaled)  # half to even, as np.round
    np.nan_to_num(scaled, copy=False, nan=0.0)
    return scaled.astype(np.int16)


def pcm_sha256(samples: np.ndarray) -> str:
    """Content hash of audio: sha256 (hex) of the little-endian int16 PCM (`pcm16`) of it.

    Pass the prepared 16 kHz mono signal: equal audio gives an equal hash
    whatever container or rate it came from (a WAV and a FLAC of the same
    16-bit samples hash equal), so it finds duplicates across sources.
    """
    return hashlib.sha256(pcm16(samples).astype("<i2", copy=False).tobytes()).hexdigest()


def encode_flac16(samples: np.ndarray, rate: int = TARGET_SAMPLE_RATE_HZ) -> bytes:
    """Encode mono (or (frames, channels)) float samples as 16-bit FLAC bytes at `rate` Hz.

    The samples are converted with `pcm16` first (libsndfile would scale floats
    by 32767). The bytes depend only on the samples, the rate and the libFLAC
    version (its vendor string is in the file; there are no timestamps).
    """
    buffer = io.BytesIO()
    sf.write(buffer, pcm16(samples), rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()
