"""Audit: prove that shards, lake and catalogue agree, and that the numbers reproduce.

`audit` checks, for a release, a source or the whole lake:
1. every shard exists and its sha256 equals the catalogue's (and the release's);
2. every shard's samples equal the catalogue's utterances for that shard
   (no missing, extra or incomplete samples), and every catalogue row that
   names a shard finds its shard;
3. every sample's FLAC decodes to 16 kHz mono with the catalogue's duration
   and the JSON and codes agree with the catalogue;
4. on a sample of utterances, the quality measures re-computed from the
   stored audio match the catalogue, and re-tokenizing the stored audio gives
   the same codes.
Any mismatch makes the audit fail; the findings also go to an HTML report.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import soundfile as sf

from pipelines.catalogue.read import open_catalogue_readonly
from pipelines.lake.atomic import write_bytes_atomic
from pipelines.project import Project
from pipelines.releases.create import load_release
from pipelines.shards.reader import iter_shard_samples
from quality.measures import measure
from schemas.audio import TARGET_SAMPLE_RATE_HZ
from schemas.hashing import file_sha256
from schemas.shards import ShardFormatError, decode_codes

# Re-measuring from 16-bit audio moves a measure by quantisation noise only.
REMEASURE_TOLERANCE = {
    "wada_snr_db": 0.5,
    "rms_dbfs": 0.05,
    "silence_ratio": 0.02,
    "clipping_ratio": 1e-3,
    "bandwidth_hz": 100.0,
}
DURATION_TOLERANCE_S = 1.5 / TARGET_SAMPLE_RATE_HZ


@dataclass
class AuditResult:
    """What the audit looked at and every mismatch it found."""

    scope: str
    shards: int = 0
    samples: int = 0
    remeasured: int = 0
    retokenized: int = 0
    problems: list[str] = field(default_factory=list)
    report_path: Path | None = None

    @property
    def passed(self) -> bool:
        """True when nothing disagreed."""
        return not self.problems


def verify_release_shards(project: Project, name: str) -> list[str]:
    """Problems with a release's shards: missing files or changed sha256."""
    release, _ = load_release(project, name)
    problems = []
    for shard in release.shards:
        path = project.lake.root / shard.shard
        if not path.exists():
            problems.append(f"release {name}: shard {shard.shard} is missing")
        elif file_sha256(path) != shard.sha256:
            problems.append(f"release {name}: shard {shard.shard} changed since release")
    return problems


