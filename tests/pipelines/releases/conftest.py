"""Shared builder of the release tests: two bundled corpora through every per-unit step."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pipelines.catalogue.build import update_catalogue
from pipelines.demo.project import demo_config
from pipelines.project import Project, init_project
from pipelines.steps.inventory import inventory_source
from pipelines.steps.manifest import build_manifest
from pipelines.steps.quality import assess_unit
from pipelines.steps.release import create_and_register
from pipelines.steps.tokens import tokenize_unit
from schemas import ProjectConfig, ReleaseSpec

RELEASED_SOURCES = {"librispeech", "wenetspeech"}


def _released_project(folder: Path, corpora: Path) -> Project:
    """LibriSpeech and WenetSpeech through inventory, manifest, quality and tokens, the
    catalogue, and release `r1` (30 % dev)."""
    config = demo_config(folder, corpora).model_dump(mode="json")
    # Absolute corpus paths, so that a copied project still finds its corpora.
    config["sources"] = [
        {**s, "path": str((folder / s["path"]).resolve())}
        for s in config["sources"]
        if s["name"] in RELEASED_SOURCES
    ]
    config["quality"]["sources"] = {
        k: v for k, v in config["quality"]["sources"].items() if k in RELEASED_SOURCES
    }
    config["releases"] = []
    project = init_project(folder, ProjectConfig.model_validate(config))
    for source in project.config.sources:
        for plan in inventory_source(source, project.directory, project.lake, project.config.units):
            build_manifest(source, project.directory, project.lake, plan.unit, plan.n_inputs)
            assess_unit(project, source, plan.unit)
            tokenize_unit(project, source, plan.unit)
    update_catalogue(project)
    create_and_register(project, ReleaseSpec(name="r1", dev=0.3))
    return project


@pytest.fixture(scope="session")
def released_project() -> Callable[[Path, Path], Project]:
    """`(folder, corpora) -> Project`: a project with two corpora processed and release r1."""
    return _released_project
