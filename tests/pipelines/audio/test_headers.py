"""Header durations for planning: FLAC STREAMINFO and WAV chunks agree with the decoder to the
sample; anything else, or anything broken, is None and never an exception."""

from __future__ import annotations

import doctest
import io
import os
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import pipelines.audio.headers as headers_module
from pipelines.audio.headers import HEAD_BYTES, header_duration_s, read_header, read_header_bytes
from pipelines.audio.pcm import encode_flac16

AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".opus"}


def _noise(frames: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    samples = np.random.default_rng(seed).uniform(-0.5, 0.5, (frames, channels))
    return samples[:, 0] if channels == 1 else samples


def _decoded_frames(path: Path) -> tuple[int, int, int]:
    """(frames, rate, channels) as the decoder sees them, every sample decoded."""
    samples, rate = sf.read(path, dtype="float32", always_2d=True)
    return samples.shape[0], rate, samples.shape[1]


def _assert_header_matches_decoder(path: Path) -> None:
    header = read_header(path)
    assert header is not None, path.name
    assert (header.frames, header.sample_rate_hz, header.channels) == _decoded_frames(path)
    assert header_duration_s(path) == header.frames / header.sample_rate_hz


def _riff_chunk(chunk_id: bytes, body: bytes) -> bytes:
    """A RIFF chunk, padded to an even size as the format requires."""
    return chunk_id + struct.pack("<I", len(body)) + body + (b"\0" if len(body) % 2 else b"")


def _wav_with_chunks_before_data(tmp_path: Path, frames: int) -> Path:
    """A 2-channel PCM_16 WAV whose `fmt ` and `data` have LIST (odd size), fact and a large
    JUNK chunk around them, the way broadcast and tagging tools write them."""
    pcm = (_noise(frames, 2) * 32767).astype("<i2")
    fmt = struct.pack("<HHIIHH", 1, 2, 22050, 22050 * 4, 4, 16)
    info = b"INFO" + _riff_chunk(b"INAM", b"a title of odd length\0")
    body = (
        b"WAVE"
        + _riff_chunk(b"JUNK", bytes(HEAD_BYTES * 3))  # pushes the rest past the first read
        + _riff_chunk(b"fmt ", fmt)
        + _riff_chunk(b"LIST", info)
        + _riff_chunk(b"fact", struct.pack("<I", frames))
        + _riff_chunk(b"data", pcm.tobytes())
    )
    path = tmp_path / "chunks.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


@pytest.mark.parametrize(
    ("rate", "channels", "frames", "subtype"),
    [
        (16000, 1, 16000 * 3 + 7, "PCM_16"),
        (44100, 2, 44100 + 1, "PCM_16"),
        (8000, 1, 1, "PCM_16"),
        (48000, 6, 4096 * 5 + 3, "PCM_24"),
        (96000, 1, 12345, "PCM_24"),
    ],
)
def test_flac_header_matches_the_decoded_length(
    tmp_path: Path, rate: int, channels: int, frames: int, subtype: str
) -> None:
    path = tmp_path / "a.flac"
    sf.write(path, _noise(frames, channels), rate, format="FLAC", subtype=subtype)
    _assert_header_matches_decoder(path)
    assert read_header(path).format == "FLAC"  # type: ignore[union-attr]


def test_flac_from_the_projects_encoder(tmp_path: Path) -> None:
    path = tmp_path / "ours.flac"
    path.write_bytes(encode_flac16(_noise(16000 * 2 + 333)))
    _assert_header_matches_decoder(path)
    assert header_duration_s(path) == pytest.approx((16000 * 2 + 333) / 16000, abs=0)


def test_flac_behind_an_id3_tag(tmp_path: Path) -> None:
    """Some taggers put an ID3v2 tag before `fLaC`; libFLAC skips it, and so do we."""
    flac = encode_flac16(_noise(5000), rate=22050)
    tag_body = b"TIT2" + struct.pack(">I", 6) + b"\0\0" + b"\0title" + bytes(300)
    size = len(tag_body)
    syncsafe = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])
    path = tmp_path / "tagged.flac"
    path.write_bytes(b"ID3\x03\x00\x00" + syncsafe + tag_body + flac)
    assert read_header(path) is not None
    assert read_header(path).frames == 5000  # type: ignore[union-attr]
    assert header_duration_s(path) == 5000 / 22050


