"""Audio durations from file headers alone, for planning: FLAC STREAMINFO and WAV RIFF chunks.

Unit planning needs each utterance's duration, and some corpora (LibriSpeech,
folders of files, manifests without times) do not state it. FLAC and WAV say
it in their first bytes: FLAC's STREAMINFO block holds the sample rate and the
total number of samples; a WAV file's `fmt ` chunk holds the frame size and
its `data` chunk header the byte count. `read_header` parses those in pure
Python with a few small reads (a few KB at most per file), without libsndfile
and without decoding.

This is a planning estimate, not a check: anything it cannot read cheaply
(MP3, Opus, compressed WAV, a malformed or truncated header, a FIFO, a missing
file) gives None, never an exception, and the caller falls back to what it
knew before. The manifest step still probes every file with libsndfile and
rejects the broken ones with their reason.

>>> import io, struct
>>> fmt = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
>>> wav = b"RIFF" + struct.pack("<I", 36 + 32000) + b"WAVEfmt " + struct.pack("<I", 16) + fmt
>>> wav += b"data" + struct.pack("<I", 32000) + bytes(32000)
>>> read_header_bytes(wav)
AudioHeader(frames=16000, sample_rate_hz=16000, channels=1, format='WAV/PCM')
"""

from __future__ import annotations

import io
import os
import stat
import struct
from typing import BinaryIO

from pipelines.audio.ref import AudioHeader

HEAD_BYTES = 4096
"""Bytes read at the start of every file: STREAMINFO and the usual WAV chunks fit in it."""

MAX_WAV_CHUNKS = 32
"""Chunks walked before `data` at most (each one past the first read costs a seek + 8 bytes)."""

FLAC_MARKER = b"fLaC"
FLAC_STREAMINFO_TYPE = 0
FLAC_STREAMINFO_BYTES = 34
ID3_HEADER_BYTES = 10

# WAVE format tags whose frames are fixed-size (frames = data bytes / block align).
WAV_FIXED_FRAME_FORMATS = {1: "PCM", 3: "FLOAT", 6: "ALAW", 7: "ULAW"}
WAVE_FORMAT_EXTENSIBLE = 0xFFFE
WAV_UNKNOWN_SIZE = 0xFFFFFFFF
"""A RIFF size streaming writers leave unset (RF64: "see the ds64 chunk")."""
WAV_UNSET_SIZE = 0x7FFFFFFF
"""The "unknown" data size some other streaming writers leave (sox, libsndfile to a pipe)."""


def header_duration_s(path: str | os.PathLike[str]) -> float | None:
    """The duration (s) a FLAC or WAV file's header states, or None when it cannot be read cheaply.

    None for other formats (MP3, Opus, ...), compressed WAV, malformed or
    truncated headers, and anything that is not a readable regular file.
    """
    header = read_header(path)
    return header.duration_s if header is not None else None


def read_header(path: str | os.PathLike[str]) -> AudioHeader | None:
    """Frames, rate and channels from a FLAC or WAV file's header (None when not readable).

    The file is opened non-blocking and must be a regular file, so a FIFO or a
    device named `x.wav` cannot stall the caller.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        with os.fdopen(fd, "rb", buffering=0, closefd=False) as handle:
            return _parse(handle, info.st_size)
    except (OSError, ValueError, OverflowError):  # an I/O error or an absurd seek: no header
        return None
    finally:
        os.close(fd)


def wav_declared_frames(source: str | os.PathLike[str] | io.BytesIO) -> int | None:
    """Frames a WAV file's `data` chunk header declares, before clamping to the file's size.

    libsndfile counts the frames a short file really holds, so a WAV cut short
    looks like a shorter clip; comparing the two finds the cut. None when the
    file is not a fixed-frame WAV or its data size is left unset (streaming
    writers leave 0xFFFFFFFF, some 0x7FFFFFFF: those declare nothing).
    """
    try:
        if isinstance(source, io.BytesIO):
            position = source.tell()
            try:
                source.seek(0)
                return _wav_declared(source, len(source.getbuffer()))
            finally:
                source.seek(position)
        with open(source, "rb", buffering=0) as file:
            size_bytes = os.fstat(file.fileno()).st_size
            return _wav_declared(file, size_bytes)
    except (OSError, ValueError, OverflowError):
        return None


def wav_truncation(
    source: str | os.PathLike[str] | io.BytesIO, name: str, frames: int, sample_rate_hz: int
) -> str | None:
    """Why a WAV that decodes to `frames` is cut short, or None when it is whole (or not WAV).

    More than one frame missing against the data chunk's declared size is a
    truncated file: accepted as it reads, it would pass as a shorter clip with
    the full transcript.
    """
    declared = wav_declared_frames(source)
    if declared is None or declared - frames <= 1:
        return None
    return (
        f"{name}: the WAV header declares {declared} frames "
        f"({declared / sample_rate_hz:.3f} s) but the file holds {frames} "
        f"({frames / sample_rate_hz:.3f} s)"
    )


def _wav_declared(handle: BinaryIO, size_bytes: int) -> int | None:
    head = handle.read(HEAD_BYTES)
    if not (len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WAVE"):
        return None
    header = _wav(handle, head, size_bytes, declared=True)
    return header.frames if header is not None else None


def read_header_bytes(data: bytes) -> AudioHeader | None:
    """`read_header` for a file's bytes already in memory (a tar member, an Arrow cell)."""
    try:
        return _parse(io.BytesIO(data), len(data))
    except (ValueError, OverflowError):
        return None


