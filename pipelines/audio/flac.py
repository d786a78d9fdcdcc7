"""FLAC passthrough: a source FLAC's own frames as the shard's FLAC, without encoding again.

A shard stores each accepted utterance as 16 kHz mono 16-bit FLAC. When the
source already is exactly that (LibriSpeech), encoding the decoded PCM again
costs more than decoding it and gives the same samples, so the quality step
stores the source's frames instead, in a rebuilt minimal stream:
`passthrough_flac(data, frames)` returns `fLaC` + one STREAMINFO block (the
source's, with the MD5 signature set to 0, "not computed") + the source's
audio frames byte for byte, or None when the rule below does not hold (the
caller then encodes the PCM as usual).

The rule: the file starts with `fLaC` (no ID3v2 tag before it); its metadata
blocks are well formed and the first is a 34-byte STREAMINFO; that STREAMINFO
says 16 000 Hz, 1 channel, 16 bits and the number of frames the decoder
returned (`frames`, not 0); the audio starts with a frame header right after
the last metadata block; and the file ends exactly where its last frame ends:
a frame header (sync code, the stream's blocking strategy, a valid CRC-8)
whose samples end at `frames`, followed by bytes whose CRC-16 is the file's
last two bytes, the last of which is not 0 (zero padding after a frame keeps
its CRC-16 valid, so a file ending in a zero byte is encoded again instead:
1 in 256). So every other metadata block (VORBIS_COMMENT tags, PICTURE,
APPLICATION, SEEKTABLE, CUESHEET, PADDING) and anything after the frames
(an ID3v1 or APE tag) is dropped or refuses the passthrough: nothing of a
user's tags or pictures reaches a shard.

Why the stored member decodes to the measured PCM: the caller decoded these
very bytes (libsndfile / libFLAC, which checks every frame's CRC-16 and fails
on a mismatch) to get the PCM it measures and hashes (`pcm_sha256`), the
frames are copied unchanged, and STREAMINFO keeps the frame count, rate, bit
depth and block and frame sizes that describe them. The MD5 is zeroed rather
than copied: it would be the source's claim, which nothing here verifies
(computing it would cost a fifth of a decode), and 0 is the format's "unknown";
the shard index's `pcm_sha256` is the content hash. The bytes depend only on
the source file, so shards stay deterministic; they differ from what our own
encoder would write for the same PCM (another encoder's frames, no
VORBIS_COMMENT block), never in the samples.
"""

from __future__ import annotations

import functools

import numpy as np

FLAC_MARKER = b"fLaC"
STREAMINFO_TYPE = 0
STREAMINFO_BYTES = 34
INVALID_BLOCK_TYPE = 127
LAST_BLOCK_FLAG = 0x80
PASSTHROUGH_RATE_HZ = 16000
PASSTHROUGH_CHANNELS = 1
PASSTHROUGH_BITS = 16
_UNKNOWN_MAX_FRAME_BYTES = 1 << 20
"""How far from the end the last frame header is looked for when STREAMINFO gives no
maximum frame size (a 16-bit mono frame of 65 535 samples takes at most ~131 KB)."""
_SAMPLE_SIZE_CODES = {0, 4}  # "from STREAMINFO", 16 bits
# (lowest first byte, mask of its value bits) of a UTF-8 coded number with 0 ... 6 more bytes.
_UTF8_LEADS = (
    (0x00, 0x7F),
    (0xC0, 0x1F),
    (0xE0, 0x0F),
    (0xF0, 0x07),
    (0xF8, 0x03),
    (0xFC, 0x01),
    (0xFE, 0x00),
)


