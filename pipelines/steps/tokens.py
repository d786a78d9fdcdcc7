"""The tokens step for one unit: code shards aligned with the unit's audio shards.

Reads the unit's audio shards (`lake/shards/<source>/<unit>/`, written by the
quality step; the source is never decoded again), tokenizes the stored 16-bit
audio in bounded chunks (the tokenizer sorts windows by length inside a chunk),
and writes the code shards `lake/codes/<tokenizer>/<source>/<unit>/codes-NNNNNN.tar`
with the same keys, in the same order, cut at the same shard boundaries, plus
their `index.parquet`. Each code sample is `<key>.codes.npy` and a small
`<key>.json` (`CodeSampleMeta`: transcript, speaker, language, split, code
count, tokenizer hash), so training reads code shards only. Codes from the demo
checkpoint are flagged in every sample: random weights, meaningless codes.

The code index records (in its Parquet key-value metadata) the sha256 of the audio
index it was made from: when that audio index is unchanged (a policy edit that
changed no decision, a run the UI repeats), the step keeps the code shards as
they are and loads no tokenizer.

Check of the `tokens` asset: `check_code_rate`, every sample of the audio shards
has codes, exactly as many as its sample count implies.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from pipelines.audio.pcm import decode_flac16
from pipelines.project import Project
from pipelines.runtime import limit_torch_threads
from pipelines.shards.reader import read_code_index, read_index, read_sample_members
from pipelines.shards.writer import (
    PlacedSample,
    ShardField,
    ShardSample,
    code_index_row,
    encode_meta,
    write_shards,
)
from pipelines.steps.checks import CheckOutcome
from pipelines.tokenizer import ensure_checkpoint, project_tokenizer
from schemas import SourceConfig
from schemas.audio import TARGET_SAMPLE_RATE_HZ
from schemas.hashing import file_sha256
from schemas.shards import (
    CODE_INDEX_ARROW_SCHEMA,
    CODE_MEMBERS,
    CODE_SHARD_PREFIX,
    AudioSampleMeta,
    CodeIndexRow,
    CodeSampleMeta,
    ShardIndexRow,
    encode_codes,
)

CODE_FIELD = ShardField(prefix=CODE_SHARD_PREFIX, members=CODE_MEMBERS)

# Audio tokenized per call: bounds memory (float32 samples + features) per step.
CHUNK_AUDIO_S = 600.0
TOKENS_VERSION = "1"
"""Bumped when the code shards this step writes change for the same audio and tokenizer."""
AUDIO_INDEX_META = b"voxlake.audio_index_sha256"
TOKENS_VERSION_META = b"voxlake.tokens_version"


@dataclass(frozen=True)
class TokenizedSample:
    """What the code-rate check needs of one tokenized sample."""

    utterance_id: str
    n_samples: int
    n_codes: int


@dataclass
class TokensSummary:
    """What one unit's tokens step produced."""

    unit: str
    folder: Path
    index_sha256: str
    audio_index_sha256: str
    rows: list[CodeIndexRow]
    samples: list[TokenizedSample]
    n_audio_samples: int
    audio_s: float
    tokenizer_sha256: str
    tokenizer_is_demo: bool
    reused: bool = False
    """True when the code shards were already those of this audio and tokenizer."""

    @property
    def n_codes(self) -> int:
        """Codes written for the unit."""
        return sum(s.n_codes for s in self.samples)


def _shard_sizes(audio_rows: list[ShardIndexRow]) -> list[int]:
    """Samples per audio shard, in shard order: the boundaries the code shards keep."""
    sizes: list[int] = []
    previous: str | None = None
    for row in audio_rows:  # index order: sorted by key, so grouped by shard
        if row.shard != previous:
            sizes.append(0)
            previous = row.shard
        sizes[-1] += 1
    return sizes


