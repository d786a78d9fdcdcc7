"""The audit's sampled utterances: a seeded draw per source, re-measured and re-tokenized.

`draw_sample` picks up to N utterances of each source with a seed (the same seed
and scope draw the same utterances); `remeasure` computes their quality measures
again from the audio the audio shard stores and compares them with the
catalogue's; `retokenize` runs the project's tokenizer over the same audio and
compares with the codes the code shard stores; `sampled_utterances` gathers what
the report shows and plays for each.
"""

from __future__ import annotations

import random

import numpy as np
import polars as pl

from pipelines.project import Project
from pipelines.releases.audit_records import Remeasure, SampledUtterance
from quality.measures import measure
from schemas.audio import TARGET_SAMPLE_RATE_HZ

# Re-measuring from 16-bit audio moves a measure by quantisation noise only.
REMEASURE_TOLERANCE = {
    "wada_snr_db": 0.5,
    "rms_dbfs": 0.05,
    "silence_ratio": 0.02,
    "clipping_ratio": 1e-3,
    "bandwidth_hz": 100.0,
}


def draw_sample(rows: pl.DataFrame, per_source: int, seed: int) -> set[str]:
    """Up to `per_source` utterance ids of each source in `rows`, drawn with `seed`.

    The draw depends only on the ids in scope and the seed, not on row order.
    """
    rng = random.Random(seed)
    chosen: set[str] = set()
    by_source: dict[str, list[str]] = {}
    for source, utterance_id in rows.select("source", "utterance_id").iter_rows():
        by_source.setdefault(source, []).append(utterance_id)
    for source in sorted(by_source):
        ids = sorted(by_source[source])
        chosen.update(rng.sample(ids, min(per_source, len(ids))))
    return chosen


def sampled_utterances(
    rows: pl.DataFrame, chosen: set[str], members_of: dict[str, dict[str, bytes]]
) -> list[SampledUtterance]:
    """The listening sample, by source and id, with each FLAC as its audio shard stores it."""
    picked = rows.filter(pl.col("utterance_id").is_in(sorted(chosen))).sort(
        "source", "utterance_id"
    )
    return [
        SampledUtterance(
            utterance_id=row["utterance_id"],
            source=row["source"],
            text=row["text"],
            speaker=row["speaker"],
            language=row["language"],
            split=row["split"],
            duration_s=row["duration_s"],
            n_codes=row["n_codes"],
            measures={name: row[name] for name in REMEASURE_TOLERANCE},
            flac=members_of.get(row["utterance_id"], {}).get("flac"),
        )
        for row in picked.to_dicts()
    ]


def remeasure(
    rows: pl.DataFrame, audio_for: dict[str, np.ndarray], problems: list[str]
) -> list[Remeasure]:
    """Measure each utterance of `audio_for` again; a value off by more than its tolerance
    (or present on one side only) is a problem."""
    by_id = {
        r["utterance_id"]: r
        for r in rows.filter(pl.col("utterance_id").is_in(list(audio_for))).to_dicts()
    }
    records = []
    for utterance_id, audio in sorted(audio_for.items()):
        row = by_id[utterance_id]
        again = measure(audio, TARGET_SAMPLE_RATE_HZ, row["text"])
        record = Remeasure(utterance_id)
        records.append(record)
        for name, tolerance in REMEASURE_TOLERANCE.items():
            stored, fresh = row[name], getattr(again, name)
            record.stored[name], record.fresh[name] = stored, fresh
            if stored is None or fresh is None:
                if (stored is None) != (fresh is None):
                    problems.append(f"{utterance_id}: {name} {stored} vs re-measured {fresh}")
                continue
            if abs(stored - fresh) > tolerance:
                problems.append(
                    f"{utterance_id}: {name} is {stored:.4g} in the catalogue but "
                    f"re-measures {fresh:.4g} (tolerance {tolerance})"
                )
    return records


def retokenize(
    project: Project,
    rows: pl.DataFrame,
    audio_for: dict[str, np.ndarray],
    codes_for: dict[str, np.ndarray],
    problems: list[str],
) -> dict[str, float]:
    """Re-tokenize the sampled audio (as the audio shard stores it) and compare with the codes
    in the code shard; return each re-tokenized utterance's `code_agreement`."""
    ids = sorted(audio_for.keys() & codes_for.keys())
    if not ids:
        return {}
    from pipelines.tokenizer import project_tokenizer

    tokenizer = project_tokenizer(project.directory, project.config.tokenizer)
    sha_by_id = dict(rows.select("utterance_id", "tokenizer_sha256").iter_rows())
    same_tokenizer = [u for u in ids if sha_by_id.get(u) == tokenizer.checkpoint_sha256]
    skipped = len(ids) - len(same_tokenizer)
    if skipped:
        problems.append(
            f"{skipped} sampled utterances were tokenized with another checkpoint than the "
            "project's; re-tokenizing them proves nothing"
        )
    if not same_tokenizer:
        return {}
    agreement: dict[str, float] = {}
    fresh = tokenizer.tokenize([audio_for[u] for u in same_tokenizer])
    for utterance_id, codes in zip(same_tokenizer, fresh, strict=True):
        codes = np.asarray(codes)
        agreement[utterance_id] = code_agreement(codes, codes_for[utterance_id])
        if not np.array_equal(codes, codes_for[utterance_id]):
            problems.append(
                f"{utterance_id}: re-tokenized codes differ from those in the code shard"
            )
    return agreement


def code_agreement(fresh: np.ndarray, stored: np.ndarray) -> float:
    """Share of code positions where `fresh` equals `stored`, over the longer of the two
    (a missing or extra code counts as a disagreement); 1.0 for two empty sequences.

    >>> code_agreement(np.array([1, 2, 3, 4]), np.array([1, 2, 0]))
    0.5
    """
    longest = max(len(fresh), len(stored))
    if longest == 0:
        return 1.0
    shortest = min(len(fresh), len(stored))
    return float(np.count_nonzero(fresh[:shortest] == stored[:shortest])) / longest
