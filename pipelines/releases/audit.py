"""Audit: prove that shards, lake and catalogue agree, and that the numbers reproduce.

Why this module is long: the audit is one pass over both shard fields, each check
feeding the same problem list and report; split, the checks would re-open the shards.

`audit` checks, for a release, a source or the whole lake:
1. every audio shard and every code shard exists and its sha256 equals the
   catalogue's (and, for a release, the one in `release.json`:
   `verify_release_shards`);
2. every shard's samples equal the catalogue's utterances for that shard (no
   missing, extra or incomplete samples), and every catalogue row that names a
   shard finds it; a release's utterances name the shards and keys the
   catalogue names;
3. every audio sample has exactly the members `flac` and `json`: the FLAC decodes
   to 16 kHz mono with the catalogue's duration and PCM hash, and the JSON
   (`AudioSampleMeta`) agrees with the catalogue;
4. every code sample has exactly the members `codes.npy` and `json`: as many
   codes as the catalogue says, and the JSON (`CodeSampleMeta`) agrees with the
   catalogue; the keys of a code shard are those of its aligned audio shard, in
   the same order;
5. on a seeded random sample of utterances per source, the quality measures
   re-computed from the stored audio match the catalogue, and re-tokenizing the
   stored FLAC (with the project's tokenizer) gives the codes stored in the code
   shard.
Any mismatch makes the audit fail. The findings, per shard and per sampled
utterance, with the sample's audio to listen to, go to an HTML report
(`pipelines/releases/audit_report.py`).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import polars as pl
import soundfile as sf
from pydantic import ValidationError

from pipelines.audio.pcm import pcm_sha256
from pipelines.catalogue.read import open_catalogue_readonly
from pipelines.project import Project
from pipelines.releases.audit_records import AuditResult, ShardCheck
from pipelines.releases.audit_sample import (
    REMEASURE_TOLERANCE,
    draw_sample,
    remeasure,
    retokenize,
    sampled_utterances,
)
from pipelines.releases.create import load_release
from pipelines.shards.reader import iter_shard_samples
from schemas.audio import TARGET_SAMPLE_RATE_HZ
from schemas.hashing import file_sha256
from schemas.shards import (
    AUDIO_MEMBERS,
    CODE_MEMBERS,
    AudioSampleMeta,
    CodeSampleMeta,
    ShardFormatError,
    decode_codes,
    shard_number,
)

DURATION_TOLERANCE_S = 1.5 / TARGET_SAMPLE_RATE_HZ

# A sample's JSON field, and the catalogue column it must equal.
AUDIO_META_COLUMNS = {
    "utterance_id": "utterance_id",
    "source": "source",
    "text": "text",
    "speaker": "speaker",
    "language": "language",
    "split": "split",
    "pcm_sha256": "pcm_sha256",
    "snr_db": "wada_snr_db",
    "stnr_snr_db": "stnr_snr_db",
    "clipping_ratio": "clipping_ratio",
    "silence_ratio": "silence_ratio",
    "rms_dbfs": "rms_dbfs",
    "bandwidth_hz": "bandwidth_hz",
    "chars_per_s": "chars_per_s",
}
CODE_META_COLUMNS = {
    "utterance_id": "utterance_id",
    "source": "source",
    "text": "text",
    "speaker": "speaker",
    "language": "language",
    "split": "split",
    "n_codes": "n_codes",
    "pcm_sha256": "pcm_sha256",
    "tokenizer_sha256": "tokenizer_sha256",
    "tokenizer_is_demo": "tokenizer_is_demo",
}

_AudioMetaOrCode = type[AudioSampleMeta] | type[CodeSampleMeta]


def verify_release_shards(project: Project, name: str) -> list[str]:
    """Problems with a release's audio and code shards: missing files or changed sha256."""
    release, _ = load_release(project, name)
    problems = []
    for kind, shards in (("audio", release.shards), ("code", release.code_shards)):
        for shard in shards:
            path = project.lake.root / shard.shard
            if not path.exists():
                problems.append(f"release {name}: {kind} shard {shard.shard} is missing")
            elif file_sha256(path) != shard.sha256:
                problems.append(f"release {name}: {kind} shard {shard.shard} changed since release")
    return problems


@dataclass
class _Scope:
    """The catalogue rows and shards an audit looks at."""

    rows: pl.DataFrame  # utterances with an audio shard
    shards: pl.DataFrame  # audio shards: shard, sha256
    code_shards: pl.DataFrame  # code shards: shard, sha256, audio_shard


