"""What the evaluation step and its report read back: the release split's utterances with
their evaluation sets, the catalogue's breakdown views and utterance facts, and audio
from the audio shards."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from pipelines.catalogue.errors import CatalogueError
from pipelines.catalogue.read import query_catalogue
from pipelines.evaluation.report import BREAKDOWN_VIEWS
from pipelines.project import Project
from pipelines.shards.reader import read_index, read_member
from schemas.release import UTTERANCES_FILE


@dataclass(frozen=True)
class SplitUtterance:
    """One utterance of a release split, with its evaluation set and audio shard."""

    utterance_id: str
    source: str
    language: str | None
    eval_set: str
    shard: str


def split_utterances(project: Project, release: str, split: str) -> dict[str, SplitUtterance]:
    """The split's utterances by key, each with its evaluation set."""
    path = project.lake.release_dir(release) / UTTERANCES_FILE
    frame = pl.read_parquet(path)
    if "eval_set" not in frame.columns:  # a release made before evaluation sets existed
        frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias("eval_set"))
    out = {}
    for row in frame.filter(pl.col("split") == split).to_dicts():
        out[row["key"]] = SplitUtterance(
            utterance_id=row["utterance_id"],
            source=row["source"],
            language=row["language"],
            eval_set=row["eval_set"] or f"{release}/{split}",
            shard=row["shard"],
        )
    return out


def breakdowns(project: Project, eval_id: str) -> dict[str, list[dict[str, Any]]]:
    """This evaluation's rows of the catalogue's `eval_by_*` views (empty without them)."""
    out: dict[str, list[dict[str, Any]]] = {}
    if not project.catalogue_path.exists():
        return out
    quoted = "'" + eval_id.replace("'", "''") + "'"
    for view in BREAKDOWN_VIEWS:
        try:
            table = query_catalogue(
                project.catalogue_path, f"SELECT * FROM {view} WHERE eval_id = {quoted}"
            )
        except CatalogueError:
            return {}
        out[view] = table.to_pylist()
    return out


def utterance_facts(project: Project, ids: list[str]) -> dict[str, dict[str, Any]]:
    """WADA-SNR and duration of `ids` from the catalogue's `utterances` (empty without)."""
    if not ids or not project.catalogue_path.exists():
        return {}
    listed = ", ".join("'" + i.replace("'", "''") + "'" for i in ids)
    table = query_catalogue(
        project.catalogue_path,
        f"SELECT utterance_id, wada_snr_db, duration_s FROM utterances "
        f"WHERE utterance_id IN ({listed})",
    )
    return {row["utterance_id"]: row for row in table.to_pylist()}


def shard_audio(project: Project, shard: str | None, key: str) -> tuple[bytes | None, str | None]:
    """The FLAC bytes of `key` in audio shard `shard` (by the shard folder's index)."""
    if shard is None:
        return None, "the release does not name its audio shard"
    folder = (project.lake.root / shard).parent
    try:
        row = next((r for r in read_index(folder) if r.key == key and r.shard == shard), None)
        if row is None:
            return None, f"{key} is not in the index of {folder}"
        return read_member(project.lake.root, row, "flac"), None
    except (OSError, ValueError) as error:
        return None, f"cannot read {shard}: {error}"
