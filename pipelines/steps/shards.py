"""The shards step for one unit: pack accepted, tokenized utterances into WebDataset tars.

Each sample carries the 16 kHz 16-bit FLAC of the prepared audio (decoded and
cut exactly as the quality and tokens steps did), its GLM-4-Voice codes and a
JSON with text, speaker, measures and lineage (policy version, tokenizer hash).
Shards and their `index.parquet` go to `lake/shards/<source>/<unit>/`.

Check of the `shards` asset: `check_complete`, every accepted utterance with codes
is in exactly one shard.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from pipelines.audio.pcm import encode_flac16
from pipelines.audio.rows import prepare_accepted_rows
from pipelines.lake.views import accepted_rows
from pipelines.project import Project
from pipelines.shards.writer import ShardSample, write_shards
from pipelines.steps.checks import CheckOutcome
from schemas import ShardIndexRow, ShardSampleMeta, SourceConfig
from schemas.hashing import file_sha256
from schemas.shards import shard_key

PROGRESS_EVERY = 200


@dataclass
class ShardsSummary:
    """What one unit's shards step wrote."""

    unit: str
    folder: Path
    rows: list[ShardIndexRow]
    n_expected: int  # accepted utterances that have codes
    index_sha256: str


def _unit_rows(project: Project, source: SourceConfig, unit: str) -> list[dict]:
    """The unit's accepted utterances that have codes, with their codes, sorted by id."""
    tokens = pl.read_parquet(project.lake.tokens(source.name, unit)).select(
        "utterance_id", "codes", "n_codes", "tokenizer_sha256", "tokenizer_is_demo"
    )
    joined = accepted_rows(project.lake, source.name, unit).join(tokens, on="utterance_id")
    return joined.sort("utterance_id").to_dicts()


def _meta(row: dict) -> ShardSampleMeta:
    return ShardSampleMeta(
        utterance_id=row["utterance_id"],
        source=row["source"],
        text=row["text"],
        speaker=row["speaker"],
        language=row["language"],
        split=row["split"],
        duration_s=row["duration_s"],
        snr_db=row["wada_snr_db"],
        stnr_snr_db=row["stnr_snr_db"],
        clipping_ratio=row["clipping_ratio"],
        silence_ratio=row["silence_ratio"],
        rms_dbfs=row["rms_dbfs"],
        bandwidth_hz=row["bandwidth_hz"],
        chars_per_s=row["chars_per_s"],
        n_codes=row["n_codes"],
        pcm_sha256=row["pcm_sha256"],
        tokenizer_sha256=row["tokenizer_sha256"],
        tokenizer_is_demo=row["tokenizer_is_demo"],
        policy_version=row["policy_version"],
    )


def shard_unit(
    project: Project,
    source: SourceConfig,
    unit: str,
    on_progress: Callable[[int, int], None] | None = None,
) -> ShardsSummary:
    """Write the unit's shards and index; return what was written."""
    rows = _unit_rows(project, source, unit)
    samples: list[ShardSample] = []
    for index, outcome in prepare_accepted_rows(source, project.directory, rows):
        row = rows[index]
        samples.append(
            ShardSample(
                key=shard_key(row["utterance_id"]),
                utterance_id=row["utterance_id"],
                flac=encode_flac16(outcome.samples),
                codes=np.asarray(row["codes"], dtype=np.uint16),
                meta=_meta(row),
            )
        )
        if on_progress is not None and len(samples) % PROGRESS_EVERY == 0:
            on_progress(len(samples), len(rows))
    folder = project.lake.shards_dir(source.name, unit)
    index_rows = write_shards(
        samples,
        folder,
        project.config.shards,
        source=source.name,
        unit=unit,
        lake_root=project.lake.root,
    )
    if on_progress is not None:
        on_progress(len(rows), len(rows))
    return ShardsSummary(
        unit=unit,
        folder=folder,
        rows=index_rows,
        n_expected=len(rows),
        index_sha256=file_sha256(project.lake.shard_index(source.name, unit)),
    )


def check_complete(summary: ShardsSummary, tokenized_ids: list[str]) -> CheckOutcome:
    """Every tokenized (accepted, with codes) utterance is in exactly one shard.

    `tokenized_ids` are the utterance ids of the unit's tokens file; `missing` and
    `repeated` list up to 10 ids each.
    """
    in_shards = Counter(row.utterance_id for row in summary.rows)
    missing = sorted(set(tokenized_ids) - set(in_shards))
    repeated = sorted(u for u, n in in_shards.items() if n > 1)
    return CheckOutcome(
        passed=not missing and not repeated and len(in_shards) == summary.n_expected,
        metadata={
            "accepted_with_codes": len(tokenized_ids),
            "in_shards": len(in_shards),
            "missing": missing[:10],
            "repeated": repeated[:10],
        },
    )


def read_tokenized_ids(project: Project, source: SourceConfig, unit: str) -> list[str]:
    """The utterance ids of the unit's tokens file: what `check_complete` expects in shards."""
    tokens = pl.read_parquet(project.lake.tokens(source.name, unit), columns=["utterance_id"])
    return tokens["utterance_id"].to_list()