def _frame(table: object) -> pl.DataFrame:
    frame = pl.from_arrow(table)  # type: ignore[arg-type]
    assert isinstance(frame, pl.DataFrame)
    return frame


def _scope(project: Project, release: str | None, source: str | None) -> tuple[_Scope, list[str]]:
    """The rows and shards in scope, and the problems of a release's rows against them."""
    where = " WHERE source = ?" if source is not None else ""
    params = [source] if source is not None else None
    with open_catalogue_readonly(project.catalogue_path) as con:
        rows = _frame(
            con.sql(
                "SELECT * FROM utterances WHERE shard IS NOT NULL"
                + (" AND source = ?" if source is not None else "")
                + " ORDER BY utterance_id",
                params=params,
            ).to_arrow_table()
        )
        shards = _frame(
            con.sql(f"SELECT shard, sha256 FROM shards{where}", params=params).to_arrow_table()
        )
        code_shards = _frame(
            con.sql(
                f"SELECT shard, sha256, audio_shard FROM code_shards{where}", params=params
            ).to_arrow_table()
        )
    problems: list[str] = []
    if release is not None:
        _, utterances = load_release(project, release)
        kept = utterances.filter(pl.col("split").is_not_null())
        rows = rows.filter(pl.col("utterance_id").is_in(kept["utterance_id"].implode()))
        problems = _release_rows_agree(release, kept, rows)
        shards = shards.filter(pl.col("shard").is_in(rows["shard"].unique().implode()))
        code_shards = code_shards.filter(
            pl.col("shard").is_in(rows["codes_shard"].drop_nulls().unique().implode())
        )
    return _Scope(rows, shards, code_shards), problems


def _release_rows_agree(name: str, kept: pl.DataFrame, rows: pl.DataFrame) -> list[str]:
    """A release's utterances must be in the catalogue, in the shards the release names."""
    problems = []
    catalogued = {r["utterance_id"]: r for r in rows.to_dicts()}
    for utterance in kept.to_dicts():
        row = catalogued.get(utterance["utterance_id"])
        if row is None:
            problems.append(
                f"release {name}: {utterance['utterance_id']} has no audio shard in the catalogue"
            )
            continue
        for column in ("key", "shard", "codes_shard"):
            if utterance[column] != row[column]:
                problems.append(
                    f"release {name}: {utterance['utterance_id']} has {column} "
                    f"{utterance[column]}, the catalogue says {row[column]}"
                )
    return problems


def _same(stored: object, catalogued: object) -> bool:
    if isinstance(stored, float) and isinstance(catalogued, float):
        return math.isclose(stored, catalogued, rel_tol=1e-9, abs_tol=1e-12)
    return stored == catalogued


def _check_meta(
    where: str, data: bytes, model: _AudioMetaOrCode, columns: dict[str, str], row: dict
) -> list[str]:
    """Problems of a sample's JSON (`model`) against the catalogue row."""
    try:
        meta = model.model_validate_json(data)
    except ValidationError as error:
        return [f"{where}: json is not a {model.__name__} ({error.error_count()} errors)"]
    problems = []
    for name, column in columns.items():
        stored = getattr(meta, name)
        if not _same(stored, row[column]):
            problems.append(f"{where}: json {name} is {stored!r}, catalogue says {row[column]!r}")
    if abs(meta.duration_s - row["duration_s"]) > DURATION_TOLERANCE_S:
        problems.append(
            f"{where}: json duration_s is {meta.duration_s:.4f}, catalogue says "
            f"{row['duration_s']:.4f}"
        )
    return problems


def _wrong_members(where: str, members: dict[str, bytes], expected: tuple[str, ...]) -> str | None:
    if set(members) == set(expected):
        return None
    return f"{where}: members {sorted(members)} instead of {', '.join(expected)}"


