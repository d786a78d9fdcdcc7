"""FLAC passthrough (`pipelines.audio.flac`): a 16 kHz mono 16-bit FLAC's own frames, in a
minimal stream, decode to exactly the PCM the source decodes to; tags, pictures and other
metadata blocks are dropped; anything the rule does not cover (another rate, channels or
bit depth, an ID3 tag before or after the stream, a cut or mislabelled file) is refused.
Also: FLAC's CRC-8 and CRC-16 as implemented here, int16 decoding, the in-memory file
libsndfile reads and writes through, and `prepare_many(..., flac_passthrough=True)`."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipelines.audio.decode import decode
from pipelines.audio.flac import crc8, crc16, passthrough_flac
from pipelines.audio.pcm import encode_flac16, flac16_of_pcm, pcm16
from pipelines.audio.prepare import Segment, prepare_many

RATE = 16000
FFMPEG_CLI = shutil.which("ffmpeg")


def _pcm(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    speechy = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))
    return pcm16(speechy + 0.01 * rng.standard_normal(t.size))


def _flac(pcm: np.ndarray, rate: int = RATE, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, pcm, rate, format="FLAC", subtype=subtype)
    return buffer.getvalue()


def _decoded(data: bytes) -> np.ndarray:
    samples, rate = sf.read(io.BytesIO(data), dtype="int16", always_2d=False)
    assert rate == RATE
    return samples


def _blocks(data: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """The metadata blocks (type, body) of a FLAC stream and where its audio starts."""
    assert data[:4] == b"fLaC"
    position, blocks = 4, []
    while True:
        header = data[position]
        length = int.from_bytes(data[position + 1 : position + 4], "big")
        blocks.append((header & 0x7F, data[position + 4 : position + 4 + length]))
        position += 4 + length
        if header & 0x80:
            return blocks, position


def _with_blocks(data: bytes, extra: list[tuple[int, bytes]]) -> bytes:
    """`data` with metadata blocks `extra` added after its own."""
    blocks, audio = _blocks(data)
    chain = blocks + extra
    out = [b"fLaC"]
    for index, (kind, body) in enumerate(chain):
        last = 0x80 if index == len(chain) - 1 else 0
        out.append(bytes([last | kind]) + len(body).to_bytes(3, "big") + body)
    return b"".join(out) + data[audio:]


def _crc16_bitwise(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def test_crc16_matches_the_bitwise_definition_at_every_length() -> None:
    rng = np.random.default_rng(1)
    for length in (0, 1, 2, 63, 64, 65, 127, 128, 1000, 4099):
        data = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
        assert crc16(data) == _crc16_bitwise(data)
    # FLAC's check values (CRC-16/UMTS and CRC-8/SMBUS of "123456789").
    assert crc16(b"123456789") == 0xFEE8
    assert crc8(b"123456789") == 0xF4


def test_a_plain_flac_passes_through_and_decodes_to_the_same_pcm() -> None:
    pcm = _pcm(3.3)
    source = _flac(pcm)
    stored = passthrough_flac(source, pcm.size)
    assert stored is not None
    np.testing.assert_array_equal(_decoded(stored), pcm)
    blocks, audio = _blocks(stored)
    assert [kind for kind, _ in blocks] == [0]  # STREAMINFO alone
    assert blocks[0][1][18:] == bytes(16)  # MD5 "not computed"
    assert blocks[0][1][:18] == _blocks(source)[0][0][1][:18]
    assert stored[audio:] == source[_blocks(source)[1] :]  # the frames, byte for byte
    assert passthrough_flac(source, pcm.size) == stored  # deterministic


def test_tags_pictures_and_other_blocks_are_dropped() -> None:
    pcm = _pcm(2.0, seed=2)
    tags = (
        len(b"someone's encoder").to_bytes(4, "little") + b"someone's encoder"
        + (1).to_bytes(4, "little") + len(b"ARTIST=a person").to_bytes(4, "little")
        + b"ARTIST=a person"
    )  # fmt: skip
    image = b"\x89PNG" + bytes(range(256)) * 20
    picture = (
        (3).to_bytes(4, "big") + (9).to_bytes(4, "big") + b"image/png" + (0).to_bytes(4, "big")
        + bytes(16) + len(image).to_bytes(4, "big") + image
    )  # fmt: skip
    source = _with_blocks(
        _flac(pcm),
        [(4, tags), (6, picture), (2, b"APPL" + b"x" * 100), (3, bytes(18)), (1, bytes(4096))],
    )
    np.testing.assert_array_equal(_decoded(source), pcm)  # libsndfile reads it as it is
    stored = passthrough_flac(source, pcm.size)
    assert stored is not None
    assert [kind for kind, _ in _blocks(stored)[0]] == [0]
    assert b"ARTIST" not in stored and b"\x89PNG" not in stored and b"APPL" not in stored
    np.testing.assert_array_equal(_decoded(stored), pcm)


@pytest.mark.parametrize(
    "case",
    [
        "44.1 kHz",
        "stereo",
        "24 bit",
        "id3v2 before",
        "id3v1 after",
        "a zero after",
        "zeros after",
        "many zeros after",
        "junk after",
        "cut short",
        "other length",
        "not flac",
        "second streaminfo",
    ],
)
def test_what_the_rule_does_not_cover_is_refused(case: str) -> None:
    pcm = _pcm(1.5, seed=3)
    frames = pcm.size
    source = _flac(pcm)
    if case == "44.1 kHz":
        source = _flac(pcm, rate=44100)
    elif case == "stereo":
        source = _flac(np.stack([pcm, pcm], axis=1))
    elif case == "24 bit":
        source = _flac(pcm, subtype="PCM_24")
    elif case == "id3v2 before":
        source = b"ID3\x04\x00\x00\x00\x00\x00\x0a" + bytes(10) + source
    elif case == "id3v1 after":
        source += b"TAG" + b"a title".ljust(125, b"\x00")
    elif case == "a zero after":  # zeros keep a frame's CRC-16 valid: refused all the same
        source += b"\x00"
    elif case == "zeros after":
        source += b"\x00\x00\x00\x00"
    elif case == "many zeros after":
        source += bytes(1000)
    elif case == "junk after":
        source += b"\x01\x02\x03"
    elif case == "cut short":
        source = source[:-300]
    elif case == "other length":
        frames += 1
    elif case == "not flac":
        buffer = io.BytesIO()
        sf.write(buffer, pcm, RATE, format="WAV", subtype="PCM_16")
        source = buffer.getvalue()
    elif case == "second streaminfo":
        source = _with_blocks(source, [(0, _blocks(source)[0][0][1])])
    assert passthrough_flac(source, frames) is None


@pytest.mark.skipif(FFMPEG_CLI is None, reason="needs the ffmpeg command")
def test_another_encoders_flac_passes_through(tmp_path: Path) -> None:
    pcm = _pcm(4.2, seed=4)
    sf.write(tmp_path / "in.wav", pcm, RATE, subtype="PCM_16")
    out = tmp_path / "out.flac"
    assert FFMPEG_CLI is not None
    subprocess.run(
        [
            FFMPEG_CLI,
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(tmp_path / "in.wav"),
            "-compression_level",
            "8",
            "-metadata",
            "title=a title",
            str(out),
        ],
        check=True,
    )
    source = out.read_bytes()
    np.testing.assert_array_equal(_decoded(source), pcm)
    stored = passthrough_flac(source, pcm.size)
    assert stored is not None and b"a title" not in stored
    np.testing.assert_array_equal(_decoded(stored), pcm)
    # FFmpeg decodes it to the same samples.
    wav = tmp_path / "back.wav"
    (tmp_path / "stored.flac").write_bytes(stored)
    subprocess.run(
        [FFMPEG_CLI, "-loglevel", "error", "-y", "-i", str(tmp_path / "stored.flac"), str(wav)],
        check=True,
    )
    back, _ = sf.read(wav, dtype="int16")
    np.testing.assert_array_equal(back, pcm)


# --- decoding as int16, libsndfile through an in-memory file ---------------------------------


@pytest.mark.parametrize("fmt", ["FLAC", "WAV"])
def test_16_bit_files_decode_to_int16_that_is_the_float_reading_times_32768(fmt: str) -> None:
    pcm = np.random.default_rng(5).integers(-32768, 32768, (7001, 2), dtype=np.int16)
    buffer = io.BytesIO()
    sf.write(buffer, pcm, 22050, format=fmt, subtype="PCM_16")
    as_int = decode(io.BytesIO(buffer.getvalue()), f"a.{fmt.lower()}", int16=True)
    as_float = decode(io.BytesIO(buffer.getvalue()), f"a.{fmt.lower()}")
    assert as_int.samples.dtype == np.int16 and as_float.samples.dtype == np.float32
    np.testing.assert_array_equal(as_int.samples, pcm)
    np.testing.assert_array_equal(as_float.samples, pcm.astype(np.float32) / 32768)
    buffer24 = io.BytesIO()
    sf.write(buffer24, pcm, 22050, format=fmt, subtype="PCM_24")
    assert decode(buffer24, f"b.{fmt.lower()}", int16=True).samples.dtype == np.float32


def test_in_memory_files_decode_and_encode_alike_with_and_without_memfd(
    monkeypatch: pytest.MonkeyPatch, corpora: Path
) -> None:
    mp3 = (corpora / "custom/folder/speaker_b/b1.mp3").read_bytes()
    pcm = _pcm(2.5, seed=6)
    with_memfd = (
        decode(io.BytesIO(mp3), "a.mp3").samples,
        flac16_of_pcm(pcm),
        encode_flac16(pcm.astype(np.float32) / 32768),
    )
    monkeypatch.delattr(os, "memfd_create")
    without = (
        decode(io.BytesIO(mp3), "a.mp3").samples,
        flac16_of_pcm(pcm),
        encode_flac16(pcm.astype(np.float32) / 32768),
    )
    np.testing.assert_array_equal(with_memfd[0], without[0])
    assert with_memfd[1] == without[1] == with_memfd[2] == _flac(pcm)


# --- preparation ---------------------------------------------------------------------------


def test_prepare_many_passes_through_whole_16k_mono_flac_files_only(tmp_path: Path) -> None:
    pcm = _pcm(3.0, seed=7)
    (tmp_path / "a.flac").write_bytes(_flac(pcm))
    (tmp_path / "b.flac").write_bytes(_flac(pcm, rate=48000))
    sf.write(tmp_path / "c.wav", pcm, RATE, subtype="PCM_16")
    items = [
        Segment("a.flac"),
        Segment("a.flac", offset_s=0.5, duration_s=1.0),
        Segment("b.flac"),
        Segment("c.wav"),
    ]

    def open_fn(path: str, member: str | None) -> Path:
        return tmp_path / path

    results = dict(prepare_many(items, open_fn, flac_passthrough=True))
    whole, cut, other_rate, wav = (results[i] for i in range(4))
    assert whole.flac == passthrough_flac((tmp_path / "a.flac").read_bytes(), pcm.size)
    assert whole.pcm16 is not None
    np.testing.assert_array_equal(whole.pcm16, pcm)
    np.testing.assert_array_equal(_decoded(whole.flac), whole.pcm16)
    np.testing.assert_array_equal(whole.samples, pcm.astype(np.float32) / 32768)
    assert cut.flac is None and cut.pcm16 is not None
    np.testing.assert_array_equal(cut.pcm16, pcm[8000:24000])
    assert other_rate.flac is None and other_rate.pcm16 is None  # resampled: floats
    assert wav.flac is None and wav.pcm16 is not None  # exact 16-bit, but not a FLAC
    hashes = {hashlib.sha256(p.pcm16.tobytes()).hexdigest() for p in (whole, wav)}
    assert len(hashes) == 1
    # Without the option nothing is passed through; the samples are the same.
    plain = dict(prepare_many(items, open_fn))
    assert all(p.flac is None for p in plain.values())
    np.testing.assert_array_equal(plain[0].samples, whole.samples)


def test_a_stream_ending_in_a_zero_byte_is_refused_as_padding_would_be() -> None:
    # A zero byte after a frame keeps its CRC-16 valid, so the two cannot be told apart.
    rng = np.random.default_rng(8)
    for _ in range(5000):
        pcm = rng.integers(-3000, 3000, int(rng.integers(1600, 3200)), dtype=np.int16)
        source = _flac(pcm)
        if source[-1] == 0:
            break
    else:
        pytest.fail("no FLAC ending in a zero byte found")
    np.testing.assert_array_equal(_decoded(source), pcm)
    assert passthrough_flac(source, pcm.size) is None
    assert passthrough_flac(source[:-1] + b"\x01", pcm.size) is None  # nor a broken CRC
