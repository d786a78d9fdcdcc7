"""The `voxlake` command line as a user drives it: init, sources, run, query."""

from __future__ import annotations

import json
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
    assert code == 1 and "already exists" in out


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
    assert code == 1 and "kind" in out
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
    assert code == 1 and "langs" in out
    code, out = _invoke(
        "source", "add", "libri", "--kind", "emilia", "--path", "x", "--project", str(project_dir)
    )
    assert code == 1 and "exists" in out

    code, out = _invoke("source", "list", "--project", str(project_dir))
    assert code == 0 and "libri" in out and "librispeech" in out and "bad" not in out


def test_run_then_query_the_lake(project_dir: Path, corpora: Path, load_expected) -> None:
    code, out = _invoke(
        "source",
        "add",
        "folder",
        "--kind",
        "audio_folder",
        "--path",
        str(corpora / "custom" / "folder"),
        "--project",
        str(project_dir),
    )
    assert code == 0, out
    code, out = _invoke("run", "--project", str(project_dir))
    assert code == 0, out
    code, out = _invoke(
        "query",
        "SELECT count(*) AS n FROM utterances",
        "--format",
        "json",
        "--project",
        str(project_dir),
    )
    assert code == 0, out
    assert json.loads(out) == [{"n": len(load_expected("custom_folder"))}]
    code, out = _invoke(
        "query",
        "SELECT reject_rule FROM rejections WHERE reject_stage = 'ingest' ORDER BY 1",
        "--format",
        "csv",
        "--project",
        str(project_dir),
    )
    expected = sorted(
        e["reason"] for e in load_expected("custom_folder") if e["status"] == "rejected"
    )
    assert out.splitlines() == ["reject_rule", *expected]


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM manifests",
        "COPY manifests TO 'x.csv'",
        "CREATE TABLE t AS SELECT 1",
        "SELECT 1; SELECT 2",
    ],
)
def test_query_refuses_anything_but_one_read(project_dir: Path, sql: str) -> None:
    code, out = _invoke("query", sql, "--project", str(project_dir))
    assert code == 1
    assert "error" in out
    assert not (project_dir / "x.csv").exists()


def test_run_fails_loudly_on_a_missing_corpus_and_unknown_source(project_dir: Path) -> None:
    code, out = _invoke(
        "source",
        "add",
        "gone",
        "--kind",
        "emilia",
        "--path",
        "nowhere",
        "--project",
        str(project_dir),
    )
    assert code == 0
    code, out = _invoke("run", "--project", str(project_dir))
    assert code == 1
    assert "nowhere" in out and "does not exist" in out
    code, out = _invoke("run", "--source", "nope", "--project", str(project_dir))
    assert code == 1 and "no source named 'nope'" in out


def test_commands_outside_a_project_say_how_to_start(tmp_path: Path) -> None:
    os.chdir(tmp_path)
    code, out = _invoke("source", "list")
    assert code == 1 and "voxlake init" in out