@pytest.mark.parametrize(
    ("wav_format", "subtype", "channels"),
    [
        ("WAV", "PCM_16", 1),
        ("WAV", "PCM_24", 2),
        ("WAV", "PCM_32", 1),
        ("WAV", "PCM_U8", 1),
        ("WAV", "FLOAT", 2),
        ("WAV", "DOUBLE", 1),
        ("WAV", "ULAW", 1),
        ("WAV", "ALAW", 1),
        ("WAVEX", "PCM_16", 1),  # WAVE_FORMAT_EXTENSIBLE: the tag is in the sub-format GUID
        ("WAVEX", "PCM_24", 4),
        ("WAVEX", "FLOAT", 6),
        ("RF64", "PCM_16", 2),  # the 64-bit variant, sizes in the ds64 chunk
    ],
)
def test_wav_header_matches_the_decoded_length(
    tmp_path: Path, wav_format: str, subtype: str, channels: int
) -> None:
    path = tmp_path / "a.wav"
    sf.write(path, _noise(24000 + 11, channels), 24000, format=wav_format, subtype=subtype)
    _assert_header_matches_decoder(path)


def test_wavex_header_is_extensible(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    sf.write(path, _noise(100, 3), 16000, format="WAVEX", subtype="PCM_16")
    assert struct.unpack_from("<H", path.read_bytes(), 20)[0] == 0xFFFE  # WAVE_FORMAT_EXTENSIBLE
    assert read_header(path).frames == 100  # type: ignore[union-attr]


def test_wav_with_list_fact_and_junk_chunks_before_data(tmp_path: Path) -> None:
    path = _wav_with_chunks_before_data(tmp_path, frames=22050 * 2 + 5)
    _assert_header_matches_decoder(path)
    assert read_header(path).frames == 22050 * 2 + 5  # type: ignore[union-attr]


def test_wav_header_reads_only_a_few_kb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The JUNK chunk (12 KB) is skipped by a seek, not read: one head read plus 8-byte chunk
    headers and the fmt body."""
    path = _wav_with_chunks_before_data(tmp_path, frames=22050 * 10)
    read_sizes: list[int] = []
    real_fdopen = os.fdopen

    def counting_fdopen(fd: int, *args: object, **kwargs: object) -> io.RawIOBase:
        handle = real_fdopen(fd, *args, **kwargs)  # type: ignore[call-overload]
        real_read = handle.read

        def read(n: int = -1) -> bytes:
            read_sizes.append(n)
            return real_read(n)

        handle.read = read
        return handle

    monkeypatch.setattr(headers_module.os, "fdopen", counting_fdopen)
    assert read_header(path) is not None
    assert 0 < sum(read_sizes) <= 2 * HEAD_BYTES
    assert all(n > 0 for n in read_sizes)


def test_truncated_wav_counts_the_frames_that_are_there(tmp_path: Path) -> None:
    """A WAV cut short promises more frames than it holds; like libsndfile, count what is there."""
    path = tmp_path / "cut.wav"
    sf.write(path, _noise(16000), 16000, subtype="PCM_16")
    path.write_bytes(path.read_bytes()[: 44 + 2 * 1000 + 1])
    assert read_header(path).frames == 1000 == sf.info(path).frames  # type: ignore[union-attr]


def test_committed_corpora_headers_agree_with_libsndfile(corpora: Path) -> None:
    """Every FLAC/WAV of the test corpora (including the broken ones) reads as libsndfile
    reads its header; MP3, Ogg and Opus are not read (None)."""
    checked = 0
    for path in sorted(corpora.rglob("*")):
        if path.suffix.lower() not in AUDIO_SUFFIXES or path.is_symlink():
            continue
        header = read_header(path)
        if path.suffix.lower() in {".wav", ".flac"}:
            info = sf.info(path)
            assert header is not None, path
            assert (header.frames, header.sample_rate_hz, header.channels) == (
                info.frames,
                info.samplerate,
                info.channels,
            ), path
            checked += 1
        else:
            assert header is None, path
    assert checked >= 20


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"fLaC",
        b"fLaC\x00\x00\x00\x22" + bytes(10),  # STREAMINFO cut short
        b"fLaC\x04\x00\x00\x22" + bytes(34),  # first block is not STREAMINFO
        b"fLaC\x00\x00\x00\x22" + bytes(34),  # rate 0, samples 0: unknown
        b"ID3\x03\x00\x00\x7f\x7f\x7f\x7f",  # a tag claiming 256 MB, then nothing
        b"ID3\x03\x00\x00\xff\xff\xff\xff",  # not syncsafe
        b"RIFF",
        b"RIFF\x24\x00\x00\x00WAVE",
        b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00",  # fmt cut short
        b"RIFF\x24\x00\x00\x00WAVEdata\x10\x00\x00\x00" + bytes(16),  # data before any fmt
        b"RIFF\x24\x00\x00\x00WAVEJUNK\xf0\xff\xff\x7f",  # a chunk past the end of the file
        b"RIFF\x24\x00\x00\x00WAVEJUNK\xff\xff\xff\xff",  # an unknown-size chunk before data
        b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00"
        + struct.pack("<HHIIHH", 1, 1, 16000, 32000, 0, 16),  # block align 0
        b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00"
        + struct.pack("<HHIIHH", 1, 0, 16000, 32000, 2, 16),  # no channels
        b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00"
        + struct.pack("<HHIIHH", 0x11, 1, 16000, 8000, 256, 4),  # IMA ADPCM: not fixed frames
        b"RIFF\x24\x00\x00\x00WAVEfmt \x12\x00\x00\x00"
        + struct.pack("<HHIIHHH", 0xFFFE, 1, 16000, 32000, 2, 16, 22),  # extensible cut short
        b"ID3\x04\x00\x00\x00\x00\x00\x00\xff\xfb\x90\x64" + bytes(400),  # an MP3 frame
        b"OggS\x00\x02" + bytes(100),
        b"\x00" * 5000,
    ],
)
def test_malformed_or_foreign_headers_give_none(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "broken.wav"
    path.write_bytes(data)
    assert read_header(path) is None
    assert header_duration_s(path) is None
    assert read_header_bytes(data) is None


def test_truncated_real_files_never_raise(tmp_path: Path) -> None:
    """Every prefix of a real FLAC and WAV header, and random byte flips in it: None or a
    header, never an exception."""
    wav = io.BytesIO()
    sf.write(wav, _noise(2000, 2), 16000, format="WAVEX", subtype="PCM_24")
    originals = [encode_flac16(_noise(2000)), wav.getvalue()]
    rng = np.random.default_rng(7)
    for original in originals:
        for cut in range(0, 120):
            read_header_bytes(original[:cut])
        for _ in range(500):
            mutated = bytearray(original)
            for position in rng.integers(0, 80, size=3):
                mutated[position] = int(rng.integers(0, 256))
            header = read_header_bytes(bytes(mutated))
            assert header is None or (header.sample_rate_hz > 0 and header.frames >= 0)


def test_missing_files_folders_and_fifos_give_none(tmp_path: Path) -> None:
    assert read_header(tmp_path / "absent.flac") is None
    assert read_header(tmp_path) is None
    if not hasattr(os, "mkfifo"):
        return
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    result: list[object] = []
    reader = threading.Thread(target=lambda: result.append(read_header(fifo)), daemon=True)
    reader.start()
    reader.join(timeout=10)
    assert result == [None], "a FIFO must not block the inventory"


def test_module_doctests() -> None:
    result = doctest.testmod(headers_module)
    assert result.failed == 0 and result.attempted > 0