def _check_audio_sample(
    key: str, members: dict[str, bytes], row: dict, problems: list[str]
) -> np.ndarray | None:
    """Check one audio sample; return its audio (float32, as stored) when the FLAC decodes."""
    where = f"{row['shard']}:{key}"
    wrong = _wrong_members(where, members, AUDIO_MEMBERS)
    if wrong:
        problems.append(wrong)
        return None
    try:
        # As the tokens step reads it (`decode_flac16`): float32 k / 32768.
        audio, rate = sf.read(io.BytesIO(members["flac"]), dtype="float32")
    except sf.LibsndfileError as error:
        problems.append(f"{where}: FLAC does not decode ({error})")
        return None
    if rate != TARGET_SAMPLE_RATE_HZ or audio.ndim != 1:
        problems.append(f"{where}: audio is {rate} Hz with shape {audio.shape}, not 16 kHz mono")
        return None
    seconds = len(audio) / TARGET_SAMPLE_RATE_HZ
    if abs(seconds - row["duration_s"]) > DURATION_TOLERANCE_S:
        problems.append(
            f"{where}: audio lasts {seconds:.4f} s, catalogue says {row['duration_s']:.4f} s"
        )
    if pcm_sha256(audio) != row["pcm_sha256"]:
        problems.append(f"{where}: the audio's PCM sha256 differs from the catalogue's")
    problems.extend(_check_meta(where, members["json"], AudioSampleMeta, AUDIO_META_COLUMNS, row))
    return audio


def _check_code_sample(
    key: str, members: dict[str, bytes], row: dict, problems: list[str]
) -> np.ndarray | None:
    """Check one code sample; return its codes when they decode."""
    where = f"{row['codes_shard']}:{key}"
    wrong = _wrong_members(where, members, CODE_MEMBERS)
    if wrong:
        problems.append(wrong)
        return None
    try:
        codes = decode_codes(members["codes.npy"])
    except (ShardFormatError, ValueError) as error:
        problems.append(f"{where}: codes.npy does not decode ({error})")
        return None
    if len(codes) != row["n_codes"]:
        problems.append(f"{where}: {len(codes)} codes, catalogue says {row['n_codes']}")
    problems.extend(_check_meta(where, members["json"], CodeSampleMeta, CODE_META_COLUMNS, row))
    return codes


def _by_shard(rows: pl.DataFrame, column: str) -> dict[str, dict[str, dict]]:
    """Catalogue rows by shard (`column`: `shard` or `codes_shard`) and key."""
    by_shard: dict[str, dict[str, dict]] = {}
    for row in rows.filter(pl.col(column).is_not_null()).to_dicts():
        by_shard.setdefault(row[column], {})[row["key"]] = row
    return by_shard


SampleCheck = Callable[[str, dict[str, bytes], dict, list[str]], np.ndarray | None]
"""Checks one sample (key, members, catalogue row, problems) and returns its audio or codes."""


@dataclass
class _FieldAudit:
    """What auditing one field's shards found besides problems."""

    keys_of: dict[str, list[str]] = field(default_factory=dict)  # readable shards, tar order
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # of the chosen utterances
    members: dict[str, dict[str, bytes]] = field(default_factory=dict)  # of the chosen ones
    checks: list[ShardCheck] = field(default_factory=list)
    shards: int = 0
    samples: int = 0


def _audit_field(
    project: Project,
    shards: pl.DataFrame,
    expected_by_shard: dict[str, dict[str, dict]],
    kind: str,
    check: SampleCheck,
    whole_shards: bool,
    chosen: set[str],
    problems: list[str],
) -> _FieldAudit:
    """Audit the shards of one field (`kind`: audio or code) against their catalogue rows.

    Each shard's file must exist with its sha256, and hold exactly its rows' samples
    (`whole_shards`: and no other sample, false for a release, which may select part
    of a shard); each sample goes through `check`, which returns its audio or codes.
    """
    found = _FieldAudit()
    known = set(shards["shard"].to_list())
    for shard in sorted(set(expected_by_shard) - known):
        problems.append(f"catalogue rows name {kind} shard {shard}, which the catalogue lacks")
    for shard_row in shards.sort("shard").to_dicts():
        shard = shard_row["shard"]
        expected = expected_by_shard.get(shard, {})
        found.shards += 1
        shard_check = ShardCheck(kind=kind, shard=shard, expected=len(expected))
        found.checks.append(shard_check)
        before = len(problems)
        _audit_shard(project, shard_row, expected, kind, check, whole_shards, chosen, problems,
                     found, shard_check)  # fmt: skip
        shard_check.problems = len(problems) - before
    return found


