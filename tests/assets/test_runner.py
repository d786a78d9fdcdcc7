"""`voxlake run` goes through the instance: queued runs from the code location, many units per
run, a failed unit visible as such and re-run alone, nothing done twice, and the catalogue
folded in at the end equal to a rebuild."""

from __future__ import annotations

import math
import os
import shutil
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.events import DagsterEventType
from dagster._core.storage.partition_status_cache import AssetPartitionStatus

from assets.instance import open_instance
from assets.partitions import UNITS_PARTITIONS_NAME
from assets.runner import RunLockedError, SelectionError, run_assets, run_lock, unit_batches
from assets.services import LOCATION_NAME
from pipelines.project import Project, load_project

sys.path.insert(0, str(Path(__file__).resolve().parent))  # importlib mode: no test folder on it
from runner_projects import (
    assert_catalogue_equals_rebuild,
    runner_project,
    shard_files,
    unit_runs,
)

pytestmark = pytest.mark.slow


def test_runs_are_queued_from_the_code_location_and_carry_many_units(
    tmp_path: Path, corpora: Path
) -> None:
    # A copy of the corpora, so the test can add a file to one source later.
    shutil.copytree(corpora / "librispeech", tmp_path / "corpora" / "librispeech")
    shutil.copytree(corpora / "custom", tmp_path / "corpora" / "custom")
    project = runner_project(
        tmp_path / "proj", tmp_path / "corpora", {"librispeech", "custom_hf"}, units_per_run=2
    )
    report = run_assets(project)
    assert report.success, report.failures
    instance = open_instance(project)
    units = instance.get_dynamic_partitions(UNITS_PARTITIONS_NAME)
    assert len(units) >= 3 and sorted(report.units) == sorted(units)

    for run_id in report.run_ids:
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        # Created from the code location, as the UI or a backfill would create it ...
        assert run.remote_job_origin is not None
        assert run.remote_job_origin.location_name == LOCATION_NAME
        # ... and taken off the instance's queue by the daemon.
        enqueued = instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_ENQUEUED)
        assert len(enqueued.records) == 1, run_id

    runs = unit_runs(instance, report.run_ids)
    # At most two units per run, and the runs fill the queue's slots.
    assert len(runs) >= math.ceil(len(units) / 2)
    for key in ("manifest", "quality", "tokens"):
        assert instance.get_materialized_partitions(dg.AssetKey(key)) == set(units), key
    jobs = [instance.get_run_by_id(r).job_name for r in report.run_ids]
    catalogue_runs = [j for j in jobs if j == "lake_job"]
    assert len(catalogue_runs) == 1  # the catalogue is folded in once, at the end
    assert_catalogue_equals_rebuild(project, tmp_path)

    # Everything is current: no run at all.
    again = run_assets(project)
    assert again.nothing_to_do and not again.run_ids, again.reasons

    # A catalogue refresh that folds in nothing new (the catalogue sensor's, when it races
    # a `voxlake run`'s own) keeps the catalogue's data version: the release it feeds
    # stays current.
    refresh = run_assets(project, select="key:catalogue", force=True)
    assert refresh.success and refresh.reasons == {"catalogue": "--force"}
    after_refresh = run_assets(project)
    assert after_refresh.nothing_to_do and not after_refresh.run_ids, after_refresh.reasons

    # A new file in one source: its inventory runs again, and no unit whose items are
    # unchanged is processed again.
    def materializations(unit: str) -> int:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("tokens"), asset_partitions=[unit]),
            limit=10,
        ).records
        return len(records)

    before = {u: materializations(u) for u in units}
    libri = project.directory / project.config.source("librispeech").path
    (libri / "README.txt").write_text("not a transcript\n")
    third = run_assets(project)
    assert third.success, third.failures
    assert [instance.get_run_by_id(r).job_name for r in third.run_ids] == ["inventory_job"], (
        third.reasons
    )
    # The plan says why: the one source whose files changed.
    assert third.reasons == {
        "inventory/librispeech": "the source's files or settings changed since its last inventory"
    }
    assert {u: materializations(u) for u in units} == before

    # A policy edit that changes no decision: every unit is judged again (from its
    # stored measures, nothing decoded), no audio or code shard is rewritten, and the
    # tokens step finds its codes current (no tokenizer is loaded).
    shards_before = shard_files(project)
    config = yaml.safe_load(project.config_path.read_text())
    config["quality"]["max_duration_s"] = 60.0  # no bundled utterance is that long
    project.config_path.write_text(yaml.safe_dump(config))
    edited = load_project(project.directory)
    fourth = run_assets(edited)
    assert fourth.success, fourth.failures
    assert set(fourth.reasons) >= set(units)
    assert all(
        fourth.reasons[u].startswith("quality: its code version changed (1-policy-") for u in units
    ), fourth.reasons
    assert shard_files(edited) == shards_before

    def latest(asset: str) -> list:
        return instance.fetch_materializations(dg.AssetKey(asset), limit=len(units)).records

    assert {r.partition_key for r in latest("quality")} == set(units)
    assert all(
        r.asset_materialization.metadata["decoded"].value is False for r in latest("quality")
    )
    assert {r.partition_key for r in latest("tokens")} == set(units)
    assert all(r.asset_materialization.metadata["reused"].value is True for r in latest("tokens"))


