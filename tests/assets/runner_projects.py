"""Projects and lake comparisons shared by the `voxlake run` tests (test_runner*.py)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl

from pipelines.catalogue.build import rebuild_catalogue
from pipelines.catalogue.read import open_catalogue_readonly
from pipelines.demo.project import demo_config
from pipelines.project import Project, init_project
from schemas import ProjectConfig


def runner_project(folder: Path, corpora: Path, sources: set[str], units_per_run: int) -> Project:
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


def assert_catalogue_equals_rebuild(project: Project, tmp_path: Path) -> None:
    rebuilt = tmp_path / "rebuilt.duckdb"
    rebuild_catalogue(project, path=rebuilt)
    with (
        open_catalogue_readonly(project.catalogue_path) as a,
        open_catalogue_readonly(rebuilt) as b,
    ):
        for table in ("utterances", "shards", "code_shards", "units", "sources"):
            assert _table(a, table).equals(_table(b, table)), table


def unit_runs(instance: dg.DagsterInstance, run_ids: list[str]) -> list[dg.DagsterRun]:
    runs = [instance.get_run_by_id(r) for r in run_ids]
    return [r for r in runs if r is not None and r.job_name == "unit_job"]


def shard_files(project: Project) -> dict[str, tuple[int, int]]:
    """(mtime in ns, bytes) of every audio and code shard file and index in the lake."""
    root = project.lake.root
    return {
        p.relative_to(root).as_posix(): (p.stat().st_mtime_ns, p.stat().st_size)
        for folder in ("shards", "codes")
        for p in sorted((root / folder).rglob("*"))
        if p.is_file()
    }


def lake_files(project: Project) -> dict[str, str]:
    """sha256 of every unit file in the lake (manifests, quality, audio and code shards)."""
    from schemas.hashing import file_sha256

    root = project.lake.root
    return {
        p.relative_to(root).as_posix(): file_sha256(p)
        for folder in ("manifests", "quality", "shards", "codes")
        for p in sorted((root / folder).rglob("*"))
        if p.is_file()
    }