def passthrough_flac(data: bytes | memoryview, frames: int) -> bytes | None:
    """The minimal 16 kHz mono 16-bit FLAC stream of `data`'s frames, or None (see the module).

    `data` is a whole FLAC file; `frames` is how many samples decoding it gave.
    """
    view = memoryview(data)
    size = len(view)
    if size < 4 + 4 + STREAMINFO_BYTES or view[:4] != FLAC_MARKER:
        return None
    position, streaminfo = 4, None
    while True:
        if position + 4 > size:
            return None
        block_type = view[position] & 0x7F
        last = view[position] & LAST_BLOCK_FLAG
        length = int.from_bytes(view[position + 1 : position + 4], "big")
        body = position + 4
        if body + length > size or block_type == INVALID_BLOCK_TYPE:
            return None
        if streaminfo is None:
            if block_type != STREAMINFO_TYPE or length != STREAMINFO_BYTES:
                return None
            streaminfo = bytes(view[body : body + STREAMINFO_BYTES])
        elif block_type == STREAMINFO_TYPE:
            return None
        position = body + length
        if last:
            break
    audio = position
    max_block = int.from_bytes(streaminfo[2:4], "big")
    max_frame_bytes = int.from_bytes(streaminfo[7:10], "big")
    packed = int.from_bytes(streaminfo[10:18], "big")
    if (
        packed >> 44 != PASSTHROUGH_RATE_HZ
        or ((packed >> 41) & 0x7) + 1 != PASSTHROUGH_CHANNELS
        or ((packed >> 36) & 0x1F) + 1 != PASSTHROUGH_BITS
        or packed & ((1 << 36) - 1) != frames
        or frames <= 0
        or max_block < 16
    ):
        return None
    if audio + 2 > size or view[audio] != 0xFF or view[audio + 1] not in (0xF8, 0xF9):
        return None
    variable = view[audio + 1] & 1
    if not _ends_with_last_frame(view, audio, frames, max_block, max_frame_bytes, variable):
        return None
    header = bytes([LAST_BLOCK_FLAG | STREAMINFO_TYPE]) + STREAMINFO_BYTES.to_bytes(3, "big")
    return b"".join((FLAC_MARKER, header, streaminfo[:18], bytes(16), view[audio:]))


def _ends_with_last_frame(
    view: memoryview, audio: int, frames: int, max_block: int, max_frame_bytes: int, variable: int
) -> bool:
    """True when the bytes from some frame header to the end of `view` are exactly one frame
    that ends the stream: its header is valid, its samples end at `frames`, and the CRC-16
    of everything before its last two bytes is those two bytes."""
    window = max_frame_bytes if max_frame_bytes else _UNKNOWN_MAX_FRAME_BYTES
    start = max(audio, len(view) - window)
    tail = bytes(view[start:])
    stored_crc = int.from_bytes(tail[-2:], "big")
    id3v1 = len(view) >= 128 and bytes(view[-128:-125]) == b"TAG"
    if id3v1 or b"APETAGEX" in tail[-64:]:
        return False  # an ID3v1 or APE tag after the frames (its CRC could check out by chance)
    if tail[-1] == 0:
        # A frame followed by zero bytes still "ends" with a valid CRC-16 (a zero byte
        # after a message and its CRC gives another message whose CRC checks out), so a
        # file ending in a zero byte cannot be told from a frame with padding after it:
        # refused, and encoded again (1 file in 256).
        return False
    sync = bytes([0xFF, 0xF8 | variable])
    found = len(tail) - 2
    while True:
        found = tail.rfind(sync, 0, found)
        if found < 0:
            return False
        parsed = _frame_header(tail, found, variable)
        if parsed is not None:
            first_sample, block_size = parsed
            if not variable:
                first_sample *= max_block
            if first_sample + block_size == frames and crc16(tail[found:-2]) == stored_crc:
                return True
        if found == 0:
            return False


