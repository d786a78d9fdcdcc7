"""The catalogue's tables and views over a small real lake.

Checked: one row per manifest row with the decision the corpus generator planted;
audio shard columns on exactly the utterances of the audio shard indexes, code columns
and `code_shards` exactly as the configured tokenizer's code indexes say (and not for a
code index out of step with its audio); the release,
run and evaluation tables as their contracts define them; the views' sums against sums
computed from the lake files directly; the documentation names every table and column.
"""

from __future__ import annotations

import datetime as dt
import doctest
import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from catalogue_lake import (
    EVAL_RECORD,
    REPO,
    RUN_RECORD,
    audio_rows,
    code_rows,
    frame,
    tokenize,
    tokenizer_sha256,
    units_of,
)
from pydantic import BaseModel, Field

from pipelines.catalogue import tables
from pipelines.catalogue.build import rebuild_catalogue
from pipelines.catalogue.read import query_catalogue
from pipelines.catalogue.tables import (
    CATALOGUE_SCHEMA_VERSION,
    RELEASE_NESTED,
    RELEASE_RENAMED,
    TABLES,
    VIEWS,
    model_columns,
)
from pipelines.demo.project import DEMO_SOURCES
from pipelines.project import Project
from pipelines.steps.quality import assess_unit
from pipelines.units import read_units_index
from schemas import QualityPolicy
from schemas.hashing import file_sha256
from schemas.release import Release, ReleaseShard, ReleaseUtterance
from schemas.training import EvalRecord, RunRecord

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


