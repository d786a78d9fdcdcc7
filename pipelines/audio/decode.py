"""Decode an utterance's audio file to float32 samples at its own rate.

`decode` reads wav/flac/mp3/ogg vorbis/ogg opus with libsndfile and the
formats libsndfile cannot read (m4a, aac, mp4, webm, wma) with FFmpeg through
torchcodec, when FFmpeg's shared libraries are installed. Every failure is an
`AudioDecodeError` carrying a `RejectReason` code, never a crash of the unit.
Mono, 16 kHz and cutting are `pipelines/audio/prepare.py`'s job; the 16-bit
stored form and its hash are `pipelines/audio/pcm.py`'s.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from pipelines.audio.headers import wav_truncation
from pipelines.audio.ref import (
    FFMPEG_ONLY_EXTENSIONS,
    is_empty,
    libsndfile_error_text,
    libsndfile_input,
)

# Codecs pad or trim a few milliseconds (Opus pre-skip, MP3 encoder delay, AAC priming),
# so a segment may end this far past the decoded end, and a file may decode this much
# shorter than its header says, before either counts as an error. Equal to ingest's
# `SEGMENT_END_TOLERANCE_S`, so a segment ingest accepted is not rejected here.
CODEC_TOLERANCE_S = 0.05

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
    """A whole file decoded: `samples` float32 shaped (frames, channels), nominally in [-1, 1].

    With `decode(..., int16=True)`, a file libsndfile reads as 16-bit PCM comes as
    int16 samples k instead (`format` ends in "/PCM_16"): its float form is exactly
    k / 32768, what libsndfile would have returned.
    """

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


# --- decoding -----------------------------------------------------------------------------


def decode(source: Path | io.BytesIO, name: str, *, int16: bool = False) -> DecodedAudio:
    """Decode a whole audio file to float32 samples shaped (frames, channels).

    `source` is a path or the complete bytes of a file (a tar member, an Arrow
    cell); `name` is used for messages and its suffix picks the decoder:
    FFmpeg for m4a/aac/mp4/webm/wma and for MP3s whose length libsndfile can
    only estimate, libsndfile for everything else, and FFmpeg again for a
    name without a suffix that libsndfile cannot open. Samples are not clipped,
    and non-finite samples are returned as they are (the quality step counts
    them). `int16=True` returns 16-bit PCM files (FLAC, WAV, ... as libsndfile
    reads them: subtype PCM_16) as their int16 samples, without a float copy.
    In-memory bytes reach libsndfile through an in-memory file descriptor
    (`libsndfile_input`), not Python read callbacks.

    Raises `AudioDecodeError`: `unreadable_audio` (no decoder recognises it),
    `empty_audio` (zero frames), `truncated_audio` (decoding fails or ends
    more than `CODEC_TOLERANCE_S` before the frame count the header promised),
    `unsupported_format` (it needs FFmpeg and FFmpeg is not available).
    """
    if isinstance(source, io.BytesIO):
        source.seek(0)
    if is_empty(source):
        raise AudioDecodeError("unreadable_audio", f"{name}: the file is empty (0 bytes)")
    suffix = Path(name).suffix.lower()
    if suffix in FFMPEG_ONLY_EXTENSIONS:
        return _decode_ffmpeg(source, name, f"{suffix} is a format libsndfile cannot read")
    with libsndfile_input(source) as target:
        try:
            handle = sf.SoundFile(target, closefd=False)
        except RuntimeError as error:  # soundfile.LibsndfileError is a RuntimeError
            if not suffix and _ffmpeg_decoder_class() is not None:
                reason = f"libsndfile cannot read it ({libsndfile_error_text(error)})"
                return _decode_ffmpeg(source, name, reason, format_known=False)
            raise AudioDecodeError(
                "unreadable_audio",
                f"{name}: not a readable audio file ({libsndfile_error_text(error)})",
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
            return _read_libsndfile(handle, name, source, int16=int16)


def _read_libsndfile(
    handle: sf.SoundFile, name: str, source: Path | io.BytesIO | None = None, int16: bool = False
) -> DecodedAudio:
    frames = int(handle.frames)
    rate = int(handle.samplerate)
    if handle.channels <= 0 or rate <= 0:
        raise AudioDecodeError(
            "unreadable_audio", f"{name}: the header states {handle.channels} channels at {rate} Hz"
        )
    if frames <= 0:
        raise AudioDecodeError("empty_audio", f"{name}: the file holds no samples")
    if source is not None and handle.format == "WAV":
        cut_short = wav_truncation(source, name, frames, rate)
        if cut_short is not None:
            raise AudioDecodeError("truncated_audio", cut_short)
    try:
        # libsndfile never reads past the header's frame count, so this reads everything.
        dtype = "int16" if int16 and handle.subtype == "PCM_16" else "float32"
        samples = handle.read(frames, dtype=dtype, always_2d=True)
    except (RuntimeError, ValueError) as error:  # FLAC "lost sync", mpg123: the data ran out
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
