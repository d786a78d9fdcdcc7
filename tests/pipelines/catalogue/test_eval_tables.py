"""The catalogue's evaluation rows: `eval_utterances` holds each evaluation's per-utterance
scores from its lake file, joins `utterances`, feeds the `eval_*` breakdown views, and an
update equals a rebuild; rows without their record, or naming another evaluation, are
not loaded; a release file from before evaluation sets still loads."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from catalogue_lake import assert_equals_rebuild, frame

from pipelines.catalogue.build import rebuild_catalogue, update_catalogue
from pipelines.catalogue.errors import CatalogueError
from pipelines.lake.atomic import write_parquet_atomic
from pipelines.project import Project
from schemas.training import EVAL_UTTERANCE_ARROW_SCHEMA


def _eval_rows(project: Project, eval_id: str, n: int) -> list[dict]:
    """`n` scored ASR rows over the lake's first accepted utterances: utterance i has i
    errors over 10 words."""
    accepted = frame(
        project.catalogue_path,
        "SELECT utterance_id, key, source, language FROM utterances "
        "WHERE status = 'accepted' AND wada_snr_db IS NOT NULL ORDER BY utterance_id",
    ).to_dicts()[:n]
    assert len(accepted) == n
    return [
        {
            **u,
            "eval_id": eval_id,
            "eval_set": f"{u['source']}/test",
            "task": "asr",
            "metric": "wer",
            "reference": "a b c d e f g h i j",
            "hypothesis": "a b c",
            "n_ref_units": 10,
            "n_hyp_units": 10,
            "n_errors": i,
            "substitutions": i,
            "deletions": 0,
            "insertions": 0,
            "error_rate": i / 10,
            "loss": 1.0,
        }
        for i, u in enumerate(accepted)
    ]


def _write(project: Project, eval_id: str, rows: list[dict]) -> None:
    write_parquet_atomic(
        project.lake.eval_utterances(eval_id),
        pa.Table.from_pylist(rows, schema=EVAL_UTTERANCE_ARROW_SCHEMA),
    )


def test_eval_rows_are_catalogued_and_broken_down(copied_lake: Project, tmp_path: Path) -> None:
    project = copied_lake
    rebuild_catalogue(project)
    rows = _eval_rows(project, "eval-0001", 6)
    _write(project, "eval-0001", rows)
    stats = update_catalogue(project)
    assert stats.mode == "update"
    loaded = frame(project.catalogue_path, "SELECT * FROM eval_utterances ORDER BY n_errors")
    assert loaded["utterance_id"].to_list() == [r["utterance_id"] for r in rows]
    total = frame(
        project.catalogue_path,
        "SELECT sum(n_errors) / sum(n_ref_units) AS wer FROM eval_error_rates "
        "WHERE eval_id = 'eval-0001'",
    )
    by_snr = frame(project.catalogue_path, "SELECT * FROM eval_by_snr")
    assert by_snr["n_utterances"].sum() == 6 and by_snr["n_errors"].sum() == 15
    assert total["wer"].to_list() == [pytest.approx(15 / 60)]
    by_source = frame(project.catalogue_path, "SELECT * FROM eval_by_source")
    assert set(by_source["source"]) == {r["source"] for r in rows}
    assert_equals_rebuild(project, tmp_path)

    # Rewritten with fewer rows: the update replaces them.
    _write(project, "eval-0001", rows[:2])
    update_catalogue(project)
    assert frame(project.catalogue_path, "SELECT * FROM eval_utterances").height == 2
    assert_equals_rebuild(project, tmp_path)


def test_rows_without_their_record_wait_and_foreign_rows_are_refused(
    copied_lake: Project,
) -> None:
    project = copied_lake
    rebuild_catalogue(project)
    _write(project, "eval-still-writing", _eval_rows(project, "eval-still-writing", 2))
    update_catalogue(project)
    assert frame(project.catalogue_path, "SELECT * FROM eval_utterances").height == 0

    _write(project, "eval-0001", _eval_rows(project, "eval-other", 2))
    with pytest.raises(CatalogueError, match="holds rows of evaluation 'eval-other'"):
        rebuild_catalogue(project)


def test_a_release_file_from_before_evaluation_sets_loads(copied_lake: Project) -> None:
    project = copied_lake
    path = project.lake.release_utterances("r1")
    old = pq.read_table(path).drop_columns(["eval_set", "held_back_for"])
    pq.write_table(old, path)
    rebuild_catalogue(project)
    rows = frame(project.catalogue_path, "SELECT eval_set, held_back_for FROM release_utterances")
    assert rows.height == old.num_rows and rows["eval_set"].null_count() == rows.height