def tokenize_unit(
    project: Project,
    source: SourceConfig,
    unit: str,
    on_progress: Callable[[int, int], None] | None = None,
) -> TokensSummary:
    """Tokenize the unit's audio shards and write its code shards and their index."""
    lake = project.lake
    audio_folder = lake.shards_dir(source.name, unit)
    audio_index = lake.shard_index(source.name, unit)
    if not audio_index.exists():
        raise FileNotFoundError(f"{audio_index} is missing: materialize quality[{unit}] first")
    audio_index_sha256 = file_sha256(audio_index)
    audio_rows = read_index(audio_folder)
    tokenizer_sha256 = checkpoint_sha256(project)
    kept = _current_codes(project, source, unit, tokenizer_sha256, audio_index_sha256)
    if kept is not None:
        return kept

    # As many torch threads as this step's share of the cores (`$VOXLAKE_TORCH_THREADS`):
    # concurrent runs on one machine must not each spin up a thread per core.
    limit_torch_threads()
    tokenizer = project_tokenizer(project.directory, project.config.tokenizer)
    audio_by_key = {row.key: row for row in audio_rows}

    samples: list[ShardSample] = []
    tokenized: dict[str, TokenizedSample] = {}
    pending: list[tuple[ShardIndexRow, AudioSampleMeta, np.ndarray]] = []
    pending_s = 0.0

    def flush() -> None:
        nonlocal pending, pending_s
        if not pending:
            return
        codes = tokenizer.tokenize([audio for _, _, audio in pending])
        for (row, meta, audio), unit_codes in zip(pending, codes, strict=True):
            code_meta = CodeSampleMeta(
                utterance_id=row.utterance_id,
                source=row.source,
                text=meta.text,
                speaker=meta.speaker,
                language=meta.language,
                split=meta.split,
                duration_s=len(audio) / TARGET_SAMPLE_RATE_HZ,
                n_codes=len(unit_codes),
                pcm_sha256=row.pcm_sha256,
                tokenizer_sha256=tokenizer.checkpoint_sha256,
                tokenizer_is_demo=tokenizer.is_demo,
            )
            samples.append(
                ShardSample(
                    key=row.key,
                    utterance_id=row.utterance_id,
                    payloads=(encode_codes(unit_codes), encode_meta(code_meta)),
                )
            )
            tokenized[row.key] = TokenizedSample(row.utterance_id, len(audio), len(unit_codes))
        if on_progress is not None:
            on_progress(len(samples), len(audio_rows))
        pending, pending_s = [], 0.0

    root = lake.root
    for row, (flac, meta_json) in zip(
        audio_rows, read_sample_members(root, audio_rows, ("flac", "json")), strict=True
    ):
        # The codes are taken on exactly the audio the shard stores (16-bit FLAC).
        audio = decode_flac16(flac)
        pending.append((row, AudioSampleMeta.model_validate_json(meta_json), audio))
        pending_s += len(audio) / TARGET_SAMPLE_RATE_HZ
        if pending_s >= CHUNK_AUDIO_S:
            flush()
    flush()

    folder = lake.codes_dir(tokenizer.checkpoint_sha256, source.name, unit)

    def index_row(placed: PlacedSample) -> CodeIndexRow:
        audio_row = audio_by_key[placed.sample.key]
        return code_index_row(
            placed,
            source.name,
            unit,
            duration_s=audio_row.duration_s,
            n_codes=tokenized[placed.sample.key].n_codes,
            audio_shard=audio_row.shard,
            tokenizer_sha256=tokenizer.checkpoint_sha256,
            tokenizer_is_demo=tokenizer.is_demo,
        )

    write_shards(
        samples,
        folder,
        CODE_FIELD,
        lake_root=root,
        index_row=index_row,
        index_schema=CODE_INDEX_ARROW_SCHEMA,
        sizes=_shard_sizes(audio_rows),
        index_metadata={
            AUDIO_INDEX_META: audio_index_sha256.encode(),
            TOKENS_VERSION_META: TOKENS_VERSION.encode(),
        },
    )
    code_rows = read_code_index(folder)
    return TokensSummary(
        unit=unit,
        folder=folder,
        index_sha256=file_sha256(lake.code_index(tokenizer.checkpoint_sha256, source.name, unit)),
        audio_index_sha256=audio_index_sha256,
        rows=code_rows,
        samples=[tokenized[row.key] for row in audio_rows if row.key in tokenized],
        n_audio_samples=len(audio_rows),
        audio_s=float(sum(s.n_samples for s in tokenized.values()) / TARGET_SAMPLE_RATE_HZ),
        tokenizer_sha256=tokenizer.checkpoint_sha256,
        tokenizer_is_demo=tokenizer.is_demo,
    )


def checkpoint_sha256(project: Project) -> str:
    """Content hash of the configured tokenizer checkpoint (written first if it is the demo's).

    Cheap: the file hashes are cached beside the checkpoint; no model is loaded.
    """
    from inference.glm4voice import tokenizer_checkpoint_sha256

    return tokenizer_checkpoint_sha256(
        ensure_checkpoint(project.directory, project.config.tokenizer)
    )


def _is_demo_checkpoint(folder: Path) -> bool:
    """Whether a checkpoint is voxlake's random-weight demo (`voxlake_demo` in config.json)."""
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    return "voxlake_demo" in config


def _current_codes(
    project: Project,
    source: SourceConfig,
    unit: str,
    tokenizer_sha256: str,
    audio_index_sha256: str,
) -> TokensSummary | None:
    """The unit's code shards as they are, if made from this audio index by this step's
    version with this tokenizer (and still all there); None when they must be written."""
    lake = project.lake
    index = lake.code_index(tokenizer_sha256, source.name, unit)
    if not index.exists():
        return None
    metadata = pq.read_schema(index).metadata or {}
    if (
        metadata.get(AUDIO_INDEX_META) != audio_index_sha256.encode()
        or metadata.get(TOKENS_VERSION_META) != TOKENS_VERSION.encode()
    ):
        return None
    rows = read_code_index(index.parent)
    if any(not (lake.root / shard).is_file() for shard in {row.shard for row in rows}):
        return None
    samples = [
        TokenizedSample(
            row.utterance_id, round(row.duration_s * TARGET_SAMPLE_RATE_HZ), row.n_codes
        )
        for row in rows
    ]
    return TokensSummary(
        unit=unit,
        folder=index.parent,
        index_sha256=file_sha256(index),
        audio_index_sha256=audio_index_sha256,
        rows=rows,
        samples=samples,
        n_audio_samples=len(rows),
        audio_s=sum(row.duration_s for row in rows),
        tokenizer_sha256=tokenizer_sha256,
        tokenizer_is_demo=_is_demo_checkpoint(
            ensure_checkpoint(project.directory, project.config.tokenizer)
        ),
        reused=True,
    )


def check_code_rate(summary: TokensSummary) -> CheckOutcome:
    """Every audio shard sample has codes, `expected_code_count(n_samples)` of them, in the
    code shard aligned with its audio shard.

    12.5 codes per second, per 30 s window, padding rule included; `examples` lists
    up to 10 utterances with the wrong count.
    """
    # Imported here: `inference.glm4voice` loads torch, which the definitions must not.
    from inference.glm4voice import expected_code_count

    wrong = [
        s.utterance_id for s in summary.samples if s.n_codes != expected_code_count(s.n_samples)
    ]
    complete = len(summary.rows) == len(summary.samples) == summary.n_audio_samples
    return CheckOutcome(
        passed=not wrong and complete,
        metadata={
            "samples": len(summary.rows),
            "audio_samples": summary.n_audio_samples,
            "wrong_count": len(wrong),
            "examples": wrong[:10],
        },
    )
