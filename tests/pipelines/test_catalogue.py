"""The DuckDB catalogue over a small real lake: the committed corpora run through
inventory, manifest and quality, plus token files, shard indexes, a release, a run and
an evaluation written here with the contracts' schemas.

Checked: one row per manifest row with the decision the corpus generator planted;
token and shard columns on exactly the tokenized and sharded utterances; the views'
sums against sums computed from the lake files directly; incremental updates in
several orders equal a fresh rebuild after every step; the single-writer rules.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.catalogue.build import (
    CATALOGUE_SCHEMA_VERSION,
    TABLES,
    VIEWS,
    CatalogueError,
    CatalogueLockedError,
    open_catalogue_readonly,
    query_catalogue,
    rebuild_catalogue,
    update_catalogue,
)
from pipelines.demo.project import DEMO_SOURCES, demo_config
from pipelines.lake.atomic import write_bytes_atomic, write_parquet_atomic
from pipelines.lake.views import QueryError
from pipelines.project import Project, init_project, load_project
from pipelines.steps.inventory import inventory_source
from pipelines.steps.manifest import build_manifest
from pipelines.steps.quality import assess_unit
from pipelines.units import read_units_index
from schemas import SHARD_INDEX_ARROW_SCHEMA, TOKENS_ARROW_SCHEMA, QualityPolicy
from schemas.release import (
    RELEASE_UTTERANCE_ARROW_SCHEMA,
    Release,
    ReleaseShard,
    ReleaseUtterance,
)
from schemas.training import EvalRecord, RunRecord

REPO = Path(__file__).resolve().parents[2]
TOKENIZER_SHA256 = hashlib.sha256(b"demo tokenizer").hexdigest()
EXPECTED_NAME = {
    "librispeech": "librispeech",
    "wenetspeech": "wenetspeech",
    "emilia": "emilia",
    "custom_folder": "custom_folder",
    "custom_table": "custom_table",
    "custom_vita": "custom_vita",
    "custom_hf": "custom_hf_disk",
    "custom_parquet": "custom_hf_parquet",
}


# ---------------------------------------------------------------------------
# Building a lake step by step


def _new_project(folder: Path, corpora: Path) -> Project:
    config = demo_config(folder, corpora)
    # Absolute corpus paths, so that a copied project still finds its corpora.
    sources = [
        s.model_copy(update={"path": str(corpora_path(folder, s.path))}) for s in config.sources
    ]
    return init_project(folder, config.model_copy(update={"sources": sources}))


def corpora_path(folder: Path, relative: str) -> Path:
    return (folder / relative).resolve()


def ingest(project: Project) -> None:
    for source in project.config.sources:
        for plan in inventory_source(source, project.directory, project.lake, project.config.units):
            build_manifest(source, project.directory, project.lake, plan.unit, plan.n_inputs)


def units_of(project: Project, source: str) -> list[str]:
    return [p.unit for p in read_units_index(project.lake, source)]


def assess(project: Project, sources: list[str]) -> None:
    for name in sources:
        for unit in units_of(project, name):
            assess_unit(project, project.config.source(name), unit)


def accepted_rows(project: Project, source: str, unit: str) -> list[dict]:
    quality = pl.read_parquet(project.lake.quality(source, unit))
    return quality.filter(pl.col("status") == "accepted").sort("utterance_id").to_dicts()


def tokenize_and_shard(project: Project, source: str, unit: str) -> None:
    """Token file and shard index for the unit's accepted utterances (two shards)."""
    rows = accepted_rows(project, source, unit)
    assert rows, f"{unit} has no accepted utterance"
    tokens, index = [], []
    for position, row in enumerate(rows):
        n_codes = round(row["duration_s"] * 12.5)
        tokens.append(
            {
                "utterance_id": row["utterance_id"],
                "source": source,
                "unit": unit,
                "duration_s": row["duration_s"],
                "n_samples": round(row["duration_s"] * 16000),
                "codes": [(position * 7 + i) % 16384 for i in range(n_codes)],
                "n_codes": n_codes,
                "tokenizer_sha256": TOKENIZER_SHA256,
                "tokenizer_is_demo": True,
            }
        )
        shard = f"shards/{source}/{unit}/shard-{position % 2:06d}.tar"
        index.append(
            {
                "key": row["utterance_id"].replace("/", "__").replace(".", "_"),
                "utterance_id": row["utterance_id"],
                "source": source,
                "unit": unit,
                "shard": shard,
                "shard_sha256": hashlib.sha256(shard.encode()).hexdigest(),
                "shard_bytes": 100_000 + 1000 * (position % 2),
                "flac_offset": 512 * position,
                "flac_size": 400,
                "codes_offset": 512 * position + 400,
                "codes_size": 2 * n_codes,
                "json_offset": 512 * position + 450,
                "json_size": 50,
                "duration_s": row["duration_s"],
                "n_codes": n_codes,
            }
        )
    write_parquet_atomic(
        project.lake.tokens(source, unit), pa.Table.from_pylist(tokens, TOKENS_ARROW_SCHEMA)
    )
    write_parquet_atomic(
        project.lake.shards_dir(source, unit) / "index.parquet",
        pa.Table.from_pylist(index, SHARD_INDEX_ARROW_SCHEMA),
    )


