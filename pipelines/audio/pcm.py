"""The 16-bit PCM form the shards store, its content hash, and its FLAC encoding.

Every measure and every code is taken on the audio as stored (`stored_samples`),
so re-measuring or re-tokenizing a shard's FLAC reproduces the catalogue.
"""

from __future__ import annotations

import io
import os

import numpy as np
import soundfile as sf

from schemas.audio import PCM16_SCALE, TARGET_SAMPLE_RATE_HZ
from schemas.hashing import bytes_sha256

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
    nan = np.isnan(scaled)
    if nan.any():  # cheaper than np.nan_to_num on the (usual) audio without NaN
        scaled[nan] = 0.0
    return scaled.astype(np.int16)


def stored_samples(samples: np.ndarray) -> np.ndarray:
    """The audio as the shards store it: `samples` through 16-bit PCM, back to float32.

    Measures and codes are taken on this form, so anyone who re-measures or
    re-tokenizes a shard's FLAC gets the catalogue's numbers.
    """
    return pcm16(samples).astype(np.float32) / np.float32(PCM16_SCALE)


def pcm_sha256(samples: np.ndarray) -> str:
    """Content hash of audio: sha256 (hex) of the little-endian int16 PCM (`pcm16`) of it.

    Pass the prepared 16 kHz mono signal: equal audio gives an equal hash
    whatever container or rate it came from (a WAV and a FLAC of the same
    16-bit samples hash equal), so it finds duplicates across sources.
    """
    return bytes_sha256(pcm16(samples).astype("<i2", copy=False).tobytes())


def flac16_of_pcm(pcm: np.ndarray, rate: int = TARGET_SAMPLE_RATE_HZ) -> bytes:
    """16-bit FLAC bytes of int16 PCM (`pcm16`'s output), at `rate` Hz.

    libsndfile writes into an anonymous in-memory file (Linux `memfd_create`) when
    it can, rather than through a `BytesIO` and one Python callback per write; the
    bytes are the same either way.
    """
    return _flac16_bytes(pcm, rate)


def _flac16_bytes(samples: np.ndarray, rate: int) -> bytes:
    if hasattr(os, "memfd_create"):
        try:
            fd = os.memfd_create("voxlake-flac", os.MFD_CLOEXEC)
        except OSError:
            fd = -1
        if fd >= 0:
            try:
                with sf.SoundFile(
                    fd, "w", rate, _channels(samples), "PCM_16", format="FLAC", closefd=False
                ) as handle:
                    handle.write(samples)
                size = os.fstat(fd).st_size
                return os.pread(fd, size, 0) if size else b""
            finally:
                os.close(fd)
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def _channels(samples: np.ndarray) -> int:
    return 1 if samples.ndim == 1 else int(samples.shape[1])


def decode_flac16(data: bytes) -> np.ndarray:
    """The float32 samples (k / 32768) of a 16-bit FLAC file's bytes: `stored_samples` form."""
    samples, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    return samples


def encode_flac16(samples: np.ndarray, rate: int = TARGET_SAMPLE_RATE_HZ) -> bytes:
    """Encode mono (or (frames, channels)) float samples as 16-bit FLAC bytes at `rate` Hz.

    The samples are converted with `pcm16` first (libsndfile would scale floats
    by 32767). The bytes depend only on the samples, the rate and the libFLAC
    version (its vendor string is in the file; there are no timestamps).
    """
    return _flac16_bytes(pcm16(samples), rate)
