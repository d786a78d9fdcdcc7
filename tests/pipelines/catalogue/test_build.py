"""The catalogue's writers: incremental updates in several orders equal a fresh rebuild
after every step; stale, foreign and invalid files; loading in batches.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import duckdb
import polars as pl
import pytest
from catalogue_lake import (
    RUN_RECORD,
    assert_equals_rebuild,
    assess,
    code_rows,
    dump,
    frame,
    ingest,
    more_records,
    new_project,
    records,
    release,
    stricter,
    tokenize,
    tokenizer_sha256,
    units_of,
)

from inference.glm4voice import write_demo_checkpoint
from pipelines.catalogue import load
from pipelines.catalogue.build import rebuild_catalogue, update_catalogue
from pipelines.catalogue.errors import CatalogueError
from pipelines.catalogue.scan import scan_lake
from pipelines.lake.atomic import write_bytes_atomic
from pipelines.project import Project
from pipelines.steps.quality import assess_unit

# ---------------------------------------------------------------------------
# Incremental updates equal a rebuild


def _steps(project_box: list[Project]) -> dict[str, Callable[[], None]]:
    def project() -> Project:
        return project_box[0]

    def requality() -> None:
        project_box[0] = stricter(project())
        unit = units_of(project(), "librispeech")[0]
        assess_unit(project(), project().config.source("librispeech"), unit)

    def remove() -> None:
        lake = project().lake
        unit = units_of(project(), "wenetspeech")[0]
        lake.code_index(tokenizer_sha256(project()), "wenetspeech", unit).unlink(missing_ok=True)
        lake.shard_index("wenetspeech", unit).unlink(missing_ok=True)
        gone = units_of(project(), "custom_folder")[-1]
        lake.manifest("custom_folder", gone).unlink()
        lake.quality("custom_folder", gone).unlink(missing_ok=True)
        lake.run_record("run-0001").unlink(missing_ok=True)

    def codes() -> None:
        # The tokens step on the first unit of two sources, wherever quality has run (an
        # empty unit gets empty code shards).
        for source in ("librispeech", "wenetspeech"):
            unit = units_of(project(), source)[0]
            if project().lake.shard_index(source, unit).exists():
                tokenize(project(), source, unit)

    return {
        "ingest": lambda: ingest(project()),
        "assess_some": lambda: assess(project(), ["librispeech", "wenetspeech"]),
        "assess_rest": lambda: assess(project(), [s.name for s in project().config.sources][2:]),
        "codes": codes,
        "release": lambda: release(project(), "r1"),
        "records": lambda: records(project()),
        "more_records": lambda: more_records(project()),
        "requality": requality,
        "remove": remove,
        "release_again": lambda: release(project(), "r2"),
        "unrelease": lambda: shutil.rmtree(project().lake.release_dir("r1")),
    }


ORDERS = [
    [
        "ingest",
        "assess_some",
        "assess_rest",
        "codes",
        "release",
        "records",
        "more_records",
        "requality",
        "remove",
    ],
    ["ingest", "records", "assess_rest", "assess_some", "requality", "codes", "remove", "release"],
    [
        "ingest",
        "assess_some",
        "codes",
        "release",
        "requality",
        "release_again",
        "unrelease",
        "assess_rest",
        "remove",
        "records",
        "more_records",
    ],
]


@pytest.mark.parametrize("order", ORDERS, ids=["forward", "shuffled", "releases-first"])
def test_incremental_updates_equal_a_rebuild(
    order: list[str], tmp_path: Path, corpora: Path
) -> None:
    box = [new_project(tmp_path / "proj", corpora)]
    steps = _steps(box)
    stats = update_catalogue(box[0])
    assert stats.mode == "rebuild" and stats.n_utterances == 0
    for step in order:
        steps[step]()
        stats = update_catalogue(box[0])
        assert stats.mode == "update", step
        assert_equals_rebuild(box[0], tmp_path)
    # Nothing changed: nothing is refreshed, nothing differs.
    stats = update_catalogue(box[0])
    assert stats.units_refreshed == [] and stats.releases_refreshed == []
    assert_equals_rebuild(box[0], tmp_path)


def test_requality_changes_the_rows_of_that_unit_only(copied_lake: Project, tmp_path) -> None:
    built = update_catalogue(copied_lake)
    before = dump(copied_lake.catalogue_path)["utterances"]
    # The data version: kept by a refresh that folds in nothing, equal to a rebuild's.
    assert update_catalogue(copied_lake).upstream_sha256 == built.upstream_sha256
    assert rebuild_catalogue(copied_lake, path=tmp_path / "r.duckdb").upstream_sha256 == (
        built.upstream_sha256
    )
    strict = stricter(copied_lake)
    unit = units_of(strict, "librispeech")[0]
    other = units_of(strict, "librispeech")[1]
    assess_unit(strict, strict.config.source("librispeech"), unit)

    # Named units are refreshed whether changed or not, and only they.
    stats = update_catalogue(strict, units=[other])
    assert stats.units_refreshed == [other]
    assert dump(strict.catalogue_path)["utterances"] == before
    assert stats.upstream_sha256 == built.upstream_sha256  # what it holds did not change

    stats = update_catalogue(strict)
    assert stats.units_refreshed == [unit]
    assert stats.upstream_sha256 != built.upstream_sha256
    rows = frame(strict.catalogue_path, f"SELECT * FROM utterances WHERE unit = '{unit}'")
    measured = rows.filter(pl.col("reject_stage").is_null() | (pl.col("reject_stage") == "policy"))
    assert measured.height > 0 and set(measured["status"]) == {"rejected"}
    assert "min_snr_db" in set(measured["reject_rule"])
    assert set(measured["policy_version"]) == {strict.config.quality.version()}
    elsewhere = frame(
        strict.catalogue_path,
        f"SELECT DISTINCT policy_version FROM utterances WHERE unit <> '{unit}'"
        " AND policy_version IS NOT NULL",
    )
    assert elsewhere["policy_version"].to_list() == [copied_lake.config.quality.version()]
    assert_equals_rebuild(strict, tmp_path)


def test_a_change_of_tokenizer_refreshes_the_units_with_codes(
    copied_lake: Project, tmp_path: Path
) -> None:
    update_catalogue(copied_lake)
    tokenized = sorted(set(code_rows(copied_lake)["unit"]))
    assert len(tokenized) == 2
    write_demo_checkpoint(copied_lake.directory / "models" / "other-demo", seed=1)
    settings = copied_lake.config.tokenizer.model_copy(update={"checkpoint": "models/other-demo"})
    other = Project(
        copied_lake.directory, copied_lake.config.model_copy(update={"tokenizer": settings})
    )
    other_sha256 = tokenizer_sha256(other)
    assert other_sha256 != tokenizer_sha256(copied_lake)

    # No codes of the new tokenizer yet: the units that had codes have none now.
    stats = update_catalogue(other)
    assert stats.mode == "update" and stats.tokenizer_sha256 == other_sha256
    assert stats.units_refreshed == tokenized and stats.n_code_shards == 0
    assert frame(other.catalogue_path, "SELECT count(n_codes) AS n FROM utterances")["n"][0] == 0
    assert_equals_rebuild(other, tmp_path)

    # The tokens step with the new tokenizer on one unit: that unit only, with its codes.
    unit = tokenized[0]
    tokenize(other, unit.split(".", 1)[0], unit)
    stats = update_catalogue(other)
    assert stats.units_refreshed == [unit] and stats.n_code_shards > 0
    hashes = frame(
        other.catalogue_path,
        "SELECT DISTINCT unit, tokenizer_sha256 FROM utterances WHERE codes_shard IS NOT NULL",
    )
    assert hashes.rows() == [(unit, other_sha256)]
    assert_equals_rebuild(other, tmp_path)

    # Back to the first tokenizer: every unit with codes of either is reloaded.
    stats = update_catalogue(copied_lake)
    assert stats.units_refreshed == tokenized
    info = dict(frame(copied_lake.catalogue_path, "SELECT * FROM catalogue_info").iter_rows())
    assert info["tokenizer_sha256"] == tokenizer_sha256(copied_lake)
    assert_equals_rebuild(copied_lake, tmp_path)
    assert update_catalogue(copied_lake).units_refreshed == []


def test_loading_in_batches_gives_the_same_catalogue(
    full_lake: Project, built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(load, "BATCH_MANIFEST_BYTES", 1)  # one unit per statement
    files = scan_lake(full_lake.lake, tokenizer_sha256(full_lake))
    units = {f.entity for f in files if f.kind == "manifest"}
    assert len(load._unit_batches(files, units)) == len(units) > 10
    batched = tmp_path / "batched.duckdb"
    rebuild_catalogue(full_lake, batched)
    assert dump(batched) == dump(built)


def test_a_stale_or_foreign_file_is_rebuilt(copied_lake: Project) -> None:
    update_catalogue(copied_lake)
    con = duckdb.connect(str(copied_lake.catalogue_path))
    con.execute("UPDATE catalogue_info SET value = '0' WHERE name = 'schema_version'")
    con.close()
    stats = update_catalogue(copied_lake)
    assert stats.mode == "rebuild" and "schema version 0" in stats.reason
    copied_lake.catalogue_path.write_bytes(b"not a database" * 1000)
    stats = update_catalogue(copied_lake)
    assert stats.mode == "rebuild" and stats.n_utterances > 0
    assert update_catalogue(copied_lake).mode == "update"
    leftovers = [p.name for p in copied_lake.directory.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_a_catalogue_whose_columns_differ_from_the_contracts_is_rebuilt(
    copied_lake: Project,
) -> None:
    update_catalogue(copied_lake)
    con = duckdb.connect(str(copied_lake.catalogue_path))
    # As if built before `RunRecord` had the field: same schema version, other columns.
    con.execute("ALTER TABLE runs DROP COLUMN dagster_run_id")
    con.close()
    stats = update_catalogue(copied_lake)
    assert (
        stats.mode == "rebuild" and stats.reason == "columns of runs differ from their definitions"
    )
    assert stats.n_runs == 1
    assert update_catalogue(copied_lake).mode == "update"


def test_an_invalid_release_file_stops_the_build_and_changes_nothing(
    copied_lake: Project,
) -> None:
    update_catalogue(copied_lake)
    before = dump(copied_lake.catalogue_path)
    bad = copied_lake.lake.release_file("broken")
    write_bytes_atomic(bad, b'{"name": "broken"}')
    with pytest.raises(CatalogueError, match=r"broken/release\.json: not a valid release"):
        update_catalogue(copied_lake)
    with pytest.raises(CatalogueError, match=r"broken/release\.json"):
        rebuild_catalogue(copied_lake)
    assert dump(copied_lake.catalogue_path) == before
    assert not [p for p in copied_lake.directory.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"stage": "stage9"}, r"not a valid run record .*stage: Input should be"),
        ({"status": None}, r"not a valid run record .*status:"),
        ({"loss_curve": [1, 2]}, r"not a valid run record .*loss_curve: Extra inputs"),
        ({"started_at": "yesterday"}, r"not a valid run record .*started_at:"),
        ({"run_id": "run-9999"}, r"run_id 'run-9999' differs from the file name \('run-0001'\)"),
    ],
    ids=["stage", "missing-status", "unknown-field", "bad-time", "wrong-id"],
)
def test_an_invalid_run_file_is_an_error_naming_it(
    copied_lake: Project, change: dict, expected: str
) -> None:
    update_catalogue(copied_lake)
    before = dump(copied_lake.catalogue_path)
    run = {**RUN_RECORD, **change}
    path = copied_lake.lake.run_record("run-0001")
    write_bytes_atomic(path, json.dumps(run).encode())
    with pytest.raises(CatalogueError, match=rf"^{re.escape(str(path))}: {expected}"):
        update_catalogue(copied_lake)
    with pytest.raises(CatalogueError, match=re.escape(str(path))):
        rebuild_catalogue(copied_lake)
    assert dump(copied_lake.catalogue_path) == before


def test_an_invalid_eval_file_is_an_error_naming_it(copied_lake: Project) -> None:
    path = copied_lake.lake.eval_record("eval-0001")
    write_bytes_atomic(path, b'{"eval_id": "eval-0001", "split": "holdout"')
    with pytest.raises(CatalogueError, match=rf"^{re.escape(str(path))}: not a valid evaluation"):
        rebuild_catalogue(copied_lake)