def _parse(handle: BinaryIO, size_bytes: int) -> AudioHeader | None:
    head = handle.read(HEAD_BYTES)
    if head.startswith(FLAC_MARKER) or head.startswith(b"ID3"):
        return _flac(handle, head)
    if len(head) >= 12 and head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return _wav(handle, head, size_bytes)
    return None


def _read_at(handle: BinaryIO, head: bytes, offset: int, n_bytes: int) -> bytes:
    """`n_bytes` at `offset`, from the bytes already read when they hold them."""
    if offset + n_bytes <= len(head):
        return head[offset : offset + n_bytes]
    handle.seek(offset)
    return handle.read(n_bytes)


def _flac(handle: BinaryIO, head: bytes) -> AudioHeader | None:
    """STREAMINFO, the mandatory first metadata block (after an ID3v2 tag some taggers add)."""
    offset = 0
    if head.startswith(b"ID3"):
        tag = head[:ID3_HEADER_BYTES]
        if len(tag) < ID3_HEADER_BYTES or any(b & 0x80 for b in tag[6:10]):
            return None
        # Syncsafe size (7 bits per byte), plus a 10-byte footer when flag bit 4 is set.
        tag_bytes = (tag[6] << 21) | (tag[7] << 14) | (tag[8] << 7) | tag[9]
        offset = ID3_HEADER_BYTES + tag_bytes + (ID3_HEADER_BYTES if tag[5] & 0x10 else 0)
    block = _read_at(handle, head, offset, 8 + FLAC_STREAMINFO_BYTES)
    if len(block) < 8 + FLAC_STREAMINFO_BYTES or block[:4] != FLAC_MARKER:
        return None
    block_type = block[4] & 0x7F
    block_bytes = int.from_bytes(block[5:8], "big")
    if block_type != FLAC_STREAMINFO_TYPE or block_bytes != FLAC_STREAMINFO_BYTES:
        return None
    # After min/max block size (2+2) and min/max frame size (3+3): 20 bits rate,
    # 3 bits channels-1, 5 bits bits-per-sample-1, 36 bits total samples.
    packed = int.from_bytes(block[18:26], "big")
    sample_rate_hz = packed >> 44
    channels = ((packed >> 41) & 0x7) + 1
    frames = packed & ((1 << 36) - 1)
    if sample_rate_hz == 0 or frames == 0:  # 0 samples means "unknown" in STREAMINFO
        return None
    return AudioHeader(
        frames=frames, sample_rate_hz=sample_rate_hz, channels=channels, format="FLAC"
    )


def _wav(
    handle: BinaryIO, head: bytes, size_bytes: int, declared: bool = False
) -> AudioHeader | None:
    """Walk the RIFF chunks to `fmt ` and `data` (skipping LIST, fact, bext, JUNK, ...).

    `declared=True` counts the frames the data chunk header states, even past
    the end of the file, and gives None when it states no size.
    """
    fmt: tuple[int, int, int, int] | None = None  # format tag, channels, rate, block align
    ds64_data_bytes: int | None = None
    offset = 12
    for _ in range(MAX_WAV_CHUNKS):
        chunk = _read_at(handle, head, offset, 8)
        if len(chunk) < 8:
            return None
        chunk_id, chunk_bytes = chunk[:4], int.from_bytes(chunk[4:8], "little")
        body = offset + 8
        if chunk_id == b"fmt ":
            fmt = _wav_format(_read_at(handle, head, body, min(chunk_bytes, 40)))
            if fmt is None:
                return None
        elif chunk_id == b"ds64":
            ds64 = _read_at(handle, head, body, 16)
            if len(ds64) < 16:
                return None
            ds64_data_bytes = int.from_bytes(ds64[8:16], "little")
        elif chunk_id == b"data":
            if fmt is None:
                return None  # data before fmt: legal but rare; not worth more reads
            format_tag, channels, sample_rate_hz, block_align = fmt
            if declared:
                if chunk_bytes in (WAV_UNKNOWN_SIZE, WAV_UNSET_SIZE) or chunk_bytes == 0:
                    return None
                data_bytes = chunk_bytes
            else:
                if chunk_bytes == WAV_UNKNOWN_SIZE:
                    chunk_bytes = ds64_data_bytes if ds64_data_bytes is not None else size_bytes
                # A file cut short holds fewer frames than its header says; libsndfile
                # counts what is there, and so does this.
                data_bytes = max(0, min(chunk_bytes, size_bytes - body))
            return AudioHeader(
                frames=data_bytes // block_align,
                sample_rate_hz=sample_rate_hz,
                channels=channels,
                format=f"WAV/{WAV_FIXED_FRAME_FORMATS[format_tag]}",
            )
        offset = body + chunk_bytes + (chunk_bytes & 1)  # chunks are padded to even sizes
        if chunk_bytes == WAV_UNKNOWN_SIZE or offset >= size_bytes:
            return None
    return None


def _wav_format(body: bytes) -> tuple[int, int, int, int] | None:
    """(format tag, channels, rate, block align) of a `fmt ` chunk with fixed-size frames."""
    if len(body) < 16:
        return None
    format_tag, channels, sample_rate_hz, _, block_align = struct.unpack_from("<HHIIH", body)
    if format_tag == WAVE_FORMAT_EXTENSIBLE:
        # cbSize, valid bits, channel mask, then the sub-format GUID whose first two
        # bytes are the real format tag.
        if len(body) < 26:
            return None
        format_tag = int.from_bytes(body[24:26], "little")
    if format_tag not in WAV_FIXED_FRAME_FORMATS or not (
        channels > 0 and sample_rate_hz > 0 and block_align > 0
    ):
        return None
    return format_tag, channels, sample_rate_hz, block_align
