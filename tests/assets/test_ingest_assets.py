"""Dagster wiring: the Definitions load, inventory registers unit partitions, manifest
writes each unit with a passing accounting check, and the check fails when a row is lost."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

import assets.ingest as ingest_assets
from assets.definitions import INVENTORY_JOB, UNIT_JOB, build_definitions
from assets.partitions import UNITS_PARTITIONS_NAME
from pipelines.demo.project import demo_config
from pipelines.project import Project, init_project
from schemas import ProjectConfig


@pytest.fixture
def project(tmp_path: Path, corpora: Path) -> Project:
    config = demo_config(tmp_path / "proj", corpora)
    config = ProjectConfig.model_validate(
        {**config.model_dump(mode="json"), "units": {"max_utterances": 4}}
    )
    return init_project(tmp_path / "proj", config)


@pytest.fixture
def instance(project: Project) -> dg.DagsterInstance:
    with dg.instance_for_test(temp_dir=str(project.dagster_home)) as instance:
        yield instance


def test_definitions_load_with_one_inventory_per_source(project: Project) -> None:
    defs = build_definitions(project.directory)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == {f"inventory/{s.name}" for s in project.config.sources} | {
        "manifest",
        "quality",
        "quality_report",
        "tokens",
        "catalogue",
        "release",
        "train_stage1",
        "train_mtp1",
        "train_mtp10",
        "train_sft",
        "evaluation",
    }
    assert defs.resolve_job_def(UNIT_JOB).partitions_def is not None
    assert defs.resolve_job_def(INVENTORY_JOB) is not None


def _materialize_source(
    project: Project, instance: dg.DagsterInstance, source: str
) -> list[dg.ExecuteInProcessResult]:
    defs = build_definitions(project.directory)
    inventory = defs.resolve_job_def(INVENTORY_JOB).execute_in_process(
        instance=instance, asset_selection=[dg.AssetKey(["inventory", source])]
    )
    assert inventory.success
    units = [
        u
        for u in instance.get_dynamic_partitions(UNITS_PARTITIONS_NAME)
        if u.startswith(f"{source}.")
    ]
    assert units, "inventory registered no units"
    job = defs.resolve_job_def(UNIT_JOB)
    return [
        job.execute_in_process(
            instance=instance,
            partition_key=u,
            asset_selection=[dg.AssetKey("manifest")],
            raise_on_error=False,
        )
        for u in units
    ]


def test_inventory_and_manifest_materialize_every_librispeech_input(
    project: Project, instance: dg.DagsterInstance, load_expected
) -> None:
    results = _materialize_source(project, instance, "librispeech")
    assert all(r.success for r in results)
    for result in results:
        (evaluation,) = [
            e
            for e in result.get_asset_check_evaluations()
            if e.asset_key == dg.AssetKey("manifest")
        ]
        assert evaluation.passed, evaluation.metadata
    frame = pl.read_parquet(project.lake.root / "manifests" / "librispeech" / "*.parquet")
    expected = load_expected("librispeech")
    assert frame.height == len(expected)
    assert Counter(frame["status"].to_list()) == Counter(e["status"] for e in expected)
    materialization = results[0].asset_materializations_for_node("manifest")[0]
    assert {"inputs", "ok", "rejected", "ok_hours", "languages", "preview"} <= set(
        materialization.metadata
    )


def test_rerun_of_an_unchanged_unit_rewrites_nothing(
    project: Project, instance: dg.DagsterInstance
) -> None:
    _materialize_source(project, instance, "emilia")
    files = sorted((project.lake.root / "manifests" / "emilia").glob("*.parquet"))
    for path in files:
        os.utime(path, (1_000_000, 1_000_000))
    before = {p: p.read_bytes() for p in files}
    results = _materialize_source(project, instance, "emilia")
    assert all(r.success for r in results)
    for path in files:
        assert path.read_bytes() == before[path]
        assert path.stat().st_mtime == 1_000_000


def test_accounting_check_fails_and_blocks_when_a_row_is_lost(
    project: Project, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_build = ingest_assets.build_manifest

    def losing_build(source, project_dir, lake, unit, n_inputs):  # type: ignore[no-untyped-def]
        summary = real_build(source, project_dir, lake, unit, n_inputs)
        path = lake.manifest(source.name, unit)
        pl.read_parquet(path).slice(1).write_parquet(path)  # sabotage: drop the first row
        return summary

    monkeypatch.setattr(ingest_assets, "build_manifest", losing_build)
    results = _materialize_source(project, instance, "custom_table")
    assert not any(r.success for r in results)
    evaluations = [e for r in results for e in r.get_asset_check_evaluations()]
    assert evaluations and not any(e.passed for e in evaluations)