def _scope_rows(
    project: Project, release: str | None, source: str | None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    where = "u.shard IS NOT NULL"
    params: list[object] = []
    if source is not None:
        where += " AND u.source = ?"
        params.append(source)
    with open_catalogue_readonly(project.catalogue_path) as con:
        rows = pl.from_arrow(
            con.sql(
                f"SELECT u.*, s.sha256 AS shard_sha256_catalogue FROM utterances u "
                f"LEFT JOIN shards s USING (shard) WHERE {where} ORDER BY utterance_id",
                params=params or None,
            ).to_arrow_table()
        )
        shards = pl.from_arrow(
            con.sql(
                "SELECT shard, sha256, source FROM shards"
                + (" WHERE source = ?" if source else ""),
                params=[source] if source else None,
            ).to_arrow_table()
        )
    assert isinstance(rows, pl.DataFrame) and isinstance(shards, pl.DataFrame)
    if release is not None:
        _, utterances = load_release(project, release)
        kept = utterances.filter(pl.col("split").is_not_null())["utterance_id"]
        rows = rows.filter(pl.col("utterance_id").is_in(kept))
        shards = shards.filter(pl.col("shard").is_in(rows["shard"].unique()))
    return rows, shards


def _check_sample(
    key: str, members: dict[str, bytes], row: dict, problems: list[str]
) -> np.ndarray | None:
    where = f"{row['shard']}:{key}"
    if set(members) != {"flac", "codes.npy", "json"}:
        problems.append(f"{where}: members {sorted(members)} instead of flac, codes.npy, json")
        return None
    try:
        audio, rate = sf.read(io.BytesIO(members["flac"]), dtype="float32")
    except sf.LibsndfileError as error:
        problems.append(f"{where}: FLAC does not decode ({error})")
        return None
    if rate != TARGET_SAMPLE_RATE_HZ or audio.ndim != 1:
        problems.append(f"{where}: audio is {rate} Hz with shape {audio.shape}, not 16 kHz mono")
    if abs(len(audio) / TARGET_SAMPLE_RATE_HZ - row["duration_s"]) > DURATION_TOLERANCE_S:
        problems.append(
            f"{where}: audio lasts {len(audio) / TARGET_SAMPLE_RATE_HZ:.4f} s, catalogue says "
            f"{row['duration_s']:.4f} s"
        )
    meta = json.loads(members["json"])
    if meta.get("utterance_id") != row["utterance_id"]:
        problems.append(f"{where}: json names {meta.get('utterance_id')!r}")
    codes = decode_codes(members["codes.npy"])
    if len(codes) != row["n_codes"]:
        problems.append(f"{where}: {len(codes)} codes, catalogue says {row['n_codes']}")
    return audio


def audit(
    project: Project,
    release: str | None = None,
    source: str | None = None,
    sample: int = 20,
    seed: int = 0,
    report: Path | None = None,
) -> AuditResult:
    """Audit shards against the catalogue (and a release); write an HTML report."""
    scope = f"release {release}" if release else f"source {source}" if source else "the lake"
    result = AuditResult(scope=scope)
    if release is not None:
        result.problems += verify_release_shards(project, release)
    rows, shards = _scope_rows(project, release, source)
    by_shard: dict[str, dict[str, dict]] = {}
    for row in rows.to_dicts():
        by_shard.setdefault(row["shard"], {})[row["key"]] = row
    known = set(shards["shard"].to_list())
    for shard in sorted(set(by_shard) - known):
        result.problems.append(f"catalogue rows name shard {shard}, which the catalogue lacks")
    rng = random.Random(seed)
    chosen = set(rng.sample(rows["utterance_id"].to_list(), min(sample, rows.height)))
    audio_for: dict[str, np.ndarray] = {}
    for shard_row in shards.sort("shard").to_dicts():
        shard = shard_row["shard"]
        path = project.lake.root / shard
        expected = by_shard.get(shard, {})
        result.shards += 1
        if not path.exists():
            result.problems.append(
                f"shard {shard} is missing ({len(expected)} catalogue rows point at it)"
            )
            continue
        if file_sha256(path) != shard_row["sha256"]:
            result.problems.append(f"shard {shard}: sha256 differs from the catalogue")
        seen: set[str] = set()
        try:
            for key, members in iter_shard_samples(path):
                seen.add(key)
                row = expected.get(key)
                if row is None:
                    if release is None:
                        result.problems.append(f"{shard}:{key} is not in the catalogue")
                    continue
                result.samples += 1
                audio = _check_sample(key, members, row, result.problems)
                if audio is not None and row["utterance_id"] in chosen:
                    audio_for[row["utterance_id"]] = audio
        except (ShardFormatError, OSError, EOFError) as error:
            result.problems.append(f"shard {shard} cannot be read: {error}")
            continue
        for key in sorted(set(expected) - seen):
            result.problems.append(f"{shard}: catalogue row {key} has no sample in the shard")
    _remeasure(rows, audio_for, result)
    _retokenize(project, rows, audio_for, result)
    result.report_path = _write_report(project, result, report)
    return result


def _remeasure(rows: pl.DataFrame, audio_for: dict[str, np.ndarray], result: AuditResult) -> None:
    by_id = {
        r["utterance_id"]: r
        for r in rows.filter(pl.col("utterance_id").is_in(list(audio_for))).to_dicts()
    }
    for utterance_id, audio in sorted(audio_for.items()):
        row = by_id[utterance_id]
        again = measure(audio, TARGET_SAMPLE_RATE_HZ, row["text"])
        result.remeasured += 1
        for name, tolerance in REMEASURE_TOLERANCE.items():
            stored, fresh = row[name], getattr(again, name)
            if stored is None or fresh is None:
                if (stored is None) != (fresh is None):
                    result.problems.append(
                        f"{utterance_id}: {name} {stored} vs re-measured {fresh}"
                    )
                continue
            if abs(stored - fresh) > tolerance:
                result.problems.append(
                    f"{utterance_id}: {name} is {stored:.4g} in the catalogue but "
                    f"re-measures {fresh:.4g} (tolerance {tolerance})"
                )


def _retokenize(
    project: Project, rows: pl.DataFrame, audio_for: dict[str, np.ndarray], result: AuditResult
) -> None:
    if not audio_for:
        return
    from pipelines.tokenizer import project_tokenizer

    tokenizer = project_tokenizer(project.directory, project.config.tokenizer)
    ids = sorted(audio_for)
    sha_by_id = dict(rows.select("utterance_id", "tokenizer_sha256").iter_rows())
    same_tokenizer = [u for u in ids if sha_by_id.get(u) == tokenizer.checkpoint_sha256]
    skipped = len(ids) - len(same_tokenizer)
    if skipped:
        result.problems.append(
            f"{skipped} sampled utterances were tokenized with another checkpoint than the "
            "project's; re-tokenizing them proves nothing"
        )
    units = {}
    for row in rows.filter(pl.col("utterance_id").is_in(same_tokenizer)).to_dicts():
        units.setdefault((row["source"], row["unit"]), []).append(row["utterance_id"])
    stored: dict[str, list[int]] = {}
    for (source, unit), unit_ids in units.items():
        frame = pl.read_parquet(project.lake.tokens(source, unit)).filter(
            pl.col("utterance_id").is_in(unit_ids)
        )
        stored.update(dict(frame.select("utterance_id", "codes").iter_rows()))
    fresh = tokenizer.tokenize([audio_for[u] for u in same_tokenizer])
    for utterance_id, codes in zip(same_tokenizer, fresh, strict=True):
        result.retokenized += 1
        if codes.tolist() != stored.get(utterance_id):
            result.problems.append(
                f"{utterance_id}: re-tokenized codes differ from the stored ones"
            )


def _write_report(project: Project, result: AuditResult, out: Path | None) -> Path:
    path = out or project.lake.reports_dir() / "audit.html"
    verdict = "PASSED" if result.passed else f"FAILED: {len(result.problems)} problems"
    items = "".join(f"<li><code>{html.escape(p)}</code></li>" for p in result.problems)
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>voxlake audit: {html.escape(result.scope)}</title>
<style>body{{font-family:sans-serif;margin:2em}} .ok{{color:#1a7f37}} .bad{{color:#cf222e}}
td{{padding:2px 12px}}</style></head><body>
<h1>voxlake audit: {html.escape(result.scope)}</h1>
<p class="{"ok" if result.passed else "bad"}"><b>{html.escape(verdict)}</b></p>
<table><tr><td>generated</td><td>{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S} UTC</td></tr>
<tr><td>shards checked (sha256, members)</td><td>{result.shards}</td></tr>
<tr><td>samples decoded and compared</td><td>{result.samples}</td></tr>
<tr><td>utterances re-measured</td><td>{result.remeasured}</td></tr>
<tr><td>utterances re-tokenized</td><td>{result.retokenized}</td></tr></table>
<h2>Problems</h2>{f"<ol>{items}</ol>" if items else "<p>none</p>"}
</body></html>
"""
    write_bytes_atomic(path, page.encode("utf-8"))
    return path
