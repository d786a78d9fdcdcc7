"""What both release exports share: selecting a release's kept utterances, joining their
audio and code shards, staging the output folder, the export record.

Export a release for training outside voxlake: VITA-Audio JSONL, or a Hugging Face dataset.

A release keeps each utterance in two aligned fields (`schemas/shards.py`): its audio
shard (`<key>.flac`, `<key>.json`) and its code shard (`<key>.codes.npy`, `<key>.json`,
code shard N holding exactly the keys of audio shard N). An export that needs audio and
codes joins them by key through the two shard indexes (the code index names each sample's
audio shard, and both name the 16-bit audio's hash, so a misaligned or stale pair is
refused); an export that needs only codes reads the code shards only and never touches
an audio shard. Members are read by their index offsets (a seek and a read per member,
never a tar extraction). Exports skip the duplicates the release dropped (`split` null),
check that every shard they read still has the sha256 the release recorded, and publish
the whole output folder with one rename: the export is built in a hidden staging folder
beside `out_dir` (`.<name>.<random>.tmp`) and renamed onto `out_dir` when complete, so a
reader never sees half an export and a failed export leaves no half folder behind.

The underscore names here are shared by the two export modules of this package only.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np
import polars as pl

from pipelines.lake.atomic import write_bytes_atomic
from pipelines.lake.paths import Lake
from pipelines.project import Project
from pipelines.releases.create import load_release
from pipelines.shards.reader import read_code_index, read_index, read_members
from pipelines.version import code_version
from schemas import CodeIndexRow, CodeSampleMeta, Release, ShardIndexRow
from schemas.release import SPLITS, ReleaseShard
from schemas.shards import INDEX_NAME, decode_codes

EXPORT_FILE = "export.json"
STAGING_SUFFIX = ".tmp"

ExportFormat = Literal["vita-jsonl", "hf", "lhotse", "lhotse-shar"]


class ExportError(Exception):
    """An export cannot be written; the message says why (nothing was written)."""


@dataclass(frozen=True)
class ExportStats:
    """What an export wrote.

    `n_utterances` counts the release's kept utterances (duplicates excluded),
    `n_exported` the utterances written (VITA: audio files with their code
    cache; HF: rows), `examples_per_split` the JSONL lines (VITA) or rows (HF)
    per split, `duration_s` the seconds of audio the exported utterances hold.
    """

    format: ExportFormat
    release: str
    out_dir: Path
    n_utterances: int
    n_exported: int
    n_duplicates_skipped: int
    n_without_text: int
    n_special_token_text: int
    examples_per_split: dict[str, int] = field(default_factory=dict)
    utterances_per_split: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0

    def counts(self) -> dict[str, Any]:
        """The counts as a JSON-ready mapping (as written to `export.json`)."""
        return {
            "n_utterances": self.n_utterances,
            "n_exported": self.n_exported,
            "n_duplicates_skipped": self.n_duplicates_skipped,
            "n_without_text": self.n_without_text,
            "n_special_token_text": self.n_special_token_text,
            "examples_per_split": dict(self.examples_per_split),
            "utterances_per_split": dict(self.utterances_per_split),
            "duration_s": round(self.duration_s, 3),
        }


# ---------------------------------------------------------------------------
# Reading a release's samples: code shards, joined by key with the audio shards if asked


@dataclass(frozen=True)
class _Sample:
    """One kept utterance of a release: its codes and code shard metadata, and its FLAC
    bytes when the export reads audio (None otherwise)."""

    key: str
    utterance_id: str
    split: str
    speaker: str | None
    language: str | None
    source: str
    duration_s: float
    flac: bytes | None
    codes: np.ndarray
    meta: CodeSampleMeta


@dataclass(frozen=True)
class _Selection:
    """A release's kept utterances (sorted by key), their code index rows and, when the
    export reads audio, their audio index rows (empty otherwise)."""

    release: Release
    kept: list[dict[str, Any]]
    code_rows: dict[str, CodeIndexRow]
    audio_rows: dict[str, ShardIndexRow]
    n_duplicates: int
    with_audio: bool

    def splits(self) -> list[str]:
        """The splits that hold kept utterances, in train, dev, test order."""
        present = {u["split"] for u in self.kept}
        return [s for s in SPLITS if s in present] + sorted(present - set(SPLITS))


def _index_folders(shards: list[ReleaseShard]) -> list[tuple[str, Path]]:
    """(unit, its shard folder relative to the lake root) of a release's shards, sorted."""
    return sorted({(f"{s.source}/{s.unit}", Path(PurePosixPath(s.shard).parent)) for s in shards})