def release(project: Project, name: str) -> None:
    """A release of every sharded utterance: every third one to dev."""
    files = sorted((project.lake.root / "shards").glob("*/*/index.parquet"))
    index = [r for f in files for r in pl.read_parquet(f).to_dicts()]
    index.sort(key=lambda r: r["utterance_id"])
    utterances = [
        ReleaseUtterance(
            utterance_id=r["utterance_id"],
            key=r["key"],
            shard=r["shard"],
            source=r["source"],
            language=None,
            speaker=None,
            duration_s=r["duration_s"],
            split="dev" if i % 3 == 0 else "train",
        )
        for i, r in enumerate(index)
    ]
    shards = {
        r["shard"]: ReleaseShard(
            shard=r["shard"],
            sha256=r["shard_sha256"],
            bytes=r["shard_bytes"],
            source=r["source"],
            unit=r["unit"],
        )
        for r in index
    }
    model = Release(
        name=name,
        created_at=dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC),
        where="status = 'accepted'",
        dev_fraction=0.33,
        n_utterances=len(utterances),
        duration_s=sum(u.duration_s for u in utterances),
        policy_versions=[project.config.quality.version()],
        tokenizer_sha256=[TOKENIZER_SHA256],
        tokenizer_is_demo=True,
        code_version="test",
        shards=sorted(shards.values(), key=lambda s: s.shard),
    )
    folder = project.lake.release_dir(name)
    write_parquet_atomic(
        folder / "utterances.parquet",
        pa.Table.from_pylist(
            [u.model_dump(mode="json") for u in utterances], RELEASE_UTTERANCE_ARROW_SCHEMA
        ),
    )
    write_bytes_atomic(folder / "release.json", model.model_dump_json(indent=1).encode())


RUN_RECORD = {
    "run_id": "run-0001",
    "stage": "stage1",
    "profile": "tiny",
    "release": "r1",
    "base_checkpoint": None,
    "base_run_id": None,
    "checkpoint": "checkpoints/run-0001/hf",
    "checkpoint_sha256": "c" * 64,
    "config_path": "configs/stage1.yaml",
    "config_sha256": "a" * 64,
    "tokenizer_sha256": "b" * 64,
    "code_version": "0.1.0+gtest",
    "deepspeed_config": {"zero_optimization": {"stage": 2}, "bf16": {"enabled": True}},
    "world_size": 8,
    "status": "succeeded",
    "started_at": "2025-03-01T12:00:00+00:00",
    "finished_at": "2025-03-01T13:30:00",
    "resumed_from_step": 40,
    "dagster_run_id": "dagster-0001",
    "metrics": {"final_loss": 2.5, "steps": 100},
}
EVAL_RECORD = {
    "eval_id": "eval-0001",
    "run_id": "run-0001",
    "checkpoint": "checkpoints/run-0001/hf",
    "checkpoint_sha256": "c" * 64,
    "release": "r1",
    "split": "dev",
    "code_version": "0.1.0+gtest",
    "created_at": "2025-03-01T14:00:00+00:00",
    "dagster_run_id": None,
    "metrics": {"loss": 2.75},
}


