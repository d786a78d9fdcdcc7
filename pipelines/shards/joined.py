"""Read audio and codes together: the aligned audio and code shards joined by key.

A unit's accepted utterances are two WebDataset fields (`schemas/shards.py`): audio
shards (`<key>.flac`, `<key>.json`) and, per tokenizer, code shards (`<key>.codes.npy`,
`<key>.json`), code shard N holding exactly the keys of audio shard N in the same
order. Training reads the code shards alone; a reader that wants the audio and the
codes of each utterance walks an audio shard and its code shard in lockstep:

- `iter_joined(lake_root, audio_shard, code_shard)`: one pair of shards;
- `iter_unit_joined(lake_root, source, unit, tokenizer_sha256)`: every pair of a unit
  (from its code index, which names each code shard's audio shard);
- `iter_release_joined(lake_root, release, split=None)`: a release's kept utterances
  (from `release.json` and `utterances.parquet`), optionally one split, each shard
  checked against the sha256 the release recorded first.

Each yields `JoinedSample`s (key, FLAC bytes, `audio()` to decode them, uint16 codes,
both `.json` records). Only tar headers are walked (`iter_shard_samples`): nothing is
extracted to disk. A pair whose keys differ (a missing, extra or reordered sample),
whose members are incomplete, or whose codes were made from other audio (the two
records' `pcm_sha256` differ, e.g. audio rewritten after a policy edit and not yet
tokenized again) is refused with a `ShardFormatError` naming both shards.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path, PurePosixPath

import numpy as np
import pyarrow.parquet as pq

from pipelines.audio.pcm import decode_flac16
from pipelines.lake.paths import Lake
from pipelines.shards.reader import iter_shard_samples, read_code_index
from schemas.hashing import file_sha256
from schemas.release import SPLITS, Release
from schemas.shards import (
    AudioSampleMeta,
    CodeSampleMeta,
    ShardFormatError,
    decode_codes,
    shard_number,
)


@dataclass(frozen=True)
class JoinedSample:
    """One utterance with its audio (from the audio shard) and its codes (from the code shard).

    `audio_shard` and `code_shard` are the shard paths as given to `iter_joined`
    (lake-relative in the index and release files).
    """

    key: str
    flac: bytes
    codes: np.ndarray
    audio_meta: AudioSampleMeta
    code_meta: CodeSampleMeta
    audio_shard: str
    code_shard: str

    @property
    def utterance_id(self) -> str:
        """The utterance's id (the same in both records)."""
        return self.audio_meta.utterance_id

    def audio(self) -> np.ndarray:
        """The 16 kHz mono audio as float32 samples (k / 32768 of the stored 16-bit PCM)."""
        return decode_flac16(self.flac)


def _path(lake_root: Path, shard: str | Path) -> Path:
    """A shard's file: `shard` itself when absolute, else relative to the lake root."""
    path = Path(shard)
    return path if path.is_absolute() else Path(lake_root) / PurePosixPath(str(shard))


def _member(members: dict[str, bytes], extension: str, shard: str | Path, key: str) -> bytes:
    data = members.get(extension)
    if data is None:
        raise ShardFormatError(f"{shard}: sample {key!r} has no .{extension} member")
    return data


def iter_joined(
    lake_root: Path, audio_shard: str | Path, code_shard: str | Path
) -> Iterator[JoinedSample]:
    """Yield the samples of an audio shard joined with its aligned code shard, in tar order.

    `audio_shard` and `code_shard` are paths relative to `lake_root` (as the shard
    indexes and releases record them) or absolute. Both tars are walked header by
    header in lockstep; nothing is extracted. ShardFormatError, naming both shards,
    when the shard numbers differ (`audio-000003.tar` pairs with `codes-000003.tar`),
    when the n-th keys differ or one shard ends first, when a sample lacks a member,
    or when the codes were made from other audio than the shard holds.
    """
    audio_path, code_path = _path(lake_root, audio_shard), _path(lake_root, code_shard)
    pair = f"audio shard {audio_shard} and code shard {code_shard}"
    numbers = shard_number(audio_path.name), shard_number(code_path.name)
    if None not in numbers and numbers[0] != numbers[1]:
        raise ShardFormatError(f"{pair} are not aligned: shard numbers {numbers[0]} ≠ {numbers[1]}")
    missing = object()
    walked = zip_longest(
        iter_shard_samples(audio_path), iter_shard_samples(code_path), fillvalue=missing
    )
    for position, (audio, codes) in enumerate(walked):
        if audio is missing or codes is missing:
            longer, extra = ("audio", audio) if codes is missing else ("code", codes)
            raise ShardFormatError(
                f"{pair} are not aligned: the {longer} shard has more samples "
                f"(sample {position}, {extra[0]!r}, has no partner)"
            )
        (audio_key, audio_members), (code_key, code_members) = audio, codes
        if audio_key != code_key:
            raise ShardFormatError(
                f"{pair} are not aligned: sample {position} is {audio_key!r} in the audio "
                f"shard and {code_key!r} in the code shard"
            )
        audio_meta = AudioSampleMeta.model_validate_json(
            _member(audio_members, "json", audio_shard, audio_key)
        )
        code_meta = CodeSampleMeta.model_validate_json(
            _member(code_members, "json", code_shard, code_key)
        )
        if code_meta.pcm_sha256 != audio_meta.pcm_sha256:
            raise ShardFormatError(
                f"{pair}: the codes of {audio_key!r} were made from other audio than the "
                f"audio shard holds (pcm sha256 {code_meta.pcm_sha256} vs "
                f"{audio_meta.pcm_sha256}); tokenize the unit again"
            )
        yield JoinedSample(
            key=audio_key,
            flac=_member(audio_members, "flac", audio_shard, audio_key),
            codes=decode_codes(_member(code_members, "codes.npy", code_shard, code_key)),
            audio_meta=audio_meta,
            code_meta=code_meta,
            audio_shard=str(audio_shard),
            code_shard=str(code_shard),
        )


