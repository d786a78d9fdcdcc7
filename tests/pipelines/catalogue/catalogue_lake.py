"""A small real lake for the catalogue tests, built step by step, and its catalogue read back.

The committed corpora run through the real steps: inventory, manifest, quality (which
writes the audio shards) and, for some units, tokens (code shards, with the random-weight
demo tokenizer `init_project` writes). A release, a run and an evaluation are written
here with the contracts' schemas.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pyarrow as pa

from pipelines.catalogue.build import rebuild_catalogue
from pipelines.catalogue.read import open_catalogue_readonly, query_catalogue
from pipelines.catalogue.tables import TABLES, VIEWS
from pipelines.demo.project import demo_config
from pipelines.lake.atomic import write_bytes_atomic, write_parquet_atomic
from pipelines.project import Project, init_project
from pipelines.steps.inventory import inventory_source
from pipelines.steps.manifest import build_manifest
from pipelines.steps.quality import assess_unit
from pipelines.steps.tokens import tokenize_unit
from pipelines.tokenizer import configured_tokenizer_sha256
from pipelines.units import read_units_index
from schemas import QualityPolicy
from schemas.release import (
    RELEASE_UTTERANCE_ARROW_SCHEMA,
    Release,
    ReleaseShard,
    ReleaseUtterance,
)
from schemas.shards import CODE_INDEX_ARROW_SCHEMA, INDEX_NAME

REPO = Path(__file__).resolve().parents[3]


# ---------------------------------------------------------------------------
# Building a lake step by step


def new_project(folder: Path, corpora: Path) -> Project:
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


def tokenizer_sha256(project: Project) -> str:
    """The configured (demo) tokenizer's hash: the catalogue holds its codes."""
    sha256 = configured_tokenizer_sha256(project.directory, project.config.tokenizer)
    assert sha256 is not None, "init_project writes the demo tokenizer checkpoint"
    return sha256


def tokenize(project: Project, source: str, unit: str) -> None:
    """The tokens step on one unit: code shards aligned with its audio shards."""
    tokenize_unit(project, project.config.source(source), unit)


def code_rows(project: Project) -> pl.DataFrame:
    """Every code index row of the configured tokenizer, read straight from the lake."""
    files = sorted(project.lake.codes_root(tokenizer_sha256(project)).glob(f"*/*/{INDEX_NAME}"))
    if not files:
        return pl.DataFrame(schema=pl.from_arrow(CODE_INDEX_ARROW_SCHEMA.empty_table()).schema)
    return pl.concat([pl.read_parquet(f) for f in files])


def audio_rows(project: Project) -> pl.DataFrame:
    """Every audio shard index row, read straight from the lake."""
    files = sorted(project.lake.shards_root().glob(f"*/*/{INDEX_NAME}"))
    return pl.concat([pl.read_parquet(f) for f in files])


def _release_shards(rows: list[dict]) -> list[ReleaseShard]:
    shards = {
        r["shard"]: ReleaseShard(
            shard=r["shard"],
            sha256=r["shard_sha256"],
            bytes=r["shard_bytes"],
            source=r["source"],
            unit=r["unit"],
        )
        for r in rows
    }
    return sorted(shards.values(), key=lambda s: s.shard)


def release(project: Project, name: str) -> None:
    """A release of every utterance with audio and codes: every third one to dev."""
    audio = {r["utterance_id"]: r for r in audio_rows(project).to_dicts()}
    codes = {r["utterance_id"]: r for r in code_rows(project).to_dicts()}
    # Codes whose audio shard is no longer the audio's (stale codes) are not released.
    ids = sorted(
        u for u in audio.keys() & codes.keys() if codes[u]["audio_shard"] == audio[u]["shard"]
    )
    utterances = [
        ReleaseUtterance(
            utterance_id=u,
            key=audio[u]["key"],
            shard=audio[u]["shard"],
            codes_shard=codes[u]["shard"],
            source=audio[u]["source"],
            language=None,
            speaker=None,
            duration_s=audio[u]["duration_s"],
            split="dev" if i % 3 == 0 else "train",
        )
        for i, u in enumerate(ids)
    ]
    model = Release(
        name=name,
        created_at=dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC),
        where="status = 'accepted'",
        dev_fraction=0.33,
        n_utterances=len(utterances),
        duration_s=sum(u.duration_s for u in utterances),
        policy_versions=[project.config.quality.version()],
        tokenizer_sha256=[tokenizer_sha256(project)],
        tokenizer_is_demo=True,
        code_version="test",
        shards=_release_shards([audio[u] for u in ids]),
        code_shards=_release_shards([codes[u] for u in ids]),
    )
    write_parquet_atomic(
        project.lake.release_utterances(name),
        pa.Table.from_pylist(
            [u.model_dump(mode="json") for u in utterances], RELEASE_UTTERANCE_ARROW_SCHEMA
        ),
    )
    write_bytes_atomic(project.lake.release_file(name), model.model_dump_json(indent=1).encode())


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
    write_bytes_atomic(project.lake.run_record("run-0001"), json.dumps(run).encode())
    write_bytes_atomic(project.lake.eval_record("eval-0001"), json.dumps(EVAL_RECORD).encode())


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
    write_bytes_atomic(project.lake.run_record("run-0002"), json.dumps(second).encode())


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
