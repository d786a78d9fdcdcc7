"""The tokens step for one unit: GLM-4-Voice codes for every accepted utterance.

Reads the unit's accepted utterances (`pipelines.lake.views.accepted_rows`:
quality decisions joined with the manifest for their audio references),
prepares their audio exactly as the quality step did (mono, 16 kHz, cut; each
recording decoded once), tokenizes in bounded chunks (the tokenizer sorts
windows by length inside a chunk), and writes `lake/tokens/<source>/<unit>.parquet`
atomically. Codes from the demo checkpoint are flagged in every row: random
weights, meaningless codes.

Check of the `tokens` asset: `check_code_rate`, every accepted utterance has a row
holding exactly the number of codes its sample count implies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from pipelines.audio.pcm import stored_samples
from pipelines.audio.rows import prepare_accepted_rows
from pipelines.lake.atomic import write_parquet_atomic
from pipelines.lake.views import accepted_rows
from pipelines.project import Project
from pipelines.runtime import limit_torch_threads
from pipelines.steps.checks import CheckOutcome
from pipelines.tokenizer import project_tokenizer
from schemas import TOKENS_ARROW_SCHEMA, SourceConfig, TokensRecord
from schemas.audio import TARGET_SAMPLE_RATE_HZ
from schemas.hashing import file_sha256

# Audio tokenized per call: bounds memory (float32 samples + features) per step.
CHUNK_AUDIO_S = 600.0


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


def tokenize_unit(
    project: Project,
    source: SourceConfig,
    unit: str,
    on_progress: Callable[[int, int], None] | None = None,
) -> TokensSummary:
    """Tokenize the unit's accepted utterances and write their codes."""
    # As many torch threads as this step's share of the cores (`$VOXLAKE_TORCH_THREADS`):
    # concurrent runs on one machine must not each spin up a thread per core.
    limit_torch_threads()
    tokenizer = project_tokenizer(project.directory, project.config.tokenizer)
    rows = accepted_rows(project.lake, source.name, unit).to_dicts()
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
        stored = stored_samples(outcome.samples)
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
        sha256=file_sha256(path),
        frame=frame,
        n_accepted=len(rows),
        audio_s=float(sum(r["duration_s"] for r in records)),
        tokenizer_sha256=tokenizer.checkpoint_sha256,
        tokenizer_is_demo=tokenizer.is_demo,
    )


def check_code_rate(summary: TokensSummary) -> CheckOutcome:
    """Every accepted utterance has a row, and each row holds `expected_code_count(n_samples)`.

    12.5 codes per second, per 30 s window, padding rule included; `examples` lists
    up to 10 utterances with the wrong count.
    """
    # Imported here: `inference.glm4voice` loads torch, which the definitions must not.
    from inference.glm4voice import expected_code_count

    frame = summary.frame
    wrong = [
        row["utterance_id"]
        for row in frame.select("utterance_id", "n_samples", "n_codes").iter_rows(named=True)
        if row["n_codes"] != expected_code_count(row["n_samples"])
    ]
    complete = frame.height == summary.n_accepted
    return CheckOutcome(
        passed=not wrong and complete,
        metadata={
            "rows": frame.height,
            "accepted": summary.n_accepted,
            "wrong_count": len(wrong),
            "examples": wrong[:10],
        },
    )
