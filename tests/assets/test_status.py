"""`voxlake status` reads the project's Dagster instance and the lake: a fresh project is all
pending; after a real `voxlake run` every unit is done and the accepted / rejected counts
are the quality files' (which account for every manifest row); a policy edit makes every
unit stale; a changed source file makes its inventory stale; a unit whose step fails is
failed, by name, and the last run says FAILURE."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from assets.cli import app
from assets.runner import run_assets
from pipelines.demo.project import demo_config
from pipelines.project import Project, init_project, load_project
from pipelines.units import read_units_index
from schemas import ProjectConfig

SOURCES = ("custom_folder", "custom_hf")
runner = CliRunner()


def _project(folder: Path, corpora: Path) -> Project:
    config = demo_config(folder, corpora).model_dump(mode="json")
    config["sources"] = [s for s in config["sources"] if s["name"] in SOURCES]
    config["quality"]["sources"] = {
        k: v for k, v in config["quality"]["sources"].items() if k in SOURCES
    }
    config["releases"] = []
    config["training"]["release"] = None
    config["execution"] = {"units_per_run": 8}
    return init_project(folder, ProjectConfig.model_validate(config))


def _status(project: Project) -> dict:
    result = runner.invoke(app, ["status", "--json", "--project", str(project.directory)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _by_source(document: dict) -> dict[str, dict]:
    return {s["source"]: s for s in document["sources"]}


def test_a_fresh_project_is_all_pending(tmp_path: Path, corpora: Path) -> None:
    project = _project(tmp_path / "proj", corpora)
    document = _status(project)
    assert [s["source"] for s in document["sources"]] == list(SOURCES)
    for source in document["sources"]:
        assert source["inventory"] == "never" and source["last_run"] is None
        assert source["units"] == {"planned": 0, "done": 0, "failed": 0, "stale": 0, "pending": 0}
        assert source["utterances"]["accepted"] == source["utterances"]["rejected"] == 0
    table = runner.invoke(app, ["status", "--project", str(project.directory)], terminal_width=80)
    assert table.exit_code == 0, table.output
    assert all(s in table.output for s in SOURCES) and "never" in table.output
    assert "`voxlake run` does what is pending" in table.output


@pytest.mark.slow
def test_status_after_runs_a_policy_edit_a_changed_file_and_a_failed_unit(
    tmp_path: Path, corpora: Path
) -> None:
    # A copy of the corpora, so that the test can touch a source file later.
    shutil.copytree(corpora / "custom", tmp_path / "corpora" / "custom")
    project = _project(tmp_path / "proj", tmp_path / "corpora")
    first = run_assets(project)
    assert first.success, first.failures

    done = _by_source(_status(project))
    for name in SOURCES:
        source = done[name]
        plans = read_units_index(project.lake, name)
        assert source["inventory"] == "current"
        assert source["units"] == {
            "planned": len(plans),
            "done": len(plans),
            "failed": 0,
            "stale": 0,
            "pending": 0,
        }
        manifests = pl.read_parquet(project.lake.manifests_dir() / name / "*.parquet")
        quality = pl.read_parquet(project.lake.quality_dir() / name / "*.parquet")
        counts = dict(quality["status"].value_counts().rows())
        assert source["utterances"] == {
            "planned": manifests.height,
            "accepted": counts.get("accepted", 0),
            "rejected": counts.get("rejected", 0),
            "pending": 0,
        }
        assert counts.get("accepted", 0) + counts.get("rejected", 0) == manifests.height
        # Every ingest rejection of the manifest is among the rejected.
        assert (
            source["utterances"]["rejected"]
            >= manifests.filter(pl.col("status") == "rejected").height
        )
        accepted_s = quality.filter(pl.col("status") == "accepted")["duration_s"].sum()
        assert source["hours"]["accepted"] == pytest.approx(accepted_s / 3600, abs=1e-6)
        assert source["last_run"]["status"] == "SUCCESS"
        assert source["last_run"]["run_id"] in first.run_ids
    assert sum(s["utterances"]["accepted"] for s in done.values()) > 0

    # A policy edit: the quality asset's code version changes, so every unit is stale.
    config = yaml.safe_load(project.config_path.read_text())
    config["quality"]["max_duration_s"] = 60.0
    project.config_path.write_text(yaml.safe_dump(config))
    edited = load_project(project.directory)
    stale = _by_source(_status(edited))
    for name in SOURCES:
        planned = stale[name]["units"]["planned"]
        assert stale[name]["units"]["stale"] == planned > 0 and stale[name]["units"]["done"] == 0
        assert stale[name]["stale_units"] == [p.unit for p in read_units_index(edited.lake, name)]
        assert stale[name]["inventory"] == "current"
    table = runner.invoke(app, ["status", "--project", str(edited.directory)], terminal_width=80)
    assert table.exit_code == 0, table.output
    assert max(len(line) for line in table.output.splitlines()) <= 80
    assert "stale units" in table.output

    # A source file touched: its inventory is stale (the next run re-plans it), the other's not.
    folder = edited.directory / edited.config.source("custom_folder").path
    some_file = next(p for p in sorted(folder.rglob("*")) if p.is_file())
    os.utime(some_file, ns=(some_file.stat().st_atime_ns, some_file.stat().st_mtime_ns + 10**9))
    touched = _by_source(_status(edited))
    assert touched["custom_folder"]["inventory"] == "stale"
    assert touched["custom_hf"]["inventory"] == "current"

    # One unit cannot write its quality file (a folder holds its place): it fails alone.
    victim = next(p.unit for p in read_units_index(edited.lake, "custom_hf"))
    blocker = edited.lake.quality("custom_hf", victim)
    blocker.unlink()
    blocker.mkdir()
    second = run_assets(edited)
    assert not second.success and second.failed_units == {victim}
    failed = _by_source(_status(edited))
    hf = failed["custom_hf"]
    assert hf["units"]["failed"] == 1 and hf["failed_units"] == [victim]
    assert hf["units"]["done"] == hf["units"]["planned"] - 1
    assert hf["last_run"]["status"] == "FAILURE" and hf["last_run"]["run_id"] in second.run_ids
    # Its utterances are pending: the unit has no quality file.
    victim_inputs = next(
        p.n_inputs for p in read_units_index(edited.lake, "custom_hf") if p.unit == victim
    )
    assert hf["utterances"]["pending"] == victim_inputs
    assert failed["custom_folder"]["units"]["failed"] == 0
    assert failed["custom_folder"]["last_run"]["status"] == "SUCCESS"
    table = runner.invoke(app, ["status", "--project", str(edited.directory)], terminal_width=80)
    assert f"custom_hf: failed units {victim}" in " ".join(table.output.split())