def records(project: Project, **run_changes: object) -> None:
    """One training run and one evaluation, as their JSON files (`RunRecord`, `EvalRecord`)."""
    run = {**RUN_RECORD, **run_changes}
    write_bytes_atomic(project.lake.root / "runs" / "run-0001.json", json.dumps(run).encode())
    write_bytes_atomic(
        project.lake.root / "evals" / "eval-0001.json", json.dumps(EVAL_RECORD).encode()
    )


def more_records(project: Project) -> None:
    """The run rewritten as it ends, and a second stage based on it that is still running."""
    records(project, status="succeeded", metrics={"final_loss": 2.25, "steps": 120})
    second = {
        **RUN_RECORD,
        "run_id": "run-0002",
        "stage": "mtp1",
        "base_checkpoint": RUN_RECORD["checkpoint"],
        "base_run_id": "run-0001",
        "checkpoint": None,
        "checkpoint_sha256": None,
        "status": "running",
        "finished_at": None,
        "resumed_from_step": None,
        "metrics": {},
    }
    write_bytes_atomic(project.lake.root / "runs" / "run-0002.json", json.dumps(second).encode())


def stricter(project: Project) -> Project:
    """The project with an SNR floor above every clean utterance's WADA-SNR."""
    policy = QualityPolicy.model_validate(
        {**project.config.quality.model_dump(), "min_snr_db": 200.0}
    )
    return Project(project.directory, project.config.model_copy(update={"quality": policy}))


# ---------------------------------------------------------------------------
# Reading a catalogue back


def _rounded(row: tuple) -> tuple:
    return tuple(round(v, 9) if isinstance(v, float) else v for v in row)


def dump(path: Path) -> dict[str, list[tuple]]:
    """Every table's rows, sorted; every view's too, floats rounded (sums depend on order)."""
    con = open_catalogue_readonly(path, wait_s=0)
    try:
        tables = {
            name: con.execute(f"SELECT * FROM {name} ORDER BY ALL").fetchall() for name in TABLES
        }
        views = {
            name: [
                _rounded(r) for r in con.execute(f"SELECT * FROM {name} ORDER BY ALL").fetchall()
            ]
            for name in VIEWS
        }
        return tables | views
    finally:
        con.close()


