"""Tokens in Dagster and on the command line: codes at 12.5 Hz checked per row, and a new
tokenizer checkpoint makes exactly the tokens (not quality) stale."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContextForTest
from typer.testing import CliRunner

from assets.definitions import INVENTORY_JOB, UNIT_JOB, build_definitions
from assets.partitions import UNITS_PARTITIONS_NAME
from inference.glm4voice import expected_code_count, write_demo_checkpoint
from pipelines.cli.app import app
from pipelines.demo.project import demo_config
from pipelines.project import Project, init_project
from schemas import ProjectConfig


@pytest.fixture
def project(tmp_path: Path, corpora: Path) -> Project:
    config = demo_config(tmp_path / "proj", corpora).model_dump(mode="json")
    config["sources"] = [s for s in config["sources"] if s["name"] == "custom_vita"]
    config["quality"]["sources"] = {}
    return init_project(tmp_path / "proj", ProjectConfig.model_validate(config))


def _materialize(project: Project, instance: dg.DagsterInstance) -> list[str]:
    defs = build_definitions(project.directory)
    assert defs.resolve_job_def(INVENTORY_JOB).execute_in_process(instance=instance).success
    units = instance.get_dynamic_partitions(UNITS_PARTITIONS_NAME)
    selection = [dg.AssetKey(k) for k in ("manifest", "quality", "tokens")]
    for unit in units:
        result = defs.resolve_job_def(UNIT_JOB).execute_in_process(
            instance=instance, partition_key=unit, asset_selection=selection
        )
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert checks["code_rate"], checks
    return units


def test_new_checkpoint_makes_tokens_stale_but_not_quality(project: Project) -> None:
    with dg.instance_for_test(temp_dir=str(project.dagster_home)) as instance:
        unit = _materialize(project, instance)[0]
        frame = pl.read_parquet(project.lake.root / "tokens" / "custom_vita" / "*.parquet")
        assert frame.height > 0 and frame["tokenizer_is_demo"].all()
        for row in frame.iter_rows(named=True):
            assert row["n_codes"] == expected_code_count(row["n_samples"]) == len(row["codes"])

        def status(key: str) -> StaleStatus:
            graph = build_definitions(project.directory).resolve_asset_graph()
            resolver = CachingStaleStatusResolver(instance, graph, LoadingContextForTest(instance))
            return resolver.get_status(dg.AssetKey(key), unit)

        assert status("tokens") == StaleStatus.FRESH
        write_demo_checkpoint(project.directory / "models" / "other", seed=7)
        config = yaml.safe_load(project.config_path.read_text())
        config["tokenizer"]["checkpoint"] = "models/other"
        project.config_path.write_text(yaml.safe_dump(config))
        assert status("tokens") == StaleStatus.STALE
        assert status("quality") == StaleStatus.FRESH


def test_tokenize_command_prints_codes(project: Project, corpora: Path) -> None:
    wav = corpora / "custom" / "table" / "audio" / "t1.wav"
    runner = CliRunner()
    result = runner.invoke(
        app, ["tokenize", str(wav), "--format", "json", "--project", str(project.directory)]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    import soundfile as sf

    n_samples = round(sf.info(str(wav)).duration * 16000)
    assert abs(payload[0]["n_codes"] - expected_code_count(n_samples)) <= 1
    text = runner.invoke(app, ["tokenize", str(wav), "--project", str(project.directory)])
    assert text.exit_code == 0
    assert text.stdout.count("<|audio_") == payload[0]["n_codes"]
    assert "<|begin_of_audio|>" in text.stdout and "<|end_of_audio|>" in text.stdout