def test_one_row_per_manifest_row_with_the_planted_decisions(
    full_lake: Project, built: Path, load_expected: Callable[[str], list[dict]]
) -> None:
    manifest_rows = sum(
        pq.read_metadata(p).num_rows for p in full_lake.lake.manifests_dir().glob("*/*")
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


def test_audio_shard_columns_exactly_where_written(full_lake: Project, built: Path) -> None:
    rows = frame(built, "SELECT * FROM utterances")
    written = audio_rows(full_lake)
    # The quality step writes every accepted utterance, and nothing else, to an audio shard.
    assert written.height == rows.filter(pl.col("status") == "accepted").height > 4
    sharded = rows.filter(pl.col("key").is_not_null())
    assert sorted(sharded["utterance_id"]) == sorted(written["utterance_id"])
    joined = sharded.join(written, on="utterance_id", suffix="_index")
    assert (joined["key"] == joined["key_index"]).all()
    assert (joined["shard"] == joined["shard_index"]).all()
    assert (joined["pcm_sha256"] == joined["pcm_sha256_index"]).all()
    assert (sharded["status"] == "accepted").all()

    shards = frame(built, "SELECT * FROM shards ORDER BY shard")
    expected = (
        written.group_by("shard")
        .agg(
            pl.len().alias("n_samples"),
            pl.col("shard_bytes").first(),
            pl.col("shard_sha256").first(),
            pl.col("duration_s").sum().alias("seconds"),
        )
        .sort("shard")
    )
    assert shards["shard"].to_list() == expected["shard"].to_list()
    assert shards["n_samples"].to_list() == expected["n_samples"].to_list()
    assert shards["bytes"].to_list() == expected["shard_bytes"].to_list()
    assert shards["sha256"].to_list() == expected["shard_sha256"].to_list()
    assert shards["duration_s"].to_list() == pytest.approx(expected["seconds"].to_list())
    assert all(s.startswith("shards/") and "/audio-" in s for s in shards["shard"])
    for shard in shards.to_dicts():
        path = full_lake.lake.root / shard["shard"]
        assert path.stat().st_size == shard["bytes"] and file_sha256(path) == shard["sha256"]


def test_code_columns_and_code_shards_agree_with_the_code_index(
    full_lake: Project, built: Path
) -> None:
    rows = frame(built, "SELECT * FROM utterances")
    codes = code_rows(full_lake)
    sha256 = tokenizer_sha256(full_lake)
    # Two units tokenized: their accepted utterances, and nobody else, have codes.
    assert codes.height > 4 and codes["unit"].n_unique() == 2
    tokenized = rows.filter(pl.col("codes_shard").is_not_null())
    assert sorted(tokenized["utterance_id"]) == sorted(codes["utterance_id"])
    joined = tokenized.join(codes, on="utterance_id", suffix="_codes")
    assert (joined["codes_shard"] == joined["shard_codes"]).all()
    assert (joined["key"] == joined["key_codes"]).all()
    # The code shard of an utterance is the one aligned with its audio shard.
    assert (joined["shard"] == joined["audio_shard"]).all()
    assert (joined["n_codes"] == joined["n_codes_codes"]).all()
    assert (tokenized["tokenizer_sha256"] == sha256).all() and tokenized["tokenizer_is_demo"].all()
    others = rows.filter(pl.col("codes_shard").is_null())
    for column in ("n_codes", "tokenizer_sha256", "tokenizer_is_demo"):
        assert others[column].null_count() == others.height, column
    assert others.filter(pl.col("key").is_not_null()).height > 0  # audio, not yet codes

    code_shards = frame(built, "SELECT * FROM code_shards ORDER BY shard")
    expected = (
        codes.group_by("shard")
        .agg(
            pl.len().alias("n_samples"),
            pl.col("n_codes").sum().alias("codes"),
            pl.col("duration_s").sum().alias("seconds"),
            pl.col("shard_sha256", "shard_bytes", "audio_shard", "source", "unit").first(),
        )
        .sort("shard")
    )
    assert code_shards["shard"].to_list() == expected["shard"].to_list()
    for column, written in (
        ("sha256", "shard_sha256"),
        ("bytes", "shard_bytes"),
        ("n_samples", "n_samples"),
        ("n_codes", "codes"),
        ("audio_shard", "audio_shard"),
        ("source", "source"),
        ("unit", "unit"),
    ):
        assert code_shards[column].to_list() == expected[written].to_list(), column
    assert code_shards["duration_s"].to_list() == pytest.approx(expected["seconds"].to_list())
    assert (
        set(code_shards["tokenizer_sha256"]) == {sha256} and code_shards["tokenizer_is_demo"].all()
    )
    prefix = f"codes/{sha256[:16]}/"
    assert all(s.startswith(prefix) and "/codes-" in s for s in code_shards["shard"])
    for shard in code_shards.to_dicts():
        path = full_lake.lake.root / shard["shard"]
        assert path.stat().st_size == shard["bytes"] and file_sha256(path) == shard["sha256"]
        # codes-N.tar is aligned with audio-N.tar of the same unit, which the catalogue knows.
        assert Path(shard["shard"]).name.removeprefix("codes-") == Path(
            shard["audio_shard"]
        ).name.removeprefix("audio-")
    audio = set(frame(built, "SELECT shard FROM shards")["shard"])
    assert set(code_shards["audio_shard"]) <= audio
    info = dict(frame(built, "SELECT * FROM catalogue_info").iter_rows())
    assert info["tokenizer_sha256"] == sha256


def test_a_code_index_out_of_step_with_its_audio_is_not_catalogued(
    copied_lake: Project,
) -> None:
    """A policy edit rewrites a tokenized unit's audio shards: until the tokens step runs
    again, its old codes are not the codes of its audio, and the catalogue shows none."""
    unit = units_of(copied_lake, "librispeech")[0]
    source = copied_lake.config.source("librispeech")
    assert unit in set(code_rows(copied_lake)["unit"])
    # An SNR floor at the median: half the accepted utterances stay, the audio is rewritten.
    policy = QualityPolicy.model_validate(
        {**copied_lake.config.quality.model_dump(), "min_snr_db": _median_snr(copied_lake, unit)}
    )
    edited = Project(
        copied_lake.directory, copied_lake.config.model_copy(update={"quality": policy})
    )
    assess_unit(edited, source, unit)
    rebuild_catalogue(edited)
    rows = frame(edited.catalogue_path, f"SELECT * FROM utterances WHERE unit = '{unit}'")
    accepted = rows.filter(pl.col("status") == "accepted")
    assert 0 < accepted.height < code_rows(edited).filter(pl.col("unit") == unit).height
    assert accepted["key"].null_count() == 0 and rows["codes_shard"].null_count() == rows.height
    assert frame(
        edited.catalogue_path, f"SELECT * FROM code_shards WHERE unit = '{unit}'"
    ).is_empty()
    tokenize(edited, "librispeech", unit)
    rebuild_catalogue(edited)
    rows = frame(edited.catalogue_path, f"SELECT * FROM utterances WHERE unit = '{unit}'")
    tokenized = rows.filter(pl.col("codes_shard").is_not_null())
    assert sorted(tokenized["utterance_id"]) == sorted(
        rows.filter(pl.col("status") == "accepted")["utterance_id"]
    )


def _median_snr(project: Project, unit: str) -> float:
    quality = pl.read_parquet(project.lake.quality("librispeech", unit))
    snr = quality.filter(pl.col("status") == "accepted")["wada_snr_db"].sort()
    return float(snr[len(snr) // 2])


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
        " WHERE r.key = u.key AND r.shard = u.shard AND r.codes_shard = u.codes_shard",
    )
    assert in_shards["n"][0] == members.height
    for kind, table in (("audio", "shards"), ("codes", "code_shards")):
        release_shards = frame(
            built,
            f"SELECT r.*, s.n_samples FROM release_shards r JOIN {table} s"
            f" ON s.shard = r.shard AND s.sha256 = r.sha256 AND s.bytes = r.bytes"
            f" WHERE r.kind = '{kind}'",
        )
        column = "shard" if kind == "audio" else "codes_shard"
        assert release_shards.height == members[column].n_unique() == 3, kind
        assert release_shards["n_samples"].sum() == members.height, kind
    kinds = frame(built, "SELECT DISTINCT kind FROM release_shards ORDER BY kind")
    assert kinds["kind"].to_list() == ["audio", "codes"]

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


def test_contract_tables_have_one_column_per_model_field() -> None:
    def names(table: str) -> list[str]:
        return [name for name, _ in TABLES[table]]

    released = [RELEASE_RENAMED.get(n, n) for n in Release.model_fields if n not in RELEASE_NESTED]
    assert names("releases") == released and "where_sql" in released
    assert names("release_shards") == ["release", "kind", *ReleaseShard.model_fields]
    assert names("release_utterances") == ["release", *ReleaseUtterance.model_fields]
    assert names("runs") == list(RunRecord.model_fields)
    assert names("evals") == list(EvalRecord.model_fields)


def test_module_doctests() -> None:
    result = doctest.testmod(tables)
    assert result.attempted > 0 and result.failed == 0


def test_a_field_added_to_a_contract_becomes_a_column() -> None:
    class LongerRun(RunRecord):
        gpu_hours: float | None = None
        tags: list[str] = Field(default_factory=list)
        notes: dict[str, str] | None = None

    columns = model_columns(LongerRun)
    assert columns[: len(TABLES["runs"])] == TABLES["runs"]
    assert columns[len(TABLES["runs"]) :] == [
        ("gpu_hours", "DOUBLE"),
        ("tags", "VARCHAR[]"),
        ("notes", "JSON"),
    ]

    class WithShards(BaseModel):
        shards: list[ReleaseShard]

    # A nested record has no column type: it needs a table of its own.
    with pytest.raises(TypeError, match="no catalogue column type for shards"):
        model_columns(WithShards)


def _lake_frame(project: Project) -> pl.DataFrame:
    """Manifest rows joined with their quality rows, read straight from the lake files."""
    lake = project.lake
    manifests = pl.concat(
        [pl.read_parquet(p) for p in sorted(lake.manifests_dir().glob("*/*.parquet"))]
    )
    quality = pl.concat(
        [pl.read_parquet(p) for p in sorted(lake.quality_dir().glob("*/*.parquet"))]
    )
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
    assert (progress["n_sharded"] == progress["n_accepted"]).all()
    assert progress["n_tokenized"].sum() == code_rows(full_lake).height


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
    # Audio and code shards written before the decision still show (the lake says so).
    assert ok["key"].null_count() < ok.height
    ingest_rejected = rows.filter(pl.col("ingest_status") == "rejected")
    assert ingest_rejected.height > 0
    assert set(ingest_rejected["status"]) == {"rejected"}
    assert set(ingest_rejected["reject_stage"]) == {"ingest"}
    assert ingest_rejected["reject_rule"].null_count() == 0
    assert ingest_rejected["policy_version"].null_count() == ingest_rejected.height


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
