"""`voxlake run` goes through the instance: queued runs from the code location, many units per
run, a failed unit visible as such and re-run alone, nothing done twice, and the catalogue
folded in at the end equal to a rebuild."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml
from dagster._core.events import DagsterEventType
from dagster._core.storage.partition_status_cache import AssetPartitionStatus

from assets.instance import open_instance
from assets.partitions import UNITS_PARTITIONS_NAME
from assets.runner import RunLockedError, SelectionError, run_assets, run_lock, unit_batches
from assets.services import LOCATION_NAME
from pipelines.catalogue.build import rebuild_catalogue
from pipelines.catalogue.read import open_catalogue_readonly
from pipelines.demo.project import demo_config
from pipelines.project import Project, init_project, load_project
from schemas import ProjectConfig

pytestmark = pytest.mark.slow


def _project(folder: Path, corpora: Path, sources: set[str], units_per_run: int) -> Project:
    config = demo_config(folder, corpora).model_dump(mode="json")
    config["sources"] = [s for s in config["sources"] if s["name"] in sources]
    config["quality"]["sources"] = {
        k: v for k, v in config["quality"]["sources"].items() if k in sources
    }
    config["releases"] = []
    config["training"]["release"] = None
    config["execution"] = {"units_per_run": units_per_run}
    return init_project(folder, ProjectConfig.model_validate(config))


def _table(con, name: str) -> pl.DataFrame:  # type: ignore[no-untyped-def]
    frame = pl.from_arrow(con.sql(f"SELECT * FROM {name}").to_arrow_table())
    return frame.sort(frame.columns)


def _assert_catalogue_equals_rebuild(project: Project, tmp_path: Path) -> None:
    rebuilt = tmp_path / "rebuilt.duckdb"
    rebuild_catalogue(project, path=rebuilt)
    with (
        open_catalogue_readonly(project.catalogue_path) as a,
        open_catalogue_readonly(rebuilt) as b,
    ):
        for table in ("utterances", "shards", "code_shards", "units", "sources"):
            assert _table(a, table).equals(_table(b, table)), table


def _unit_runs(instance: dg.DagsterInstance, run_ids: list[str]) -> list[dg.DagsterRun]:
    runs = [instance.get_run_by_id(r) for r in run_ids]
    return [r for r in runs if r is not None and r.job_name == "unit_job"]


def test_runs_are_queued_from_the_code_location_and_carry_many_units(
    tmp_path: Path, corpora: Path
) -> None:
    # A copy of the corpora, so the test can add a file to one source later.
    shutil.copytree(corpora / "librispeech", tmp_path / "corpora" / "librispeech")
    shutil.copytree(corpora / "custom", tmp_path / "corpora" / "custom")
    project = _project(
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

    unit_runs = _unit_runs(instance, report.run_ids)
    # At most two units per run, and the runs fill the queue's slots.
    assert len(unit_runs) >= math.ceil(len(units) / 2)
    for key in ("manifest", "quality", "tokens"):
        assert instance.get_materialized_partitions(dg.AssetKey(key)) == set(units), key
    jobs = [instance.get_run_by_id(r).job_name for r in report.run_ids]
    catalogue_runs = [j for j in jobs if j == "lake_job"]
    assert len(catalogue_runs) == 1  # the catalogue is folded in once, at the end
    _assert_catalogue_equals_rebuild(project, tmp_path)

    # Everything is current: no run at all.
    again = run_assets(project)
    assert again.nothing_to_do and not again.run_ids

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
    assert [instance.get_run_by_id(r).job_name for r in third.run_ids] == ["inventory_job"]
    assert {u: materializations(u) for u in units} == before

    # A policy edit that changes no decision: every unit is judged again (from its
    # stored measures, nothing decoded), no audio or code shard is rewritten, and the
    # tokens step finds its codes current (no tokenizer is loaded).
    shards_before = _shard_files(project)
    config = yaml.safe_load(project.config_path.read_text())
    config["quality"]["max_duration_s"] = 60.0  # no bundled utterance is that long
    project.config_path.write_text(yaml.safe_dump(config))
    edited = load_project(project.directory)
    fourth = run_assets(edited)
    assert fourth.success, fourth.failures
    assert _shard_files(edited) == shards_before

    def latest(asset: str) -> list:
        return instance.fetch_materializations(dg.AssetKey(asset), limit=len(units)).records

    assert {r.partition_key for r in latest("quality")} == set(units)
    assert all(
        r.asset_materialization.metadata["decoded"].value is False for r in latest("quality")
    )
    assert {r.partition_key for r in latest("tokens")} == set(units)
    assert all(r.asset_materialization.metadata["reused"].value is True for r in latest("tokens"))


def test_a_failed_unit_is_visible_and_re_runs_alone(tmp_path: Path, corpora: Path) -> None:
    project = _project(tmp_path / "proj", corpora, {"custom_hf", "custom_folder"}, units_per_run=8)
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
    unit_runs = _unit_runs(instance, retry.run_ids)
    assert len(unit_runs) == 1 and unit_runs[0].tags.get("dagster/partition") == victim
    assert instance.get_materialized_partitions(dg.AssetKey("tokens")) == set(units)
    _assert_catalogue_equals_rebuild(project, tmp_path)


def test_a_bad_selection_or_source_is_a_selection_error(tmp_path: Path, corpora: Path) -> None:
    project = _project(tmp_path / "proj", corpora, {"custom_hf"}, units_per_run=4)
    with pytest.raises(SelectionError, match="bad selection"):
        run_assets(project, select="inventory*,manifest*")
    with pytest.raises(SelectionError, match="no source named 'nope'"):
        run_assets(project, sources=["nope"])


def test_a_second_run_on_one_project_refuses_naming_the_first(
    tmp_path: Path, corpora: Path
) -> None:
    project = _project(tmp_path / "proj", corpora, {"custom_hf"}, units_per_run=4)
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


def _shard_files(project: Project) -> dict[str, tuple[int, int]]:
    """(mtime in ns, bytes) of every audio and code shard file and index in the lake."""
    root = project.lake.root
    return {
        p.relative_to(root).as_posix(): (p.stat().st_mtime_ns, p.stat().st_size)
        for folder in ("shards", "codes")
        for p in sorted((root / folder).rglob("*"))
        if p.is_file()
    }


def _lake_files(project: Project) -> dict[str, str]:
    """sha256 of every unit file in the lake (manifests, quality, audio and code shards)."""
    from schemas.hashing import file_sha256

    root = project.lake.root
    return {
        p.relative_to(root).as_posix(): file_sha256(p)
        for folder in ("manifests", "quality", "shards", "codes")
        for p in sorted((root / folder).rglob("*"))
        if p.is_file()
    }


def test_a_ui_backfill_over_units_gives_what_voxlake_run_gives(
    tmp_path: Path, corpora: Path
) -> None:
    """The backfill the UI's "Materialize all" submits, run by the daemon, cut by the unit
    assets' backfill policy: the same lake, byte for byte, as `voxlake run`."""
    import time

    from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill

    from assets.services import dagster_services

    sources = {"custom_hf", "custom_folder"}
    by_run = _project(tmp_path / "a" / "proj", corpora, sources, units_per_run=2)
    assert run_assets(by_run).success

    by_backfill = _project(tmp_path / "b" / "proj", corpora, sources, units_per_run=2)
    assert run_assets(by_backfill, select="group:ingest and not key:manifest").success
    instance = open_instance(by_backfill)
    unit_assets = [dg.AssetKey(k) for k in ("manifest", "quality", "tokens")]
    with dagster_services(by_backfill, instance) as services:
        workspace = services.context.create_request_context()
        backfill = PartitionBackfill.from_asset_partitions(
            backfill_id="uibackfill",
            asset_graph=workspace.asset_graph,
            partition_names=None,
            asset_selection=[*unit_assets, dg.AssetKey("catalogue")],
            backfill_timestamp=time.time(),
            tags={},
            dynamic_partitions_store=instance,
            all_partitions=True,
            title=None,
            description=None,
            run_config=None,
        )
        instance.add_backfill(backfill)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            status = instance.get_backfill("uibackfill").status
            if status not in (BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING):
                break
            time.sleep(1)
    assert status == BulkActionStatus.COMPLETED_SUCCESS, status
    runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": "uibackfill"}))
    units = instance.get_dynamic_partitions(UNITS_PARTITIONS_NAME)
    unit_runs = [
        r for r in runs if r.asset_selection and dg.AssetKey("tokens") in r.asset_selection
    ]
    assert len(unit_runs) == math.ceil(len(units) / 2)  # the backfill policy's two per run
    assert _lake_files(by_backfill) == _lake_files(by_run)
    _assert_catalogue_equals_rebuild(by_backfill, tmp_path)