def assert_equals_rebuild(project: Project, tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.duckdb"
    rebuild_catalogue(project, fresh)
    updated, rebuilt = dump(project.catalogue_path), dump(fresh)
    assert set(updated) == set(rebuilt) == set(TABLES) | set(VIEWS)
    for name in rebuilt:
        assert updated[name] == rebuilt[name], f"{name} differs after the update"


def frame(path: Path, sql: str) -> pl.DataFrame:
    result = pl.from_arrow(query_catalogue(path, sql))
    assert isinstance(result, pl.DataFrame)
    return result


# ---------------------------------------------------------------------------
# A full lake


@pytest.fixture(scope="module")
def full_lake(tmp_path_factory: pytest.TempPathFactory, corpora: Path) -> Project:
    project = _new_project(tmp_path_factory.mktemp("catalogue") / "proj", corpora)
    ingest(project)
    assess(project, [s.name for s in project.config.sources])
    for source in ("librispeech", "wenetspeech"):
        tokenize_and_shard(project, source, units_of(project, source)[0])
    release(project, "r1")
    records(project)
    return project


@pytest.fixture
def copied_lake(full_lake: Project, tmp_path: Path) -> Project:
    target = tmp_path / "proj"
    shutil.copytree(full_lake.directory, target, symlinks=True)
    return load_project(target)


@pytest.fixture(scope="module")
def built(full_lake: Project, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("built") / "catalogue.duckdb"
    stats = rebuild_catalogue(full_lake, path)
    assert stats.mode == "rebuild" and stats.n_utterances > 0
    return path


def test_one_row_per_manifest_row_with_the_planted_decisions(
    full_lake: Project, built: Path, load_expected: Callable[[str], list[dict]]
) -> None:
    manifest_rows = sum(
        pq.read_metadata(p).num_rows for p in (full_lake.lake.root / "manifests").glob("*/*")
    )
    rows = frame(built, "SELECT * FROM utterances")
    assert rows.height == manifest_rows == rows["utterance_id"].n_unique()
    by_id = {r["utterance_id"]: r for r in rows.to_dicts()}
    total = 0
    for name, *_ in DEMO_SOURCES:
        for entry in load_expected(EXPECTED_NAME[name]):
            total += 1
            row = by_id[f"{name}/{entry['native_id']}"]
            if entry["status"] == "rejected":
                expected = ("rejected", "ingest", entry["reason"], "rejected")
                assert row["reject_message"], row
            elif entry["later_reason"] is not None:
                expected = ("rejected", "policy", entry["later_reason"], "ok")
                assert row["reject_message"] and row["failed_rules"][0] == row["reject_rule"], row
            else:
                expected = ("accepted", None, None, "ok")
                assert row["measured_duration_s"] == pytest.approx(entry["duration_s"], abs=0.06)
                assert row["duration_s"] == row["measured_duration_s"]
                assert row["pcm_sha256"] and row["policy_version"]
            got = (row["status"], row["reject_stage"], row["reject_rule"], row["ingest_status"])
            assert got == expected, row
            assert row["speaker"] == entry["speaker"] and row["text"] == entry["text"]
    assert total == rows.height


def test_token_and_shard_columns_exactly_where_written(full_lake: Project, built: Path) -> None:
    rows = frame(built, "SELECT * FROM utterances")
    written = pl.concat(
        [pl.read_parquet(p) for p in (full_lake.lake.root / "shards").glob("*/*/index.parquet")]
    )
    assert written.height > 4
    sharded = rows.filter(pl.col("key").is_not_null())
    assert sorted(sharded["utterance_id"]) == sorted(written["utterance_id"])
    joined = sharded.join(written, on="utterance_id", suffix="_index")
    assert (joined["key"] == joined["key_index"]).all()
    assert (joined["shard"] == joined["shard_index"]).all()
    assert (joined["n_codes"] == joined["n_codes_index"]).all()
    assert (sharded["tokenizer_sha256"] == TOKENIZER_SHA256).all()
    assert sharded["tokenizer_is_demo"].all() and (sharded["status"] == "accepted").all()
    others = rows.filter(pl.col("key").is_null())
    assert others["n_codes"].null_count() == others.height
    assert others["tokenizer_is_demo"].null_count() == others.height

    shards = frame(built, "SELECT * FROM shards ORDER BY shard")
    expected = (
        written.group_by("shard")
        .agg(pl.len().alias("n_samples"), pl.col("shard_bytes").first())
        .sort("shard")
    )
    assert shards["shard"].to_list() == expected["shard"].to_list()
    assert shards["n_samples"].to_list() == expected["n_samples"].to_list()
    assert shards["bytes"].to_list() == expected["shard_bytes"].to_list()
    assert set(shards["unit"]) == set(written["unit"]) and len(set(shards["unit"])) == 2


def test_release_run_and_evaluation_rows(full_lake: Project, built: Path) -> None:
    release_row = frame(built, "SELECT * FROM releases").to_dicts()
    assert len(release_row) == 1
    (r1,) = release_row
    assert r1["name"] == "r1" and r1["where_sql"] == "status = 'accepted'"
    assert r1["created_at"] == dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
    members = frame(built, "SELECT * FROM release_utterances")
    assert members.height == r1["n_utterances"] > 0
    assert set(members["release"]) == {"r1"}
    assert members.filter(pl.col("split") == "dev").height == math.ceil(members.height / 3)
    in_shards = frame(
        built,
        "SELECT count(*) AS n FROM release_utterances r JOIN utterances u USING (utterance_id)"
        " WHERE r.key = u.key AND r.shard = u.shard",
    )
    assert in_shards["n"][0] == members.height
    release_shards = frame(
        built,
        "SELECT r.*, s.n_samples FROM release_shards r JOIN shards s"
        " ON s.shard = r.shard AND s.sha256 = r.sha256",
    )
    assert release_shards.height == 4 and release_shards["n_samples"].sum() == members.height

    (run,) = frame(built, "SELECT * FROM runs").to_dicts()
    assert set(run) == set(RunRecord.model_fields) == set(RUN_RECORD)
    json_columns = {"deepspeed_config", "metrics", "started_at", "finished_at"}
    assert {k: v for k, v in run.items() if k not in json_columns} == {
        k: v for k, v in RUN_RECORD.items() if k not in json_columns
    }
    assert json.loads(run["deepspeed_config"]) == RUN_RECORD["deepspeed_config"]
    assert json.loads(run["metrics"]) == {"final_loss": 2.5, "steps": 100}
    assert run["started_at"] == dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
    # A time written without a zone is read as UTC.
    assert run["finished_at"] - run["started_at"] == dt.timedelta(minutes=90)
    (evaluation,) = frame(built, "SELECT * FROM evals").to_dicts()
    assert set(evaluation) == set(EvalRecord.model_fields) == set(EVAL_RECORD)
    assert {k: v for k, v in evaluation.items() if k not in {"metrics", "created_at"}} == {
        k: v for k, v in EVAL_RECORD.items() if k not in {"metrics", "created_at"}
    }
    assert json.loads(evaluation["metrics"]) == {"loss": 2.75}
    assert evaluation["created_at"] == dt.datetime(2025, 3, 1, 14, 0, tzinfo=dt.UTC)
    columns = query_catalogue(
        built,
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'runs'",
    )
    types = {r["column_name"]: r["data_type"] for r in columns.to_pylist()}
    assert types["deepspeed_config"] == types["metrics"] == "JSON"
    assert types["world_size"] == types["resumed_from_step"] == "BIGINT"

    sources = frame(built, "SELECT * FROM sources ORDER BY name")
    assert sources["name"].to_list() == sorted(name for name, *_ in DEMO_SOURCES)
    units = frame(built, "SELECT * FROM units")
    planned = [
        p for s in full_lake.config.sources for p in read_units_index(full_lake.lake, s.name)
    ]
    assert units.height == len(planned) and units["n_inputs"].sum() == sum(
        p.n_inputs for p in planned
    )
    info = dict(frame(built, "SELECT * FROM catalogue_info").iter_rows())
    assert info["schema_version"] == str(CATALOGUE_SCHEMA_VERSION)


def _lake_frame(project: Project) -> pl.DataFrame:
    """Manifest rows joined with their quality rows, read straight from the lake files."""
    root = project.lake.root
    manifests = pl.concat([pl.read_parquet(p) for p in sorted(root.glob("manifests/*/*.parquet"))])
    quality = pl.concat([pl.read_parquet(p) for p in sorted(root.glob("quality/*/*.parquet"))])
    joined = manifests.select("utterance_id", "source", "language", "duration_s").join(
        quality.select(
            "utterance_id", "status", pl.col("duration_s").alias("measured_s"), "wada_snr_db"
        ),
        on="utterance_id",
        how="left",
    )
    return joined.with_columns(pl.coalesce("measured_s", "duration_s").alias("best_s"))


def test_views_return_the_sums_of_the_lake_files(full_lake: Project, built: Path) -> None:
    lake = _lake_frame(full_lake)
    hours = frame(built, "SELECT * FROM hours_by_source_language_status")
    expected = lake.group_by("source", "language", "status").agg(
        pl.len().alias("n"), (pl.col("best_s").fill_null(0).sum() / 3600).alias("h")
    )
    assert hours.height == expected.height
    got = hours.join(expected, on=["source", "language", "status"], nulls_equal=True)
    assert got.height == expected.height
    assert (got["n_utterances"] == got["n"]).all()
    assert got["hours"].to_list() == pytest.approx(got["h"].to_list(), abs=1e-9)
    assert set(hours["status"]) == {"accepted", "rejected"}

    histogram = frame(built, "SELECT * FROM snr_histogram")
    measured = lake.filter(pl.col("wada_snr_db").is_not_null())
    expected = (
        measured.with_columns(((pl.col("wada_snr_db") / 5).floor() * 5).alias("snr_db_from"))
        .group_by("source", "snr_db_from")
        .agg(pl.len().alias("n"), (pl.col("best_s").sum() / 3600).alias("h"))
    )
    got = histogram.join(expected, on=["source", "snr_db_from"])
    assert histogram.height == expected.height == got.height > 3
    assert (got["n_utterances"] == got["n"]).all()
    assert got["hours"].to_list() == pytest.approx(got["h"].to_list(), abs=1e-9)
    assert (histogram["snr_db_to"] - histogram["snr_db_from"] == 5).all()

    rejections = frame(built, "SELECT * FROM rejections")
    assert rejections.height == lake.filter(pl.col("status") == "rejected").height > 5
    assert rejections["reject_stage"].null_count() == 0
    assert set(rejections["reject_stage"]) >= {"ingest", "policy"}
    accepted = frame(built, "SELECT count(*) AS n FROM accepted")
    assert accepted["n"][0] == lake.filter(pl.col("status") == "accepted").height

    progress = frame(built, "SELECT * FROM unit_progress")
    assert (progress["n_inputs"] == progress["n_accepted"] + progress["n_rejected"]).all()
    assert progress["n_pending"].sum() == 0 and progress["n_sharded"].sum() > 4


def test_utterances_without_a_decision_are_pending(copied_lake: Project) -> None:
    unit = units_of(copied_lake, "librispeech")[0]
    copied_lake.lake.quality("librispeech", unit).unlink()
    rebuild_catalogue(copied_lake)
    rows = frame(
        copied_lake.catalogue_path,
        f"SELECT * FROM utterances WHERE unit = '{unit}' ORDER BY utterance_id",
    )
    ok = rows.filter(pl.col("ingest_status") == "ok")
    assert ok.height > 0 and set(ok["status"]) == {"pending"}
    assert ok["reject_stage"].null_count() == ok.height == ok["wada_snr_db"].null_count()
    # Declared durations stand in until a measured one exists.
    assert (ok["duration_s"] == ok["declared_duration_s"]).all()
    # Tokens and shards written before the decision still show (the lake says so).
    assert ok["key"].null_count() < ok.height
    ingest_rejected = rows.filter(pl.col("ingest_status") == "rejected")
    assert ingest_rejected.height > 0
    assert set(ingest_rejected["status"]) == {"rejected"}
    assert set(ingest_rejected["reject_stage"]) == {"ingest"}
    assert ingest_rejected["reject_rule"].null_count() == 0
    assert ingest_rejected["policy_version"].null_count() == ingest_rejected.height


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
        lake.tokens("wenetspeech", unit).unlink(missing_ok=True)
        (lake.shards_dir("wenetspeech", unit) / "index.parquet").unlink(missing_ok=True)
        gone = units_of(project(), "custom_folder")[-1]
        lake.manifest("custom_folder", gone).unlink()
        lake.quality("custom_folder", gone).unlink(missing_ok=True)
        (lake.root / "runs" / "run-0001.json").unlink(missing_ok=True)

    def shard() -> None:
        for source in ("librispeech", "wenetspeech"):
            unit = units_of(project(), source)[0]
            if accepted_rows(project(), source, unit):
                tokenize_and_shard(project(), source, unit)

    return {
        "ingest": lambda: ingest(project()),
        "assess_some": lambda: assess(project(), ["librispeech", "wenetspeech"]),
        "assess_rest": lambda: assess(project(), [s.name for s in project().config.sources][2:]),
        "shard": shard,
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
        "shard",
        "release",
        "records",
        "more_records",
        "requality",
        "remove",
    ],
    ["ingest", "records", "assess_rest", "assess_some", "requality", "shard", "remove", "release"],
    [
        "ingest",
        "assess_some",
        "shard",
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
    box = [_new_project(tmp_path / "proj", corpora)]
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
    update_catalogue(copied_lake)
    before = dump(copied_lake.catalogue_path)["utterances"]
    strict = stricter(copied_lake)
    unit = units_of(strict, "librispeech")[0]
    other = units_of(strict, "librispeech")[1]
    assess_unit(strict, strict.config.source("librispeech"), unit)

    # Named units are refreshed whether changed or not, and only they.
    stats = update_catalogue(strict, units=[other])
    assert stats.units_refreshed == [other]
    assert dump(strict.catalogue_path)["utterances"] == before

    stats = update_catalogue(strict)
    assert stats.units_refreshed == [unit]
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


def test_loading_in_batches_gives_the_same_catalogue(
    full_lake: Project, built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipelines.catalogue.build as catalogue

    monkeypatch.setattr(catalogue, "BATCH_MANIFEST_BYTES", 1)  # one unit per statement
    files = catalogue.scan_lake(full_lake.lake)
    units = {f.entity for f in files if f.kind == "manifest"}
    assert len(catalogue._unit_batches(files, units)) == len(units) > 10
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


def test_an_invalid_release_file_stops_the_build_and_changes_nothing(
    copied_lake: Project,
) -> None:
    update_catalogue(copied_lake)
    before = dump(copied_lake.catalogue_path)
    bad = copied_lake.lake.release_dir("broken") / "release.json"
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
    path = copied_lake.lake.root / "runs" / "run-0001.json"
    write_bytes_atomic(path, json.dumps(run).encode())
    with pytest.raises(CatalogueError, match=rf"^{re.escape(str(path))}: {expected}"):
        update_catalogue(copied_lake)
    with pytest.raises(CatalogueError, match=re.escape(str(path))):
        rebuild_catalogue(copied_lake)
    assert dump(copied_lake.catalogue_path) == before


def test_an_invalid_eval_file_is_an_error_naming_it(copied_lake: Project) -> None:
    path = copied_lake.lake.root / "evals" / "eval-0001.json"
    write_bytes_atomic(path, b'{"eval_id": "eval-0001", "split": "holdout"')
    with pytest.raises(CatalogueError, match=rf"^{re.escape(str(path))}: not a valid evaluation"):
        rebuild_catalogue(copied_lake)


# ---------------------------------------------------------------------------
# One writer, many readers


def test_readers_cannot_write(built: Path) -> None:
    con = open_catalogue_readonly(built)
    try:
        with pytest.raises(duckdb.Error, match="read-only"):
            con.execute("DELETE FROM utterances")
    finally:
        con.close()
    with pytest.raises(QueryError, match="only read queries"):
        query_catalogue(built, "DELETE FROM utterances")
    with pytest.raises(QueryError, match="one SQL statement"):
        query_catalogue(built, "SELECT 1; SELECT 2")
    with pytest.raises(QueryError):
        query_catalogue(built, "SELECT no_such_column FROM utterances")
    assert query_catalogue(built, "SELECT count(*) AS n FROM accepted").num_rows == 1
    with pytest.raises(CatalogueError, match="no catalogue"):
        open_catalogue_readonly(built.parent / "missing.duckdb")


def _hold(script: str) -> subprocess.Popen[str]:
    """A second process that runs `script`, says 'ready', and holds on until stdin closes."""
    process = subprocess.Popen(
        [sys.executable, "-c", script + "\nprint('ready', flush=True)\nsys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


def _release_process(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.close()
    assert process.wait(timeout=30) == 0


def test_a_second_writer_gets_a_clear_error(copied_lake: Project) -> None:
    path = copied_lake.catalogue_path
    update_catalogue(copied_lake)
    # Another process with the file open read-write (a writer, or a DuckDB shell).
    holder = _hold(f"import sys, duckdb\ncon = duckdb.connect({str(path)!r})")
    try:
        with pytest.raises(CatalogueLockedError, match="writer is already running"):
            update_catalogue(copied_lake, lock_wait_s=0)
        with pytest.raises(CatalogueLockedError, match="writer is already running"):
            rebuild_catalogue(copied_lake, lock_wait_s=0)
        with pytest.raises(CatalogueLockedError, match="being written"):
            open_catalogue_readonly(path, wait_s=0)
    finally:
        _release_process(holder)
    # Another voxlake writer, holding the writer lock.
    holder = _hold(
        "import sys\nfrom pathlib import Path\nfrom pipelines.catalogue import _writer_lock\n"
        f"lock = _writer_lock(Path({str(path)!r}), 0)\nlock.__enter__()"
    )
    try:
        with pytest.raises(CatalogueLockedError, match=f"process {holder.pid} holds"):
            update_catalogue(copied_lake, lock_wait_s=0)
        with pytest.raises(CatalogueLockedError, match="writer is already running"):
            rebuild_catalogue(copied_lake, lock_wait_s=0)
        # Readers are not affected by a writer that has not opened the file yet.
        assert query_catalogue(path, "SELECT 1 AS one").num_rows == 1
    finally:
        _release_process(holder)
    assert update_catalogue(copied_lake, lock_wait_s=0).mode == "update"


def test_a_rebuild_replaces_the_file_under_open_readers(copied_lake: Project) -> None:
    path = copied_lake.catalogue_path
    update_catalogue(copied_lake)
    reader = _hold(f"import sys, duckdb\ncon = duckdb.connect({str(path)!r}, read_only=True)")
    try:
        # An in-place update needs the file to itself; a rebuild renames a new file over it.
        with pytest.raises(CatalogueLockedError, match="reader holds it open"):
            update_catalogue(copied_lake, lock_wait_s=0)
        (copied_lake.lake.root / "evals" / "eval-0001.json").unlink()
        stats = rebuild_catalogue(copied_lake, lock_wait_s=0)
        assert stats.n_evals == 0
    finally:
        _release_process(reader)
    assert query_catalogue(path, "SELECT * FROM evals").num_rows == 0


def test_the_documentation_names_every_table_view_and_column(built: Path) -> None:
    text = (REPO / "docs" / "catalogue.md").read_text(encoding="utf-8")
    for name, columns in TABLES.items():
        assert f"`{name}`" in text, name
        for column, _ in columns:
            assert f"`{column}`" in text, f"{name}.{column}"
    for name in VIEWS:
        assert f"`{name}`" in text, name
        for column in query_catalogue(built, f"SELECT * FROM {name} LIMIT 0").column_names:
            assert f"`{column}`" in text, f"{name}.{column}"
    # The examples run, and the lineage one finds the source files of the run's release.
    (examples,) = re.findall(r"```sql\n(.*?)```", text, re.DOTALL)
    statements = [s for s in examples.split(";") if s.strip()]
    results = [query_catalogue(built, s) for s in statements]
    assert len(results) == 5 and all(r.num_rows > 0 for r in results)
    released = set(frame(built, "SELECT utterance_id FROM release_utterances")["utterance_id"])
    rows = frame(built, "SELECT * FROM utterances").filter(pl.col("utterance_id").is_in(released))
    lineage = pl.from_arrow(results[2])
    assert isinstance(lineage, pl.DataFrame)
    assert set(lineage["audio_path"]) == set(rows["audio_path"]) and len(released) > 4
    # Runs of a release with their final loss; evaluations of a checkpoint.
    assert results[3].to_pylist() == [
        {
            "run_id": "run-0001",
            "stage": "stage1",
            "profile": "tiny",
            "status": "succeeded",
            "base_run_id": None,
            "finished_at": dt.datetime(2025, 3, 1, 13, 30, tzinfo=dt.UTC),
            "final_loss": 2.5,
        }
    ]
    (evaluation,) = results[4].to_pylist()
    assert (evaluation["eval_id"], evaluation["run_id"], evaluation["stage"]) == (
        "eval-0001",
        "run-0001",
        "stage1",
    )
    assert f"CATALOGUE_SCHEMA_VERSION = {CATALOGUE_SCHEMA_VERSION}" in text