def unit_shard_pairs(
    lake_root: Path, source: str, unit: str, tokenizer_sha256: str
) -> list[tuple[str, str]]:
    """(audio shard, code shard) pairs of a unit under a tokenizer, lake-relative, in order.

    Read from the unit's code index (each row names its audio shard); FileNotFoundError
    when the unit has no complete code shards for this tokenizer.
    """
    lake = Lake(Path(lake_root))
    folder = lake.codes_dir(tokenizer_sha256, source, unit)
    if not lake.code_index(tokenizer_sha256, source, unit).exists():
        raise FileNotFoundError(
            f"{folder} has no index: unit {source}/{unit} has no complete code shards "
            f"for tokenizer {tokenizer_sha256[:16]}"
        )
    return list(dict.fromkeys((row.audio_shard, row.shard) for row in read_code_index(folder)))


def iter_unit_joined(
    lake_root: Path, source: str, unit: str, tokenizer_sha256: str
) -> Iterator[JoinedSample]:
    """Every sample of a unit, audio joined with the codes of `tokenizer_sha256`, key order."""
    for audio_shard, code_shard in unit_shard_pairs(lake_root, source, unit, tokenizer_sha256):
        yield from iter_joined(lake_root, audio_shard, code_shard)


def _one_to_one(pairs: list[tuple[str, str]], where: Path) -> list[tuple[str, str]]:
    """`pairs`, after refusing an audio shard paired with two code shards or the reverse."""
    for side, name in ((0, "audio"), (1, "code")):
        shards = [pair[side] for pair in pairs]
        if len(set(shards)) != len(shards):
            raise ShardFormatError(f"{where}: a {name} shard is paired with two shards")
    return pairs


def release_shard_pairs(lake_root: Path, release: str) -> list[tuple[str, str]]:
    """(audio shard, code shard) pairs holding a release's utterances, lake-relative, sorted.

    ShardFormatError when the release pairs one audio shard with two code shards (or
    the other way round).
    """
    utterances = Lake(Path(lake_root)).release_utterances(release)
    table = pq.read_table(utterances, columns=["shard", "codes_shard"]).to_pydict()
    pairs = sorted(set(zip(table["shard"], table["codes_shard"], strict=True)))
    return _one_to_one(pairs, utterances)


def iter_release_joined(
    lake_root: Path, release: str, split: str | None = None, *, verify: bool = True
) -> Iterator[JoinedSample]:
    """A release's kept utterances (one split's when `split` is given) with audio and codes.

    Duplicates the release dropped are skipped; only the shard pairs holding a wanted
    utterance are read, in sorted order, samples in key order within each. With
    `verify` (the default) each shard's sha256 is compared with the one `release.json`
    recorded before it is read, and a shard rewritten since the release is refused
    (ShardFormatError).
    """
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    lake = Lake(Path(lake_root))
    description = Release.model_validate_json(lake.release_file(release).read_bytes())
    recorded = {s.shard: s.sha256 for s in [*description.shards, *description.code_shards]}
    utterances = lake.release_utterances(release)
    table = pq.read_table(utterances, columns=["key", "shard", "codes_shard", "split"])
    columns = table.to_pydict()
    rows = list(
        zip(columns["key"], columns["shard"], columns["codes_shard"], columns["split"], strict=True)
    )
    _one_to_one(sorted({(audio, codes) for _, audio, codes, _ in rows}), utterances)
    wanted = {
        key for key, _, _, in_split in rows if in_split is not None and split in (None, in_split)
    }
    pairs = sorted({(audio, codes) for key, audio, codes, _ in rows if key in wanted})
    for audio_shard, code_shard in pairs:
        if verify:
            for shard in (audio_shard, code_shard):
                actual = file_sha256(_path(lake_root, shard))
                if recorded.get(shard) != actual:
                    raise ShardFormatError(
                        f"release {release!r}: {shard} has sha256 {actual}, the release "
                        f"recorded {recorded.get(shard)}; it was rewritten after the release"
                    )
        for sample in iter_joined(lake_root, audio_shard, code_shard):
            if sample.key in wanted:
                yield sample
