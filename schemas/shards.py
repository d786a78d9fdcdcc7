"""The shard contract: audio shards and code shards, two aligned WebDataset fields.

A unit's accepted utterances are stored as two fields, as lhotse Shar keeps one
tar per field:

- audio shards `lake/shards/<source>/<unit>/audio-000000.tar` …, written by the
  quality step (the one step that decodes the source): per sample
  `<key>.flac` (16 kHz mono 16-bit) and `<key>.json` (`AudioSampleMeta`), with
  `index.parquet` beside them (one `ShardIndexRow` per sample);
- code shards `lake/codes/<tokenizer>/<source>/<unit>/codes-000000.tar` …,
  written by the tokens step from the audio shards: per sample `<key>.codes.npy`
  (uint16 GLM-4-Voice codes) and `<key>.json` (`CodeSampleMeta`: what training
  needs besides the codes), with their own `index.parquet` (`CodeIndexRow`).
  `<tokenizer>` is the first 16 hex digits of the tokenizer checkpoint's hash.

Code shard `codes-N.tar` holds exactly the keys of audio shard `audio-N.tar`, in
the same order: the two fields join by key, shard by shard. Members of a sample
are consecutive in their tar.
"""

from __future__ import annotations

import hashlib
import io
import re
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from schemas.arrow import arrow_schema


class ShardLimits(BaseModel):
    """Upper bounds of one audio shard (whichever is reached first closes it).

    Code shards follow the audio shards' boundaries, so they are bounded too.
    """

    model_config = ConfigDict(extra="forbid")

    max_bytes: int = Field(512 * 1024 * 1024, ge=1024, description="tar bytes per shard")
    max_samples: int = Field(10_000, ge=1, description="samples per shard")


class AudioSampleMeta(BaseModel):
    """`<key>.json` of an audio shard: what was said, by whom, and how the audio measured.

    Nothing here depends on the quality policy or the tokenizer, so neither a policy
    edit nor another tokenizer changes an audio shard's bytes.
    """

    model_config = ConfigDict(extra="forbid")

    utterance_id: str
    source: str
    text: str | None
    speaker: str | None
    language: str | None
    split: str | None
    duration_s: float
    snr_db: float | None = Field(description="WADA-SNR")
    stnr_snr_db: float | None
    clipping_ratio: float | None
    silence_ratio: float | None
    rms_dbfs: float | None
    bandwidth_hz: float | None
    chars_per_s: float | None
    pcm_sha256: str


class CodeSampleMeta(BaseModel):
    """`<key>.json` of a code shard: what a training job needs besides the codes."""

    model_config = ConfigDict(extra="forbid")

    utterance_id: str
    source: str
    text: str | None
    speaker: str | None
    language: str | None
    split: str | None
    duration_s: float
    n_codes: int
    pcm_sha256: str = Field(description="hash of the 16-bit audio the codes were made from")
    tokenizer_sha256: str
    tokenizer_is_demo: bool


