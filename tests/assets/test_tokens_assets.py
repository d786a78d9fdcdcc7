"""Tokens in Dagster and on the command line: code shards aligned with the audio shards,
codes at 12.5 Hz checked per sample, and a new tokenizer checkpoint makes exactly the
tokens (not quality) stale; re-tokenizing writes the new tokenizer's code shards and
leaves every audio shard as it was."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import yaml
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContextForTest
from typer.testing import CliRunner

from assets.definitions import INVENTORY_JOB, UNIT_JOB, build_definitions
from assets.partitions import UNITS_PARTITIONS_NAME
from inference.glm4voice import expected_code_count, write_demo_checkpoint
from pipelines.audio.pcm import decode_flac16
from pipelines.cli.app import app
from pipelines.demo.project import demo_config
from pipelines.project import Project, init_project
from pipelines.shards.reader import iter_shard_samples
from schemas import CodeSampleMeta, ProjectConfig
from schemas.shards import decode_codes


@pytest.fixture
def project(tmp_path: Path, corpora: Path) -> Project:
    config = demo_config(tmp_path / "proj", corpora).model_dump(mode="json")
    config["sources"] = [s for s in config["sources"] if s["name"] == "custom_vita"]
    config["quality"]["sources"] = {}
    return init_project(tmp_path / "proj", ProjectConfig.model_validate(config))


def _materialize(
    project: Project,
    instance: dg.DagsterInstance,
    assets: tuple[str, ...] = ("manifest", "quality", "tokens"),
) -> list[str]:
    defs = build_definitions(project.directory)
    if "manifest" in assets:
        assert defs.resolve_job_def(INVENTORY_JOB).execute_in_process(instance=instance).success
    units = instance.get_dynamic_partitions(UNITS_PARTITIONS_NAME)
    selection = [dg.AssetKey(k) for k in assets]
    for unit in units:
        result = defs.resolve_job_def(UNIT_JOB).execute_in_process(
            instance=instance, partition_key=unit, asset_selection=selection
        )
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert checks["code_rate"], checks
    return units


def _code_folders(project: Project) -> list[Path]:
    return sorted((project.lake.root / "codes").glob("*/custom_vita/*"))


def _files(folders: list[Path]) -> dict[str, tuple[int, bytes]]:
    return {
        str(p): (p.stat().st_mtime_ns, p.read_bytes())
        for folder in folders
        for p in sorted(folder.iterdir())
    }


def _check_aligned(project: Project, code_folder: Path) -> list[np.ndarray]:
    """Code shard N holds exactly audio shard N's keys, in order; every count is right."""
    unit = code_folder.name
    audio_folder = project.lake.shards_dir("custom_vita", unit)
    audio_tars = sorted(audio_folder.glob("audio-*.tar"))
    code_tars = sorted(code_folder.glob("codes-*.tar"))
    assert [p.name[6:] for p in audio_tars] == [p.name[6:] for p in code_tars] and code_tars
    all_codes = []
    for audio_tar, code_tar in zip(audio_tars, code_tars, strict=True):
        audio = list(iter_shard_samples(audio_tar))
        codes = list(iter_shard_samples(code_tar))
        assert [k for k, _ in audio] == [k for k, _ in codes]
        for (_, audio_members), (_, code_members) in zip(audio, codes, strict=True):
            assert set(code_members) == {"codes.npy", "json"}
            n_samples = len(decode_flac16(audio_members["flac"]))
            values = decode_codes(code_members["codes.npy"])
            meta = CodeSampleMeta.model_validate_json(code_members["json"])
            assert len(values) == meta.n_codes == expected_code_count(n_samples)
            audio_meta = json.loads(audio_members["json"])
            assert meta.tokenizer_is_demo and meta.text == audio_meta["text"]
            assert meta.pcm_sha256 == audio_meta["pcm_sha256"]
            all_codes.append(values)
    return all_codes


def test_new_checkpoint_makes_tokens_stale_but_not_quality(project: Project) -> None:
    with dg.instance_for_test(temp_dir=str(project.dagster_home)) as instance:
        unit = _materialize(project, instance)[0]
        first_folders = _code_folders(project)
        assert first_folders
        first_codes = [c for folder in first_folders for c in _check_aligned(project, folder)]
        audio_before = _files(sorted(project.lake.shards_root().glob("custom_vita/*")))
        codes_before = _files(first_folders)

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

        # Re-tokenize: new code shards under the new tokenizer, audio shards untouched.
        _materialize(project, instance, assets=("tokens",))
        assert _files(sorted(project.lake.shards_root().glob("custom_vita/*"))) == audio_before
        assert _files(first_folders) == codes_before  # the old tokenizer's codes are kept
        new_folders = [f for f in _code_folders(project) if f not in first_folders]
        assert [f.name for f in new_folders] == [f.name for f in first_folders]
        new_codes = [c for folder in new_folders for c in _check_aligned(project, folder)]
        assert len(new_codes) == len(first_codes)
        assert any(not np.array_equal(a, b) for a, b in zip(new_codes, first_codes, strict=True))
        assert status("tokens") == StaleStatus.FRESH


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