def _rows_of(
    lake: Lake,
    release_name: str,
    shards: list[ReleaseShard],
    wanted: dict[str, dict[str, Any]],
    field_name: str,
) -> dict[str, Any]:
    """The index rows of the `wanted` keys, from the index of every unit of `shards`."""
    rows: dict[str, Any] = {}
    read = read_code_index if field_name == "code" else read_index
    for unit, folder in _index_folders(shards):
        index = lake.root / folder / INDEX_NAME
        if not index.exists():
            raise ExportError(
                f"release {release_name!r}: no {field_name} shard index {index} "
                f"(unit {unit} was removed or is being rewritten)"
            )
        rows.update((row.key, row) for row in read(lake.root / folder) if row.key in wanted)
    return rows


def _check_row(
    release_name: str,
    utterance: dict[str, Any],
    row: ShardIndexRow | CodeIndexRow | None,
    shard: str,
    sha_by_shard: dict[str, str],
    field_name: str,
) -> None:
    """ExportError unless `row` is the utterance's, in the shard the release says, unchanged."""
    key = utterance["key"]
    if row is None:
        raise ExportError(
            f"release {release_name!r}: {utterance['utterance_id']!r} ({key}) is in no "
            f"{field_name} shard index of the release's units"
        )
    if row.shard != shard or row.utterance_id != utterance["utterance_id"]:
        raise ExportError(
            f"release {release_name!r}: {key} is now in {field_name} shard {row.shard} as "
            f"{row.utterance_id!r}, the release says {shard} as {utterance['utterance_id']!r}"
        )
    if sha_by_shard.get(row.shard) != row.shard_sha256:
        raise ExportError(
            f"release {release_name!r}: {field_name} shard {row.shard} has sha256 "
            f"{row.shard_sha256}, the release recorded {sha_by_shard.get(row.shard)}; the "
            "shard was rewritten after the release was made"
        )


def _select(project: Project, release_name: str, *, with_audio: bool) -> _Selection:
    """Load a release and find every kept utterance's code index row (and audio index row
    when `with_audio`); ExportError when one is missing, moved, rewritten or misaligned.

    Without audio, no audio shard or audio index is opened: a codes-only export works on
    a machine that holds the code shards only.
    """
    release, utterances = load_release(project, release_name)
    if "codes_shard" not in utterances.columns:
        raise ExportError(
            f"release {release_name!r} was made before codes were shards of their own "
            "(its utterances have no codes_shard); create a new release to export"
        )
    kept = utterances.filter(pl.col("split").is_not_null()).sort("key").to_dicts()
    if not kept:
        raise ExportError(f"release {release_name!r} keeps no utterance")
    wanted = {u["key"]: u for u in kept}
    if len(wanted) != len(kept):
        raise ExportError(f"release {release_name!r} lists a key twice")
    lake = project.lake
    code_rows = _rows_of(lake, release_name, release.code_shards, wanted, "code")
    code_sha = {s.shard: s.sha256 for s in release.code_shards}
    for key, utterance in wanted.items():
        _check_row(
            release_name, utterance, code_rows.get(key), utterance["codes_shard"], code_sha, "code"
        )
    audio_rows: dict[str, ShardIndexRow] = {}
    if with_audio:
        audio_rows = _rows_of(lake, release_name, release.shards, wanted, "audio")
        audio_sha = {s.shard: s.sha256 for s in release.shards}
        for key, utterance in wanted.items():
            audio = audio_rows.get(key)
            _check_row(release_name, utterance, audio, utterance["shard"], audio_sha, "audio")
            assert audio is not None
            codes = code_rows[key]
            # The join: the code sample must be the one aligned with this audio sample,
            # made from exactly this audio.
            if codes.audio_shard != audio.shard:
                raise ExportError(
                    f"release {release_name!r}: {key} is in audio shard {audio.shard}, but its "
                    f"code shard {codes.shard} is aligned with {codes.audio_shard}"
                )
    return _Selection(
        release, kept, code_rows, audio_rows, utterances.height - len(kept), with_audio
    )


