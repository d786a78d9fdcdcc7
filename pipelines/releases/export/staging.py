"""What both release exports share: selecting a release's kept utterances, staging the
output folder, the export record.

Export a release for training outside voxlake: VITA-Audio JSONL, or a Hugging Face dataset.

Both exports read the release's utterances through the shard index (a seek and a
read per member, never a tar extraction), skip the duplicates the release
dropped (`split` null), check that every shard still has the sha256 the release
recorded, and publish the whole output folder with one rename: the export is
built in a hidden staging folder beside `out_dir` (`.<name>.<random>.tmp`) and
renamed onto `out_dir` when complete, so a reader never sees half an export and
a failed export leaves no half folder behind.

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
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from pipelines.lake.atomic import write_bytes_atomic
from pipelines.lake.paths import Lake
from pipelines.project import Project
from pipelines.releases.create import load_release
from pipelines.shards.reader import read_index, read_members
from pipelines.version import code_version
from schemas import Release, ShardIndexRow, ShardSampleMeta
from schemas.release import SPLITS
from schemas.shards import INDEX_NAME, decode_codes

EXPORT_FILE = "export.json"
STAGING_SUFFIX = ".tmp"

ExportFormat = Literal["vita-jsonl", "hf"]


class ExportError(Exception):
    """An export cannot be written; the message says why (nothing was written)."""


@dataclass(frozen=True)
class ExportStats:
    """What an export wrote.

    `n_utterances` counts the release's kept utterances (duplicates excluded),
    `n_exported` the utterances written (VITA: audio files with their code
    cache; HF: rows), `examples_per_split` the JSONL lines (VITA) or rows (HF)
    per split, `duration_s` the seconds of audio written.
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
# Reading a release's samples through the shard index


@dataclass(frozen=True)
class _Sample:
    """One kept utterance of a release with its shard members."""

    key: str
    utterance_id: str
    split: str
    speaker: str | None
    language: str | None
    source: str
    duration_s: float
    flac: bytes
    codes: np.ndarray
    meta: ShardSampleMeta


@dataclass(frozen=True)
class _Selection:
    """A release's kept utterances (sorted by key) and their index rows."""

    release: Release
    kept: list[dict[str, Any]]
    rows: dict[str, ShardIndexRow]
    n_duplicates: int

    def splits(self) -> list[str]:
        """The splits that hold kept utterances, in train, dev, test order."""
        present = {u["split"] for u in self.kept}
        return [s for s in SPLITS if s in present] + sorted(present - set(SPLITS))


def _select(project: Project, release_name: str) -> _Selection:
    """Load a release and find every kept utterance's index row; ExportError when one is off."""
    release, utterances = load_release(project, release_name)
    kept_frame = utterances.filter(pl.col("split").is_not_null()).sort("key")
    kept = kept_frame.to_dicts()
    if not kept:
        raise ExportError(f"release {release_name!r} keeps no utterance")
    wanted = {u["key"]: u for u in kept}
    if len(wanted) != len(kept):
        raise ExportError(f"release {release_name!r} lists a key twice")
    sha_by_shard = {s.shard: s.sha256 for s in release.shards}
    rows: dict[str, ShardIndexRow] = {}
    for source, unit in sorted({(s.source, s.unit) for s in release.shards}):
        shard_dir = project.lake.shards_dir(source, unit)
        if not (shard_dir / INDEX_NAME).exists():
            raise ExportError(
                f"release {release_name!r}: no shard index {shard_dir / INDEX_NAME} "
                f"(unit {source}/{unit} was removed or is being rewritten)"
            )
        for row in read_index(shard_dir):
            if row.key in wanted:
                rows[row.key] = row
    for key, utterance in wanted.items():
        row = rows.get(key)
        if row is None:
            raise ExportError(
                f"release {release_name!r}: {utterance['utterance_id']!r} ({key}) is in no "
                "shard index of the release's units"
            )
        if row.shard != utterance["shard"] or row.utterance_id != utterance["utterance_id"]:
            raise ExportError(
                f"release {release_name!r}: {key} is now in {row.shard} as "
                f"{row.utterance_id!r}, the release says {utterance['shard']} as "
                f"{utterance['utterance_id']!r}"
            )
        if sha_by_shard.get(row.shard) != row.shard_sha256:
            raise ExportError(
                f"release {release_name!r}: shard {row.shard} has sha256 {row.shard_sha256}, "
                f"the release recorded {sha_by_shard.get(row.shard)}; the shard was rewritten "
                "after the release was made"
            )
    return _Selection(release, kept, rows, utterances.height - len(kept))


def _iter_samples(lake: Lake, selection: _Selection, split: str) -> Iterator[_Sample]:
    """The kept utterances of one split, sorted by key, with their FLAC, codes and metadata."""
    utterances = [u for u in selection.kept if u["split"] == split]
    rows = [selection.rows[u["key"]] for u in utterances]
    # Three readers in lockstep: each opens a shard once per run of rows in it.
    members = zip(
        read_members(lake.root, rows, "flac"),
        read_members(lake.root, rows, "codes"),
        read_members(lake.root, rows, "json"),
        strict=True,
    )
    for utterance, row, (flac, codes_npy, meta_json) in zip(utterances, rows, members, strict=True):
        meta = ShardSampleMeta.model_validate_json(meta_json)
        codes = decode_codes(codes_npy)
        if meta.utterance_id != row.utterance_id or len(codes) != meta.n_codes:
            raise ExportError(
                f"{row.shard}: members of {row.key} disagree with the index "
                f"({meta.utterance_id!r}, {len(codes)} codes, meta says {meta.n_codes})"
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
        "shards": [{"shard": s.shard, "sha256": s.sha256} for s in release.shards],
        "counts": stats.counts(),
        **extra,
    }