class ShardIndexRow(BaseModel):
    """One sample of an audio shard in `index.parquet`: its shard and its members' byte ranges."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(description="WebDataset key: no dots, unique in the lake")
    utterance_id: str
    source: str
    unit: str
    shard: str = Field(description="shard path relative to the lake root")
    shard_sha256: str
    shard_bytes: int
    flac_offset: int = Field(description="byte offset of the member's data in the tar")
    flac_size: int
    json_offset: int
    json_size: int
    duration_s: float
    pcm_sha256: str


class CodeIndexRow(BaseModel):
    """One sample of a code shard in the code `index.parquet`, and its audio shard."""

    model_config = ConfigDict(extra="forbid")

    key: str
    utterance_id: str
    source: str
    unit: str
    shard: str = Field(description="code shard path relative to the lake root")
    shard_sha256: str
    shard_bytes: int
    codes_offset: int
    codes_size: int
    json_offset: int
    json_size: int
    duration_s: float
    n_codes: int
    audio_shard: str = Field(description="the aligned audio shard, relative to the lake root")
    tokenizer_sha256: str
    tokenizer_is_demo: bool


SHARD_INDEX_ARROW_SCHEMA = arrow_schema(ShardIndexRow)
CODE_INDEX_ARROW_SCHEMA = arrow_schema(CodeIndexRow)


# --- names and codecs of shard files and members ----------------------------------------

AUDIO_MEMBERS: tuple[str, ...] = ("flac", "json")
"""The members of every audio sample, in the order they are written."""
CODE_MEMBERS: tuple[str, ...] = ("codes.npy", "json")
"""The members of every code sample, in the order they are written."""

Member = Literal["flac", "codes", "json"]

TAR_ENCODING = "utf-8"
"""Member names are stored as UTF-8 (PAX headers when longer than USTAR allows)."""

_NPY_MAGIC_V1 = b"\x93NUMPY\x01\x00"
_NPY_UINT16_HEADER = re.compile(
    rb"\{'descr': '<u2', 'fortran_order': False, 'shape': \((\d+),\), \} *\n"
)

INDEX_NAME = "index.parquet"
AUDIO_SHARD_PREFIX = "audio"
CODE_SHARD_PREFIX = "codes"
TOKENIZER_DIR_HEX = 16
"""Hex digits of the tokenizer checkpoint hash that name its code folder."""

_KEY_DISALLOWED = re.compile(r"[^A-Za-z0-9_-]")
_KEY_VALID = re.compile(r"[A-Za-z0-9_-]+")
_HASH_SUFFIX = re.compile(r"-[0-9a-f]{8}$")
_SHARD_NAME = re.compile(r"(audio|codes)-(\d{6,})\.tar")


class ShardFormatError(ValueError):
    """A shard (or a sample offered to the writer) breaks the shard conventions."""


def shard_key(utterance_id: str) -> str:
    """The WebDataset key of an utterance: no dots, deterministic, unique per utterance id.

    `/` becomes `__` and every other character outside `[A-Za-z0-9_-]` becomes
    `_`. The key is the readable id itself when `key.replace("__", "/")` gives
    the id back and the key does not already end like a hash suffix
    (`-` + 8 lowercase hex); otherwise `-` + the first 8 hex digits of
    sha1(utterance_id) are appended, so two ids that sanitise alike (`a/b` and
    `a__b`, `x.y` and `x_y`) stay distinct.

    >>> shard_key("Y0000000000_--5llN02F84_S00000")
    'Y0000000000_--5llN02F84_S00000'
    >>> shard_key("a/b"), shard_key("a__b")
    ('a__b', 'a__b-659432c5')
    >>> shard_key("x.y"), shard_key("x_y")
    ('x_y-0ae4ca44', 'x_y')
    >>> "." in shard_key("corpus/spk.7/utt 1.wav")
    False
    """
    if not utterance_id:
        raise ValueError("an empty utterance id has no shard key")
    key = _KEY_DISALLOWED.sub("_", utterance_id.replace("/", "__"))
    if key.replace("__", "/") != utterance_id or _HASH_SUFFIX.search(key):
        key += "-" + hashlib.sha1(utterance_id.encode("utf-8")).hexdigest()[:8]
    return key


def shard_name(prefix: str, index: int) -> str:
    """File name of the `index`-th shard (0-based) of a field: `audio-000041.tar`."""
    return f"{prefix}-{index:06d}.tar"


def shard_number(name: str) -> int | None:
    """The 0-based number of a shard file name (`audio-000041.tar` → 41); None if not one."""
    match = _SHARD_NAME.fullmatch(name)
    return int(match.group(2)) if match else None


def tokenizer_dir_name(tokenizer_sha256: str) -> str:
    """The folder of a tokenizer's code shards: the first 16 hex digits of its hash."""
    if not re.fullmatch(r"[0-9a-f]{16,64}", tokenizer_sha256):
        raise ValueError(f"not a tokenizer sha256: {tokenizer_sha256!r}")
    return tokenizer_sha256[:TOKENIZER_DIR_HEX]


def encode_codes(codes: np.ndarray) -> bytes:
    """The `<key>.codes.npy` payload: `np.save` of the codes as little-endian uint16, no pickle."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(codes, dtype="<u2"), allow_pickle=False)
    return buffer.getvalue()


def decode_codes(data: bytes) -> np.ndarray:
    """The codes of a `<key>.codes.npy` payload as a 1-D uint16 array (a writable copy).

    The layout `encode_codes` writes (npy 1.0, little-endian uint16, 1-D) is
    recognised from its header text and read with `np.frombuffer`, ~15x faster
    than `np.load`, whose header parsing dominates for arrays of a few hundred
    codes; any other npy goes through `np.lib.format.read_array` (no pickle)
    and must hold 1-D uint16 values.
    """
    if data[:8] == _NPY_MAGIC_V1:
        start = 10 + int.from_bytes(data[8:10], "little")
        match = _NPY_UINT16_HEADER.fullmatch(data, 10, start)
        if match and 2 * int(match.group(1)) == len(data) - start:
            return np.frombuffer(data, dtype="<u2", offset=start).astype(np.uint16)
    codes = np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
    if codes.ndim != 1 or codes.dtype.kind != "u" or codes.dtype.itemsize != 2:
        raise ShardFormatError(f"codes must be 1-D uint16, got {codes.dtype} {codes.shape}")
    return codes.astype(np.uint16)
