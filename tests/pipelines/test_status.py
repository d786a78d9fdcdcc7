"""`pipelines.status` over a real lake built by the steps themselves (no Dagster): what the
lake says (units planned, utterances accepted / rejected / pending, hours) combined with
the orchestrator's unit states handed in as plain data, the JSON document, the table at
80 columns, and an unreadable quality file named in the error."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console

from pipelines.cli import render
from pipelines.demo.project import demo_config
from pipelines.project import Project, init_project
from pipelines.status import (
    InventoryState,
    RunState,
    RunSummary,
    StatusError,
    UnitState,
    project_status,
)
from pipelines.steps.inventory import inventory_source
from pipelines.steps.manifest import build_manifest
from pipelines.steps.quality import assess_unit
from pipelines.units import read_units_index
from schemas import ProjectConfig

SOURCES = ("custom_folder", "custom_hf")


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory, corpora: Path) -> Project:
    """Two sources inventoried and manifested; every unit of `custom_folder` judged, none of
    `custom_hf`'s (their utterances are pending)."""
    folder = tmp_path_factory.mktemp("status") / "proj"
    config = demo_config(folder, corpora).model_dump(mode="json")
    config["sources"] = [s for s in config["sources"] if s["name"] in SOURCES]
    config["quality"]["sources"] = {
        k: v for k, v in config["quality"]["sources"].items() if k in SOURCES
    }
    config["releases"] = []
    config["units"] = {"max_utterances": 3}  # several units per source
    project = init_project(folder, ProjectConfig.model_validate(config))
    for source in project.config.sources:
        limits = project.config.unit_limits(source)
        for plan in inventory_source(source, project.directory, project.lake, limits):
            build_manifest(source, project.directory, project.lake, plan.unit, plan.n_inputs)
            if source.name == "custom_folder":
                assess_unit(project, source, plan.unit)
    return project


def _quality(project: Project, source: str) -> pl.DataFrame:
    return pl.read_parquet(project.lake.quality_dir() / source / "*.parquet")


def test_counts_come_from_the_units_index_and_the_quality_files(lake: Project) -> None:
    status = project_status(lake)
    assert [s.source for s in status.sources] == list(SOURCES)
    judged, unjudged = status.sources
    plans = read_units_index(lake.lake, "custom_folder")
    assert len(plans) >= 2
    quality = _quality(lake, "custom_folder")
    manifests = pl.read_parquet(lake.lake.manifests_dir() / "custom_folder" / "*.parquet")
    assert judged.units_planned == len(plans)
    assert judged.utterances_planned == sum(p.n_inputs for p in plans) == manifests.height
    assert judged.utterances_accepted == quality.filter(pl.col("status") == "accepted").height
    assert judged.utterances_rejected == quality.filter(pl.col("status") == "rejected").height
    assert judged.utterances_accepted + judged.utterances_rejected == manifests.height
    assert judged.utterances_pending == 0
    accepted_s = quality.filter(pl.col("status") == "accepted")["duration_s"].sum()
    assert judged.accepted_hours == pytest.approx(accepted_s / 3600)
    # Inventoried outside Dagster: planned, but no asset materialised a unit yet.
    assert judged.inventory == InventoryState.current
    assert judged.units_pending == judged.units_planned and judged.units_done == 0
    hf_plans = read_units_index(lake.lake, "custom_hf")
    assert (
        unjudged.utterances_pending
        == unjudged.utterances_planned
        == sum(p.n_inputs for p in hf_plans)
    )
    assert unjudged.utterances_accepted == unjudged.utterances_rejected == 0


def test_unit_states_and_runs_handed_in_are_counted_and_named(lake: Project) -> None:
    units = [p.unit for p in read_units_index(lake.lake, "custom_folder")]
    run = RunSummary(
        run_id="0f3c9a6e-1111-2222-3333-444455556666",
        job="unit_job",
        status="FAILURE",
        started_at=dt.datetime(2025, 1, 2, 3, 4, tzinfo=dt.UTC),
        ended_at=dt.datetime(2025, 1, 2, 3, 9, tzinfo=dt.UTC),
        invocation="a1b2c3d4e5f6",
        runs=3,
        failed_runs=1,
    )
    state = RunState(
        units={units[0]: UnitState.failed, units[1]: UnitState.stale}
        | {u: UnitState.done for u in units[2:]},
        inventories={"custom_folder": InventoryState.stale, "custom_hf": InventoryState.failed},
        last_runs={"custom_folder": run},
    )
    now = dt.datetime(2025, 1, 3, tzinfo=dt.UTC)
    status = project_status(lake, state, now=now)
    folder, hf = status.sources
    assert (folder.units_failed, folder.units_stale, folder.units_done, folder.units_pending) == (
        1,
        1,
        len(units) - 2,
        0,
    )
    assert folder.failed_units == [units[0]] and folder.stale_units == [units[1]]
    assert folder.inventory == InventoryState.stale and hf.inventory == InventoryState.failed
    assert folder.last_run == run and hf.last_run is None

    document = json.loads(json.dumps(status.to_json()))
    assert document["generated_at"] == now.isoformat()
    first = document["sources"][0]
    assert first["units"] == {
        "planned": len(units),
        "done": len(units) - 2,
        "failed": 1,
        "stale": 1,
        "pending": 0,
    }
    assert first["failed_units"] == [units[0]] and first["inventory"] == "stale"
    assert first["last_run"] == {
        "run_id": run.run_id,
        "job": "unit_job",
        "status": "FAILURE",
        "started_at": "2025-01-02T03:04:00+00:00",
        "ended_at": "2025-01-02T03:09:00+00:00",
        "invocation": "a1b2c3d4e5f6",
        "runs": 3,
        "failed_runs": 1,
    }
    totals = document["totals"]
    assert totals["utterances"]["planned"] == folder.utterances_planned + hf.utterances_planned
    assert totals["units"]["planned"] == folder.units_planned + hf.units_planned


def test_the_table_fits_80_columns_and_cuts_no_id(
    lake: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    units = [p.unit for p in read_units_index(lake.lake, "custom_folder")]
    run_id = "0f3c9a6e-1111-2222-3333-444455556666"
    state = RunState(
        units={units[0]: UnitState.failed},
        last_runs={"custom_folder": RunSummary(run_id, "unit_job", "FAILURE")},
    )
    status = project_status(lake, state)
    buffer = io.StringIO()
    monkeypatch.setattr(render, "console", Console(file=buffer, width=80, color_system=None))
    render.print_status(status)
    out = buffer.getvalue()
    assert max(len(line) for line in out.splitlines()) <= 80
    words = "".join(out.split())
    for name in (*SOURCES, run_id, units[0]):
        assert name in words, name  # wrapped over lines, perhaps, but whole
    assert "FAILURE" in out and "failed units" in out


def test_an_unreadable_quality_file_is_named(lake: Project, tmp_path: Path) -> None:
    import shutil

    from pipelines.project import load_project

    target = tmp_path / "proj"
    shutil.copytree(lake.directory, target, symlinks=True)
    copied = load_project(target)
    unit = read_units_index(copied.lake, "custom_folder")[0].unit
    copied.lake.quality("custom_folder", unit).write_bytes(b"not parquet")
    with pytest.raises(StatusError, match="quality files of source 'custom_folder'"):
        project_status(copied)