def test_a_failed_unit_is_visible_and_re_runs_alone(tmp_path: Path, corpora: Path) -> None:
    project = runner_project(
        tmp_path / "proj", corpora, {"custom_hf", "custom_folder"}, units_per_run=8
    )
    first = run_assets(project, select="group:ingest")
    assert first.success, first.failures
    instance = open_instance(project)
    units = sorted(instance.get_dynamic_partitions(UNITS_PARTITIONS_NAME))
    victim = next(u for u in units if u.startswith("custom_folder.speaker_"))
    source = victim.split(".")[0]
    # The quality file's place is taken by a folder: the step cannot write it, an
    # infrastructure failure of that unit alone.
    blocker = project.lake.quality(source, victim)
    blocker.mkdir(parents=True)

    report = run_assets(project)
    assert not report.success
    assert report.failed_units == {victim}
    assert any(victim in f for f in report.failures)
    statuses = instance.get_status_by_partition(
        dg.AssetKey("quality"), units, dg.DynamicPartitionsDefinition(name=UNITS_PARTITIONS_NAME)
    )
    assert statuses[victim] == AssetPartitionStatus.FAILED
    others = [u for u in units if u != victim]
    assert all(statuses[u] == AssetPartitionStatus.MATERIALIZED for u in others)
    # The units that shared the victim's run went on to their codes all the same.
    assert instance.get_materialized_partitions(dg.AssetKey("tokens")) == set(others)
    assert instance.get_materialized_partitions(dg.AssetKey("catalogue")) is not None

    blocker.rmdir()
    retry = run_assets(project)
    assert retry.success, retry.failures
    runs = unit_runs(instance, retry.run_ids)
    assert len(runs) == 1 and runs[0].tags.get("dagster/partition") == victim
    assert instance.get_materialized_partitions(dg.AssetKey("tokens")) == set(units)
    assert_catalogue_equals_rebuild(project, tmp_path)


def test_a_bad_selection_or_source_is_a_selection_error(tmp_path: Path, corpora: Path) -> None:
    project = runner_project(tmp_path / "proj", corpora, {"custom_hf"}, units_per_run=4)
    with pytest.raises(SelectionError, match="bad selection"):
        run_assets(project, select="inventory*,manifest*")
    with pytest.raises(SelectionError, match="no source named 'nope'"):
        run_assets(project, sources=["nope"])


def test_a_second_run_on_one_project_refuses_naming_the_first(
    tmp_path: Path, corpora: Path
) -> None:
    project = runner_project(tmp_path / "proj", corpora, {"custom_hf"}, units_per_run=4)
    with run_lock(project), pytest.raises(RunLockedError, match=f"process {os.getpid()}"):
        run_assets(project)


def test_unit_batches_keep_ranges_contiguous_and_bounded() -> None:
    order = [f"s.x.{i:05d}" for i in range(10)]
    needed = {u: ("manifest", "quality", "tokens") for u in order}
    needed[order[4]] = ("tokens",)
    batches = unit_batches(needed, order, units_per_run=3, run_slots=2)
    covered = []
    for _, first, last, _ in batches:
        covered += order[order.index(first) : order.index(last) + 1]
    assert covered == order  # every unit once, in order
    assert all(n <= 3 for *_, n in batches)
    assert (("tokens",), order[4], order[4], 1) in batches


def test_a_source_whose_inventory_fails_does_not_stop_the_others(
    tmp_path: Path, corpora: Path
) -> None:
    project = runner_project(tmp_path / "proj", corpora, {"custom_hf"}, units_per_run=4)
    config = project.config.model_copy(deep=True)
    broken = config.sources[0].model_copy(update={"name": "gone", "path": "nowhere"})
    config.sources.append(broken)
    Project(directory=project.directory, config=config).save()
    project = Project(directory=project.directory, config=config)

    report = run_assets(project)
    assert not report.success and report.failed_sources == {"gone"}
    assert any("nowhere" in f and "does not exist" in f for f in report.failures)
    instance = open_instance(project)
    units = instance.get_dynamic_partitions(UNITS_PARTITIONS_NAME)
    assert units and all(u.startswith("custom_hf.") for u in units)
    assert instance.get_materialized_partitions(dg.AssetKey("tokens")) == set(units)