def _iter_samples(lake: Lake, selection: _Selection, split: str) -> Iterator[_Sample]:
    """The kept utterances of one split, sorted by key: codes and metadata from the code
    shards, and the FLAC bytes from the aligned audio shards when the selection has audio."""
    utterances = [u for u in selection.kept if u["split"] == split]
    code_rows = [selection.code_rows[u["key"]] for u in utterances]
    # Readers in lockstep: each opens a shard once per run of rows in it.
    codes_and_meta = zip(
        read_members(lake.root, code_rows, "codes"),
        read_members(lake.root, code_rows, "json"),
        strict=True,
    )
    flacs: Iterator[bytes | None]
    if selection.with_audio:
        audio_rows = [selection.audio_rows[u["key"]] for u in utterances]
        flacs = read_members(lake.root, audio_rows, "flac")
    else:
        flacs = iter([None] * len(utterances))
    for utterance, row, (codes_npy, meta_json), flac in zip(
        utterances, code_rows, codes_and_meta, flacs, strict=True
    ):
        meta = CodeSampleMeta.model_validate_json(meta_json)
        codes = decode_codes(codes_npy)
        if meta.utterance_id != row.utterance_id or len(codes) != meta.n_codes:
            raise ExportError(
                f"{row.shard}: members of {row.key} disagree with the index "
                f"({meta.utterance_id!r}, {len(codes)} codes, meta says {meta.n_codes})"
            )
        if selection.with_audio:
            audio = selection.audio_rows[row.key]
            if audio.pcm_sha256 != meta.pcm_sha256:
                raise ExportError(
                    f"{row.shard}: the codes of {row.key} were made from other audio than "
                    f"{audio.shard} holds (pcm sha256 {meta.pcm_sha256} vs {audio.pcm_sha256})"
                )
        yield _Sample(
            key=row.key,
            utterance_id=row.utterance_id,
            split=split,
            speaker=utterance["speaker"],
            language=utterance["language"],
            source=utterance["source"],
            duration_s=float(utterance["duration_s"]),
            flac=flac,
            codes=codes,
            meta=meta,
        )


# ---------------------------------------------------------------------------
# The output folder


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and next(path.iterdir(), None) is None


def _check_out_dir(project: Project, out_dir: Path, overwrite: bool) -> Path:
    """The resolved `out_dir`, after refusing destinations an export must not replace."""
    out_dir = out_dir.expanduser().resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir} exists and is not a folder")
    for protected in (project.directory.resolve(), project.lake.root.resolve()):
        if protected == out_dir or out_dir in protected.parents:
            raise ExportError(f"{out_dir} holds the project or its lake; export elsewhere")
    if out_dir.is_dir() and not _is_empty_dir(out_dir):
        if not overwrite:
            raise ExportError(f"{out_dir} is not empty; pass overwrite=True to replace it")
        if not (out_dir / EXPORT_FILE).is_file():
            # overwrite replaces an earlier export, never an arbitrary folder.
            raise ExportError(
                f"{out_dir} is not empty and holds no {EXPORT_FILE}: it is not an export, "
                "so it is not replaced even with overwrite=True"
            )
    return out_dir


@contextlib.contextmanager
def _staged(out_dir: Path, overwrite: bool) -> Iterator[Path]:
    """A staging folder beside `out_dir`, renamed onto it when the block succeeds.

    An earlier export in `out_dir` is moved aside, the staging folder renamed in,
    and the old one deleted. On any exception the staging folder is removed and
    `out_dir` is untouched.
    """
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=STAGING_SUFFIX, dir=out_dir.parent)
    )
    try:
        yield staging
        old: Path | None = None
        if _is_empty_dir(out_dir):
            out_dir.rmdir()
        elif out_dir.exists():
            if not overwrite:
                raise ExportError(f"{out_dir} was written to during the export; nothing replaced")
            old = Path(
                tempfile.mkdtemp(
                    prefix=f".{out_dir.name}.old.", suffix=STAGING_SUFFIX, dir=out_dir.parent
                )
            )
            os.replace(out_dir, old / out_dir.name)
        os.rename(staging, out_dir)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _write_json(path: Path, data: dict[str, Any]) -> None:
    text = json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False, allow_nan=False)
    write_bytes_atomic(path, (text + "\n").encode("utf-8"))


def _export_record(
    export_format: ExportFormat, selection: _Selection, stats: ExportStats, extra: dict[str, Any]
) -> dict[str, Any]:
    """`export.json`: the release, its lineage, the exporter's code version and the counts."""
    release = selection.release
    return {
        "format": export_format,
        "release": release.name,
        "release_created_at": release.created_at.isoformat(),
        "where": release.where,
        "policy_versions": release.policy_versions,
        "tokenizer_sha256": release.tokenizer_sha256,
        "tokenizer_is_demo": release.tokenizer_is_demo,
        "code_version": release.code_version,
        "export_code_version": code_version(),
        # What the export read: the audio shards only when it holds audio.
        "shards": (
            [{"shard": s.shard, "sha256": s.sha256} for s in release.shards]
            if selection.with_audio
            else []
        ),
        "code_shards": [{"shard": s.shard, "sha256": s.sha256} for s in release.code_shards],
        "counts": stats.counts(),
        **extra,
    }