def test_voxlake_run_submits_to_the_daemon_of_voxlake_ui(tmp_path: Path, corpora: Path) -> None:
    """With `voxlake ui` up, `voxlake run` starts no daemon of its own: the UI's daemon takes
    its runs off the same queue, under the same code location name."""
    import socket
    import subprocess
    import sys
    import time

    from assets.instance import daemon_running

    project = _project(tmp_path / "proj", corpora, {"custom_hf"}, units_per_run=4)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ui = subprocess.Popen(
        [sys.executable, "-m", "assets.cli", "ui", "--port", str(port),
         "--project", str(project.directory)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        instance = open_instance(project)
        deadline = time.monotonic() + 180
        while not daemon_running(instance):
            assert ui.poll() is None, "voxlake ui exited"
            assert time.monotonic() < deadline, "the UI's daemon sent no heartbeat"
            time.sleep(1)
        report = run_assets(project)
        assert report.success, report.failures
        assert report.run_ids and not report.started_daemon
    finally:
        import os
        import signal

        os.killpg(ui.pid, signal.SIGTERM)
        try:
            ui.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)


def test_a_source_whose_inventory_fails_does_not_stop_the_others(
    tmp_path: Path, corpora: Path
) -> None:
    project = _project(tmp_path / "proj", corpora, {"custom_hf"}, units_per_run=4)
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
