"""`voxlake init`, `source add`, `source list` as a user drives them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipelines.cli.app import app

runner = CliRunner()


def _invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    code, out = _invoke("init", str(tmp_path / "proj"))
    assert code == 0, out
    return tmp_path / "proj"


def test_init_creates_config_lake_and_dagster_home(project_dir: Path) -> None:
    assert (project_dir / "voxlake.yaml").exists()
    assert (project_dir / "lake").is_dir()
    instance_yaml = yaml.safe_load((project_dir / ".dagster" / "dagster.yaml").read_text())
    assert instance_yaml["telemetry"] == {"enabled": False}
    code, out = _invoke("init", str(project_dir))
    assert code == 2 and "already exists" in out


def test_source_add_validates_and_lists(project_dir: Path, corpora: Path) -> None:
    code, out = _invoke(
        "source",
        "add",
        "libri",
        "--kind",
        "librispeech",
        "--path",
        str(corpora / "librispeech" / "LibriSpeech"),
        "--option",
        "splits=[dev-clean-2]",
        "--project",
        str(project_dir),
    )
    assert code == 0, out
    config = yaml.safe_load((project_dir / "voxlake.yaml").read_text())
    assert config["sources"][0]["options"] == {"splits": ["dev-clean-2"]}

    code, out = _invoke(
        "source", "add", "bad", "--kind", "mp4", "--path", "x", "--project", str(project_dir)
    )
    assert code == 2 and "kind" in out
    code, out = _invoke(
        "source",
        "add",
        "bad",
        "--kind",
        "emilia",
        "--path",
        "x",
        "--option",
        "langs=[EN]",
        "--project",
        str(project_dir),
    )
    assert code == 2 and "langs" in out
    code, out = _invoke(
        "source", "add", "libri", "--kind", "emilia", "--path", "x", "--project", str(project_dir)
    )
    assert code == 2 and "exists" in out

    code, out = _invoke("source", "list", "--project", str(project_dir))
    assert code == 0 and "libri" in out and "librispeech" in out and "bad" not in out


def test_commands_outside_a_project_say_how_to_start(tmp_path: Path) -> None:
    os.chdir(tmp_path)
    code, out = _invoke("source", "list")
    assert code == 2 and "voxlake init" in out
