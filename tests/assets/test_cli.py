"""`voxlake run` as a user drives it: materialize a source, then query the lake."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from assets.cli import app

runner = CliRunner()


def _invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    code, out = _invoke("init", str(tmp_path / "proj"))
    assert code == 0, out
    return tmp_path / "proj"


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
    # The failure names the whole path on one line (the terminal wraps it, rich must not).
    assert f"{project_dir / 'nowhere'} does not exist" in out
    code, out = _invoke("run", "--source", "nope", "--project", str(project_dir))
    assert code == 2 and "no source named 'nope'" in out  # a user error, not a failed run


def test_the_console_script_exits_with_the_commands_status_and_all_its_output(
    tmp_path: Path,
) -> None:
    # `assets.cli.main` skips the interpreter's teardown: what it printed must still
    # all arrive, through a pipe, and the status must be the command's.
    exe = Path(sys.executable).parent / "voxlake"
    shown = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "run" in shown.stdout and "status" in shown.stdout and "Usage" in shown.stdout
    missing = subprocess.run(
        [str(exe), "run", "--project", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "500"},  # one line, however long the path
    )
    assert missing.returncode == 2
    assert f"no voxlake project in {tmp_path / 'none'}" in missing.stderr