def _frame_header(data: bytes, at: int, variable: int) -> tuple[int, int] | None:
    """(frame or sample number, block size) of the frame header at `at`, or None when it is
    not one (reserved values, a bad UTF-8 number, a mono stream's channel code or a CRC-8
    mismatch)."""
    end = len(data)
    if at + 6 > end:
        return None
    block_code, rate_code = data[at + 2] >> 4, data[at + 2] & 0x0F
    channel_code, size_code = data[at + 3] >> 4, (data[at + 3] >> 1) & 0x7
    reserved = data[at + 3] & 1
    if block_code == 0 or rate_code == 15 or channel_code != 0 or reserved:
        return None
    if size_code not in _SAMPLE_SIZE_CODES:
        return None
    position = at + 4
    first = data[position]
    # The frame (or sample) number, UTF-8 coded: 1 to 6 bytes (7 for a 36-bit sample number).
    leads = [i for i, (low, mask) in enumerate(_UTF8_LEADS) if low <= first <= low + mask]
    if not leads:
        return None
    extra, mask = leads[0], _UTF8_LEADS[leads[0]][1]
    if extra == 6 and not variable:
        return None
    number = first & mask
    if position + 1 + extra > end:
        return None
    for byte in data[position + 1 : position + 1 + extra]:
        if byte & 0xC0 != 0x80:
            return None
        number = (number << 6) | (byte & 0x3F)
    position += 1 + extra
    if block_code == 1:
        block_size = 192
    elif block_code <= 5:
        block_size = 576 << (block_code - 2)
    elif block_code == 6:
        if position + 1 > end:
            return None
        block_size, position = data[position] + 1, position + 1
    elif block_code == 7:
        if position + 2 > end:
            return None
        block_size = int.from_bytes(data[position : position + 2], "big") + 1
        position += 2
    else:
        block_size = 256 << (block_code - 8)
    if rate_code == 12:
        position += 1
    elif rate_code in (13, 14):
        position += 2
    if position + 1 > end or crc8(data[at:position]) != data[position]:
        return None
    return number, block_size


# --- FLAC's checksums ------------------------------------------------------------------------


@functools.cache
def _crc8_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
        table.append(crc)
    return tuple(table)


def crc8(data: bytes) -> int:
    """FLAC's frame header CRC-8 (polynomial x^8 + x^2 + x + 1, initial 0, MSB first)."""
    table, crc = _crc8_table(), 0
    for byte in data:
        crc = table[crc ^ byte]
    return crc


_CRC16_CHUNK = 64


@functools.cache
def _crc16_tables() -> tuple[np.ndarray, np.ndarray, list[int], list[int]]:
    """(byte table, per-position chunk tables (64 x 256), advance-by-a-chunk tables hi, lo).

    CRC-16 here is linear in the message (initial 0, no final xor), so the CRC of a
    64-byte chunk is the xor of each byte's contribution at its position, and the
    CRC of chunk A then chunk B is advance(crc(A), 64 bytes) xor crc(B).
    """
    table = np.zeros(256, dtype=np.uint16)
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
        table[byte] = crc

    def advance(crc: np.ndarray) -> np.ndarray:  # one zero byte through the register
        return ((crc << 8) & 0xFFFF).astype(np.uint16) ^ table[crc >> 8]

    positions = np.empty((_CRC16_CHUNK, 256), dtype=np.uint16)
    positions[-1] = table  # the chunk's last byte: no zeros after it
    for index in range(_CRC16_CHUNK - 2, -1, -1):
        positions[index] = advance(positions[index + 1])
    high = np.arange(256, dtype=np.uint16) << 8
    low = np.arange(256, dtype=np.uint16)
    for _ in range(_CRC16_CHUNK):
        high, low = advance(high), advance(low)
    return table, positions, high.tolist(), low.tolist()


def crc16(data: bytes) -> int:
    """FLAC's frame CRC-16 (polynomial x^16 + x^15 + x^2 + 1, initial 0, MSB first).

    Vectorised over 64-byte chunks (leading zero bytes do not change a CRC with
    initial value 0, so the message is padded at the front to whole chunks).
    """
    _, positions, high, low = _crc16_tables()
    padding = -len(data) % _CRC16_CHUNK
    message = np.frombuffer(bytes(padding) + bytes(data), dtype=np.uint8)
    chunks = message.reshape(-1, _CRC16_CHUNK)
    contributions = positions[np.arange(_CRC16_CHUNK), chunks]
    crc = 0
    for chunk_crc in np.bitwise_xor.reduce(contributions, axis=1).tolist():
        crc = high[crc >> 8] ^ low[crc & 0xFF] ^ chunk_crc
    return crc