def _audit_shard(
    project: Project,
    shard_row: dict,
    expected: dict[str, dict],
    kind: str,
    check: SampleCheck,
    whole_shards: bool,
    chosen: set[str],
    problems: list[str],
    found: _FieldAudit,
    shard_check: ShardCheck,
) -> None:
    """Audit one shard file of `_audit_field`, filling `found` and `shard_check`."""
    shard = shard_row["shard"]
    path = project.lake.root / shard
    if not path.exists():
        shard_check.exists = False
        problems.append(
            f"{kind} shard {shard} is missing ({len(expected)} catalogue rows point at it)"
        )
        return
    shard_check.sha256_matches = file_sha256(path) == shard_row["sha256"]
    if not shard_check.sha256_matches:
        problems.append(f"{kind} shard {shard}: sha256 differs from the catalogue")
    expected_members = AUDIO_MEMBERS if kind == "audio" else CODE_MEMBERS
    keys: list[str] = []
    try:
        for key, members in iter_shard_samples(path):
            keys.append(key)
            row = expected.get(key)
            if row is None:
                if whole_shards:
                    problems.append(f"{shard}:{key} is not in the catalogue")
                continue
            found.samples += 1
            shard_check.samples += 1
            shard_check.duration_s += row["duration_s"] or 0.0
            shard_check.wrong_members += set(members) != set(expected_members)
            array = check(key, members, row, problems)
            if row["utterance_id"] in chosen:
                found.members[row["utterance_id"]] = members
                if array is not None:
                    found.arrays[row["utterance_id"]] = array
    except (ShardFormatError, OSError, EOFError) as error:
        problems.append(f"{kind} shard {shard} cannot be read: {error}")
        return
    found.keys_of[shard] = keys
    for key in sorted(set(expected) - set(keys)):
        problems.append(f"{shard}: catalogue row {key} has no sample in the shard")


def _check_alignment(
    code_shards: pl.DataFrame, audio: _FieldAudit, codes: _FieldAudit, problems: list[str]
) -> None:
    """Code shard `codes-N.tar` holds exactly the keys of its audio shard `audio-N.tar`, in
    the same order."""
    for shard, audio_shard in code_shards.select("shard", "audio_shard").iter_rows():
        if shard_number(PurePosixPath(shard).name) != shard_number(PurePosixPath(audio_shard).name):
            problems.append(f"code shard {shard} is aligned with {audio_shard}: not its number")
        keys, aligned = codes.keys_of.get(shard), audio.keys_of.get(audio_shard)
        if keys is not None and aligned is not None and keys != aligned:
            problems.append(
                f"code shard {shard} holds {len(keys)} keys, its audio shard {audio_shard} "
                f"{len(aligned)}: not the same keys in the same order"
            )


def audit(
    project: Project,
    release: str | None = None,
    source: str | None = None,
    sample: int = 20,
    seed: int = 0,
    report: Path | None = None,
) -> AuditResult:
    """Audit audio and code shards against the catalogue (and a release); write an HTML report.

    `sample` utterances per source (drawn with `seed`: the same seed draws the same
    ones) are re-measured from their audio, re-tokenized and put in the report with
    a player; `report` defaults to `lake/reports/audit.html`.
    """
    scope_name = f"release {release}" if release else f"source {source}" if source else "the lake"
    result = AuditResult(scope=scope_name, seed=seed, sample_per_source=sample)
    if release is not None:
        result.problems += verify_release_shards(project, release)
    scope, problems = _scope(project, release, source)
    result.problems += problems
    chosen = draw_sample(scope.rows, sample, seed)
    # A release holds a selection of its shards' samples; a source or the lake holds all.
    whole_shards = release is None
    audio = _audit_field(
        project,
        scope.shards,
        _by_shard(scope.rows, "shard"),
        "audio",
        _check_audio_sample,
        whole_shards,
        chosen,
        result.problems,
    )
    codes = _audit_field(
        project,
        scope.code_shards,
        _by_shard(scope.rows, "codes_shard"),
        "code",
        _check_code_sample,
        whole_shards,
        chosen,
        result.problems,
    )
    _check_alignment(scope.code_shards, audio, codes, result.problems)
    result.shards, result.samples = audio.shards, audio.samples
    result.code_shards, result.code_samples = codes.shards, codes.samples
    result.shard_checks = audio.checks + codes.checks
    result.remeasures = remeasure(scope.rows, audio.arrays, result.problems)
    result.remeasured = len(result.remeasures)
    result.code_agreement = retokenize(
        project, scope.rows, audio.arrays, codes.arrays, result.problems
    )
    result.retokenized = len(result.code_agreement)
    result.sampled = sampled_utterances(scope.rows, chosen, audio.members)
    # Imported here: the report draws with matplotlib, which the code location need not load.
    from pipelines.releases.audit_report import write_audit_report

    result.report_path = write_audit_report(
        result,
        REMEASURE_TOLERANCE,
        report or project.lake.reports_dir() / "audit.html",
        quality_report=project.lake.reports_dir() / "quality.html",
    )
    return result
