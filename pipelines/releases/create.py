"""Releases: immutable, named selections of sharded utterances, with their lineage.

`create_release` selects accepted utterances that have an audio shard and a code
shard (of the configured tokenizer, the one the catalogue holds) from the catalogue
with a SQL predicate, optionally drops exact duplicates (same 16 kHz PCM hash),
assigns train/dev/test deterministically by speaker (no speaker in two
splits), and writes `lake/releases/<name>/` in one atomic rename: a release
that exists cannot be created again, and a crash leaves no half release.
`release.json` lists both kinds of shards with the sha256 and size the catalogue
knows (`shards`, `code_shards`); each utterance row names its audio shard
(`shard`) and its code shard (`codes_shard`).
Registering it in the catalogue is the single writer's job (`update_catalogue`).

Evaluation sets are kept out of training: an utterance of a source split named in
`spec.eval_splits` (LibriSpeech test-clean, WenetSpeech test_net, ...) goes to `test`
whatever its speaker's bucket says, tagged with its set (`eval_set`); an utterance with
the same PCM hash as any evaluation-set utterance in the catalogue (selected or not, of
any source, accepted or not) is held back from every split (`held_back_for`), and the
release counts them (`n_held_back`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa

from pipelines.catalogue.read import open_catalogue_readonly
from pipelines.lake.atomic import write_parquet_atomic
from pipelines.project import Project
from pipelines.version import code_version
from schemas import RELEASE_UTTERANCE_ARROW_SCHEMA, Release, ReleaseShard, ReleaseSpec
from schemas.release import RELEASE_FILE, UTTERANCES_FILE, eval_set_name


class ReleaseError(Exception):
    """A release cannot be created or read; the message says why."""


def _bucket(group_key: str) -> float:
    """A stable number in [0, 1) for a split group (a speaker, or an utterance)."""
    digest = hashlib.sha256(group_key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_split(group_key: str, dev: float, test: float) -> str:
    """`test`, `dev` or `train` for a split group: the same key always lands in the same split.

    >>> assign_split("libri/1272", 0.0, 0.0)
    'train'
    >>> assign_split("libri/1272", 0.0, 0.999999)
    'test'
    """
    value = _bucket(group_key)
    if value < test:
        return "test"
    if value < test + dev:
        return "dev"
    return "train"


def _selection(con: duckdb.DuckDBPyConnection, where: str) -> pl.DataFrame:
    if ";" in where:
        raise ReleaseError("--where must be a single SQL predicate (no ';')")
    sql = f"""
        SELECT utterance_id, key, shard, codes_shard, source, unit, language, speaker,
               duration_s, pcm_sha256, policy_version, tokenizer_sha256, tokenizer_is_demo,
               split AS source_split
        FROM utterances
        WHERE status = 'accepted' AND shard IS NOT NULL AND codes_shard IS NOT NULL
          AND ({where})
        ORDER BY utterance_id
    """
    try:
        table = con.sql(sql).to_arrow_table()
    except duckdb.Error as error:
        raise ReleaseError(f"invalid --where predicate {where!r}: {error}") from error
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def is_eval_split(source: str, split: str | None, eval_splits: list[str]) -> bool:
    """Whether `source`'s split `split` is an evaluation set under `eval_splits`.

    An entry is a split name (any source) or `source/split`.

    >>> is_eval_split("librispeech", "test-clean", ["test-clean"])
    True
    >>> is_eval_split("librispeech", "dev-clean", ["test-clean", "wenetspeech/dev"])
    False
    >>> is_eval_split("wenetspeech", "dev", ["wenetspeech/dev"])
    True
    """
    if split is None:
        return False
    return split in eval_splits or eval_set_name(source, split) in eval_splits


def _eval_split_predicate(eval_splits: list[str]) -> str:
    """SQL over `utterances`: the row is in one of `eval_splits` (FALSE for none)."""
    if not eval_splits:
        return "FALSE"
    listed = ", ".join("'" + entry.replace("'", "''") + "'" for entry in sorted(eval_splits))
    return f"(split IN ({listed}) OR source || '/' || split IN ({listed}))"


def eval_set_hashes(con: duckdb.DuckDBPyConnection, eval_splits: list[str]) -> dict[str, str]:
    """PCM hash -> the first (by id) evaluation-set utterance with it, over the whole catalogue.

    Every utterance counts, whatever its status or source: a rejected test utterance is
    still a test utterance, and its copy elsewhere must not train a model scored on it.
    """
    rows = con.execute(
        f"""
        SELECT pcm_sha256, min(utterance_id) FROM utterances
        WHERE pcm_sha256 IS NOT NULL AND {_eval_split_predicate(eval_splits)}
        GROUP BY pcm_sha256
        """
    ).fetchall()
    return dict(rows)


def _split_rows(
    frame: pl.DataFrame, spec: ReleaseSpec, eval_by_hash: dict[str, str] | None = None
) -> list[dict]:
    """One release row per selected utterance: its split, or why it is in none.

    `eval_by_hash` (from `eval_set_hashes`) maps the PCM hash of every evaluation-set
    utterance of the lake to its id; a selected utterance outside the evaluation sets
    with one of those hashes is held back.
    """
    rows = frame.to_dicts()
    eval_by_hash = eval_by_hash or {}
    kept_by_hash: dict[str, str] = {}
    out: list[dict] = []
    for row in rows:  # sorted by utterance_id: the first of a duplicate group is kept
        eval_set = (
            eval_set_name(row["source"], row["source_split"])
            if is_eval_split(row["source"], row.get("source_split"), spec.eval_splits)
            else None
        )
        held_back_for = None if eval_set else eval_by_hash.get(row["pcm_sha256"])
        duplicate_of = None
        if spec.dedup and held_back_for is None:
            first = kept_by_hash.setdefault(row["pcm_sha256"], row["utterance_id"])
            duplicate_of = first if first != row["utterance_id"] else None
        if spec.split_by == "speaker" and row["speaker"] is not None:
            group = f"{row['source']}/{row['speaker']}"
        else:
            group = row["utterance_id"]
        if duplicate_of or held_back_for:
            split = None
        elif eval_set:
            split = "test"  # an evaluation set never trains, whatever its speaker's bucket
        else:
            split = assign_split(group, spec.dev, spec.test)
        out.append(
            {
                "utterance_id": row["utterance_id"],
                "key": row["key"],
                "shard": row["shard"],
                "codes_shard": row["codes_shard"],
                "source": row["source"],
                "language": row["language"],
                "speaker": row["speaker"],
                "duration_s": row["duration_s"],
                "split": split,
                "duplicate_of": duplicate_of,
                "eval_set": None if split is None else eval_set,
                "held_back_for": held_back_for,
            }
        )
    return out


def _release_shards(
    con: duckdb.DuckDBPyConnection, table: str, names: pl.Series
) -> list[ReleaseShard]:
    """The shards `names` (audio: `shards`; codes: `code_shards`) with their sha256 and size."""
    wanted = sorted(set(names.to_list()))
    found = con.execute(
        f"SELECT shard, sha256, bytes, source, unit FROM {table} WHERE shard IN "
        "(SELECT unnest(?)) ORDER BY shard",
        [wanted],
    ).fetchall()
    if len(found) != len(wanted):
        missing = sorted(set(wanted) - {row[0] for row in found})
        raise ReleaseError(
            f"the catalogue lists utterances in shards its `{table}` table does not know: "
            f"{', '.join(missing[:5])}"
        )
    return [
        ReleaseShard(shard=s, sha256=h, bytes=b, source=src, unit=u) for s, h, b, src, u in found
    ]


@dataclass(frozen=True)
class CreatedRelease:
    """A release just written: its description and folder."""

    release: Release
    folder: Path


def create_release(project: Project, spec: ReleaseSpec) -> CreatedRelease:
    """Select, split and write the release `spec.name`; ReleaseError if it exists."""
    final = project.lake.release_dir(spec.name)
    if final.exists():
        raise ReleaseError(f"release {spec.name!r} exists ({final}); releases are immutable")
    catalogue = project.catalogue_path
    if not catalogue.exists():
        raise ReleaseError(f"no catalogue at {catalogue}: materialize the catalogue first")
    with open_catalogue_readonly(catalogue) as con:
        frame = _selection(con, spec.where)
        if frame.height == 0:
            raise ReleaseError(
                f"--where {spec.where!r} selects no accepted utterance with audio and code "
                "shards (are the units tokenized, and the catalogue up to date?)"
            )
        shards = _release_shards(con, "shards", frame["shard"])
        code_shards = _release_shards(con, "code_shards", frame["codes_shard"])
        eval_by_hash = eval_set_hashes(con, spec.eval_splits)
    rows = _split_rows(frame, spec, eval_by_hash)
    kept = [r for r in rows if r["split"] is not None]
    eval_sets: dict[str, int] = {}
    for row in kept:
        if row["eval_set"] is not None:
            eval_sets[row["eval_set"]] = eval_sets.get(row["eval_set"], 0) + 1
    release = Release(
        name=spec.name,
        created_at=dt.datetime.now(dt.UTC),
        where=spec.where,
        split_by=spec.split_by,
        dev_fraction=spec.dev,
        test_fraction=spec.test,
        dedup=spec.dedup,
        n_utterances=len(kept),
        duration_s=round(sum(r["duration_s"] for r in kept), 3),
        n_duplicates_dropped=sum(r["duplicate_of"] is not None for r in rows),
        eval_splits=list(spec.eval_splits),
        eval_sets=dict(sorted(eval_sets.items())),
        n_held_back=sum(r["held_back_for"] is not None for r in rows),
        policy_versions=sorted(set(frame["policy_version"].to_list())),
        tokenizer_sha256=sorted(set(frame["tokenizer_sha256"].to_list())),
        tokenizer_is_demo=bool(frame["tokenizer_is_demo"].any()),
        code_version=code_version(),
        shards=shards,
        code_shards=code_shards,
    )
    parent = final.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.name}.", suffix=".tmp", dir=parent))
    try:
        write_parquet_atomic(
            staging / UTTERANCES_FILE,
            pa.Table.from_pylist(rows, schema=RELEASE_UTTERANCE_ARROW_SCHEMA),
        )
        (staging / RELEASE_FILE).write_text(
            json.dumps(release.model_dump(mode="json"), indent=1, sort_keys=True) + "\n"
        )
        # rename() of a folder onto an existing non-empty folder fails: two concurrent
        # creators of one name cannot both win.
        os.rename(staging, final)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        if final.exists():
            raise ReleaseError(f"release {spec.name!r} was created meanwhile") from error
        raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return CreatedRelease(release, final)


def load_release(project: Project, name: str) -> tuple[Release, pl.DataFrame]:
    """A release's description and its utterances (ReleaseError if there is none)."""
    folder = project.lake.release_dir(name)
    if not (folder / RELEASE_FILE).exists():
        known = (
            sorted(p.name for p in folder.parent.glob("*") if (p / RELEASE_FILE).exists())
            if folder.parent.exists()
            else []
        )
        raise ReleaseError(f"no release {name!r} (known: {', '.join(known) or 'none'})")
    release = Release.model_validate_json((folder / RELEASE_FILE).read_text())
    return release, pl.read_parquet(folder / UTTERANCES_FILE)


def release_summary(utterances: pl.DataFrame) -> pl.DataFrame:
    """Hours and utterances per split, source and language (duplicates excluded)."""
    return (
        utterances.filter(pl.col("split").is_not_null())
        .group_by("split", "source", "language")
        .agg(
            pl.len().alias("utterances"),
            (pl.col("duration_s").sum() / 3600).round(4).alias("hours"),
            pl.col("speaker").n_unique().alias("speakers"),
        )
        .sort("split", "source", "language")
    )
