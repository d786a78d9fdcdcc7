"""Shared fixtures of the catalogue tests: one full lake, a copy to change, its catalogue.

The full lake and its catalogue are built once for the package; tests that change the
lake work on `copied_lake`.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

# Test modules import the lake helpers from `catalogue_lake.py` beside this file (pytest's
# importlib mode does not put test folders on sys.path).
sys.path.insert(0, str(Path(__file__).resolve().parent))

from catalogue_lake import (
    assess,
    ingest,
    new_project,
    records,
    release,
    tokenize,
    units_of,
)

from pipelines.catalogue.build import rebuild_catalogue
from pipelines.project import Project, load_project


@pytest.fixture(scope="package")
def full_lake(tmp_path_factory: pytest.TempPathFactory, corpora: Path) -> Project:
    """Every corpus ingested and assessed (audio shards); two units tokenized (code shards);
    a release, a run and an evaluation."""
    project = new_project(tmp_path_factory.mktemp("catalogue") / "proj", corpora)
    ingest(project)
    assess(project, [s.name for s in project.config.sources])
    for source in ("librispeech", "wenetspeech"):
        tokenize(project, source, units_of(project, source)[0])
    release(project, "r1")
    records(project)
    return project


@pytest.fixture
def copied_lake(full_lake: Project, tmp_path: Path) -> Project:
    """A copy of the full lake's project, free to change."""
    target = tmp_path / "proj"
    shutil.copytree(full_lake.directory, target, symlinks=True)
    return load_project(target)


@pytest.fixture(scope="package")
def built(full_lake: Project, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The full lake's catalogue, rebuilt once (read-only for the tests)."""
    path = tmp_path_factory.mktemp("built") / "catalogue.duckdb"
    stats = rebuild_catalogue(full_lake, path)
    assert stats.mode == "rebuild" and stats.n_utterances > 0
    return path
