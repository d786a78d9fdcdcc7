"""The tokens step for one unit: GLM-4-Voice codes for every accepted utterance.

Reads the unit's accepted utterances (quality decisions joined with the
manifest for their audio references), prepares their audio exactly as the
quality step did (mono, 16 kHz, cut; each recording decoded once), tokenizes
in bounded chunks (the tokenizer sorts windows by length inside a chunk), and
writes `lake/tokens/<source>/<unit>.parquet` atomically. Codes from the demo
checkpoint are flagged in every row: random weights, meaningless codes.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from inference.glm4voice import GLM4VoiceTokenizer, load_tokenizer, write_demo_checkpoint
from pipelines.audio import TARGET_SAMPLE_RATE_HZ, pcm16
from pipelines.lake import sha256_file, write_parquet_atomic
from pipelines.prepared import prepare_accepted_rows
from pipelines.project import Project
from schemas import TOKENS_ARROW_SCHEMA, SourceConfig, TokensRecord
from schemas.tokens import DEMO_TOKENIZER_DIR

log = logging.getLogger(__name__)

# Audio tokenized per call: bounds memory (float32 samples + features) per step.
CHUNK_AUDIO_S = 600.0


def checkpoint_dir(project: Project) -> Path:
    """The project's tokenizer checkpoint folder."""
    path = Path(project.config.tokenizer.checkpoint).expanduser()
    return path if path.is_absolute() else project.directory / path


def ensure_checkpoint(project: Project) -> Path:
    """The checkpoint folder; the default demo checkpoint is written when it is missing."""
    path = checkpoint_dir(project)
    if (path / "model.safetensors").exists():
        return path
    if project.config.tokenizer.checkpoint == DEMO_TOKENIZER_DIR:
        log.warning("writing the random-weight demo tokenizer checkpoint to %s", path)
        write_demo_checkpoint(path)
        return path
    raise FileNotFoundError(
        f"tokenizer checkpoint {path} has no model.safetensors; download "
        "THUDM/glm-4-voice-tokenizer there, or point tokenizer.checkpoint in voxlake.yaml "
        "at a checkpoint folder"
    )


@functools.lru_cache(maxsize=2)
def _cached_tokenizer(
    path: str, sha256: str, device: str, dtype: str, max_batch_frames: int
) -> GLM4VoiceTokenizer:
    # Keyed by content hash: a replaced checkpoint in the same folder loads anew.
    del sha256
    return load_tokenizer(
        Path(path),
        device=None if device == "auto" else device,
        dtype=dtype,
        max_batch_frames=max_batch_frames,
    )


def project_tokenizer(project: Project) -> GLM4VoiceTokenizer:
    """The project's tokenizer, loaded once per process and content hash."""
    from inference.glm4voice import checkpoint_sha256

    path = ensure_checkpoint(project)
    settings = project.config.tokenizer
    return _cached_tokenizer(
        str(path),
        checkpoint_sha256(path),
        settings.device,
        settings.dtype,
        settings.max_batch_frames,
    )


@dataclass
class TokensSummary:
    """What one unit's tokens step produced."""

    unit: str
    path: Path
    sha256: str
    frame: pl.DataFrame
    n_accepted: int
    audio_s: float
    tokenizer_sha256: str
    tokenizer_is_demo: bool


def accepted_rows(project: Project, source: SourceConfig, unit: str) -> list[dict]:
    """The unit's accepted utterances with their audio references, sorted by id."""
    lake = project.lake
    quality = pl.read_parquet(lake.quality(source.name, unit)).filter(
        pl.col("status") == "accepted"
    )
    manifest = pl.read_parquet(lake.manifest(source.name, unit)).select(
        "utterance_id", "audio_path", "audio_member", "offset_s", "duration_s", "is_segment"
    )
    joined = quality.select("utterance_id", "source", "unit").join(
        manifest, on="utterance_id", how="left"
    )
    return joined.sort("utterance_id").to_dicts()


def tokenize_unit(
    project: Project,
    source: SourceConfig,
    unit: str,
    on_progress: Callable[[int, int], None] | None = None,
) -> TokensSummary:
    """Tokenize the unit's accepted utterances and write their codes."""
    tokenizer = project_tokenizer(project)
    rows = accepted_rows(project, source, unit)
    records: list[dict] = []
    pending: list[tuple[int, np.ndarray]] = []
    pending_s = 0.0

    def flush() -> None:
        nonlocal pending, pending_s
        if not pending:
            return
        codes = tokenizer.tokenize([samples for _, samples in pending])
        for (index, samples), unit_codes in zip(pending, codes, strict=True):
            row = rows[index]
            records.append(
                TokensRecord(
                    utterance_id=row["utterance_id"],
                    source=row["source"],
                    unit=row["unit"],
                    duration_s=len(samples) / TARGET_SAMPLE_RATE_HZ,
                    n_samples=len(samples),
                    codes=unit_codes.tolist(),
                    n_codes=len(unit_codes),
                    tokenizer_sha256=tokenizer.checkpoint_sha256,
                    tokenizer_is_demo=tokenizer.is_demo,
                ).model_dump()
            )
        if on_progress is not None:
            on_progress(len(records), len(rows))
        pending, pending_s = [], 0.0

    for index, outcome in prepare_accepted_rows(source, project.directory, rows):
        # Tokenize exactly the audio the shards will store (16-bit), so anyone who
        # re-tokenizes a shard's FLAC gets the same codes.
        stored = pcm16(outcome.samples).astype(np.float32) / np.float32(32768.0)
        pending.append((index, stored))
        pending_s += outcome.duration_s
        if pending_s >= CHUNK_AUDIO_S:
            flush()
    flush()
    records.sort(key=lambda r: r["utterance_id"])
    table = pa.Table.from_pylist(records, schema=TOKENS_ARROW_SCHEMA)
    path = project.lake.tokens(source.name, unit)
    write_parquet_atomic(path, table)
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return TokensSummary(
        unit=unit,
        path=path,
        sha256=sha256_file(path),
        frame=frame,
        n_accepted=len(rows),
        audio_s=float(sum(r["duration_s"] for r in records)),
        tokenizer_sha256=tokenizer.checkpoint_sha256,
        tokenizer_is_demo=tokenizer.is_demo,
    )
