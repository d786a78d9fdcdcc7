"""Dagster wiring of the quality step: per-unit decisions with their checks, the report
asset, a blocking accounting check that catches a lost row, and staleness when the
policy changes."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContextForTest

import assets.quality as quality_assets
from assets.definitions import INVENTORY_JOB, LAKE_JOB, UNIT_JOB, build_definitions
from assets.partitions import UNITS_PARTITIONS_NAME
from pipelines.demo.project import demo_config
from pipelines.project import Project, init_project
from schemas import ProjectConfig

pytestmark = pytest.mark.slow


@pytest.fixture
def project(tmp_path: Path, corpora: Path) -> Project:
    config = demo_config(tmp_path / "proj", corpora)
    only_folder = {
        **config.model_dump(mode="json"),
        "sources": [s.model_dump(mode="json") for s in config.sources if s.name == "custom_folder"],
        "quality": {},
    }
    return init_project(tmp_path / "proj", ProjectConfig.model_validate(only_folder))


@pytest.fixture
def instance(project: Project) -> dg.DagsterInstance:
    with dg.instance_for_test(temp_dir=str(project.dagster_home)) as instance:
        yield instance


def _run_units(project: Project, instance: dg.DagsterInstance) -> list[dg.ExecuteInProcessResult]:
    defs = build_definitions(project.directory)
    assert defs.resolve_job_def(INVENTORY_JOB).execute_in_process(instance=instance).success
    job = defs.resolve_job_def(UNIT_JOB)
    return [
        job.execute_in_process(instance=instance, partition_key=unit, raise_on_error=False)
        for unit in instance.get_dynamic_partitions(UNITS_PARTITIONS_NAME)
    ]


def test_quality_runs_per_unit_with_both_checks_and_the_report(
    project: Project, instance: dg.DagsterInstance
) -> None:
    results = _run_units(project, instance)
    assert results and all(r.success for r in results)
    for result in results:
        checks = {
            e.check_name: e.passed
            for e in result.get_asset_check_evaluations()
            if e.asset_key == dg.AssetKey("quality")
        }
        assert checks == {"accounting": True, "distribution": True}
        metadata = result.asset_materializations_for_node("quality")[0].metadata
        assert {"accepted", "rejected", "policy_version", "summary", "report"} <= set(metadata)
    quality = pl.read_parquet(project.lake.root / "quality" / "custom_folder" / "*.parquet")
    manifest = pl.read_parquet(project.lake.root / "manifests" / "custom_folder" / "*.parquet")
    assert sorted(quality["utterance_id"]) == sorted(manifest["utterance_id"])

    report = (
        build_definitions(project.directory)
        .resolve_job_def(LAKE_JOB)
        .execute_in_process(instance=instance)
    )
    assert report.success
    html = (project.lake.reports_dir() / "quality.html").read_text()
    assert "custom_folder" in html and "<audio" in html


def test_lost_row_fails_the_blocking_accounting_check(
    project: Project, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = quality_assets.assess_unit

    def losing(*args, **kwargs):  # type: ignore[no-untyped-def]
        summary = real(*args, **kwargs)
        summary.frame = summary.frame.slice(1)  # sabotage: one decision disappears
        summary.n_accepted -= 1 if summary.n_accepted else 0
        return summary

    monkeypatch.setattr(quality_assets, "assess_unit", losing)
    results = _run_units(project, instance)
    assert not any(r.success for r in results)
    failed = [
        e
        for r in results
        for e in r.get_asset_check_evaluations()
        if e.check_name == "accounting" and e.asset_key == dg.AssetKey("quality")
    ]
    assert failed and not any(e.passed for e in failed)


def test_changing_the_policy_makes_quality_stale(
    project: Project, instance: dg.DagsterInstance
) -> None:
    assert all(r.success for r in _run_units(project, instance))
    unit = instance.get_dynamic_partitions(UNITS_PARTITIONS_NAME)[0]

    def status() -> StaleStatus:
        graph = build_definitions(project.directory).resolve_asset_graph()
        # The resolver the webserver uses for the "stale" badge, on a fresh graph.
        resolver = CachingStaleStatusResolver(instance, graph, LoadingContextForTest(instance))
        return resolver.get_status(dg.AssetKey("quality"), unit)

    assert status() == StaleStatus.FRESH
    config = yaml.safe_load(project.config_path.read_text())
    config["quality"]["min_snr_db"] = 12.0
    project.config_path.write_text(yaml.safe_dump(config))
    assert status() == StaleStatus.STALE
