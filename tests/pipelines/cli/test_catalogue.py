"""`voxlake query` on a project's lake: one read-only statement, nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest
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
    assert code == 2  # a user error
    assert "error" in out
    assert not (project_dir / "x.csv").exists()
