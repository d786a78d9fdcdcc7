"""A voxlake project on disk: a folder holding `voxlake.yaml`, its lake and its Dagster home.

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> project = init_project(folder)
>>> project.config.lake, project.lake.root == folder / "lake"
('lake', True)
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from pipelines.lake.paths import Lake
from pipelines.tokenizer import ensure_checkpoint
from schemas import ProjectConfig, SourceConfig
from schemas.tokens import DEMO_TOKENIZER_DIR

PROJECT_FILE = "voxlake.yaml"
DAGSTER_HOME_ENV = "VOXLAKE_DAGSTER_HOME"
DAGSTER_HOME_DIR = ".dagster"
# The instance configuration every project's Dagster home starts from.
INSTANCE_TEMPLATE = Path(__file__).resolve().parent.parent / "dagster.yaml"


class ProjectError(Exception):
    """A project cannot be loaded or changed; the message says which file and what is wrong."""


def format_validation_error(path: Path, error: ValidationError) -> str:
    """One line per problem, naming the field by its path in the file (`sources.0.kind`)."""
    lines = [f"{path}: invalid configuration"]
    for problem in error.errors():
        where = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        lines.append(f"  {where}: {problem['msg']}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Project:
    """A loaded project: its folder and validated configuration."""

    directory: Path
    config: ProjectConfig

    @property
    def config_path(self) -> Path:
        """The `voxlake.yaml` file."""
        return self.directory / PROJECT_FILE

    @property
    def lake(self) -> Lake:
        """The project's lake."""
        root = Path(self.config.lake).expanduser()
        return Lake(root if root.is_absolute() else self.directory / root)

    @property
    def catalogue_path(self) -> Path:
        """The DuckDB catalogue file (derived from the lake; rebuildable)."""
        path = Path(self.config.catalogue).expanduser()
        return path if path.is_absolute() else self.directory / path

    @property
    def dagster_home(self) -> Path:
        """The project's Dagster home (`dagster.yaml`, SQLite storage by default).

        `<project>/.dagster`, or `$VOXLAKE_DAGSTER_HOME` when set (a deployment's
        shared instance, see `deploy/`).
        """
        override = os.environ.get(DAGSTER_HOME_ENV)
        return Path(override).resolve() if override else self.directory / DAGSTER_HOME_DIR

    def save(self) -> None:
        """Write the configuration back to `voxlake.yaml`."""
        data = self.config.model_dump(mode="json", exclude_defaults=False)
        self.config_path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))

    def with_source(self, source: SourceConfig) -> Project:
        """A copy with `source` added; ProjectError if the name is taken."""
        if any(s.name == source.name for s in self.config.sources):
            raise ProjectError(f"{self.config_path}: a source named {source.name!r} exists")
        data = self.config.model_dump(mode="json")
        data["sources"].append(source.model_dump(mode="json"))
        try:
            config = ProjectConfig.model_validate(data)
        except ValidationError as error:
            raise ProjectError(format_validation_error(self.config_path, error)) from error
        return Project(self.directory, config)

    def ensure_dagster_home(self) -> Path:
        """Create the Dagster home with the instance template; return it."""
        home = self.dagster_home
        home.mkdir(parents=True, exist_ok=True)
        target = home / "dagster.yaml"
        if not target.exists():
            shutil.copyfile(INSTANCE_TEMPLATE, target)
        return home


def load_project(directory: Path | None = None) -> Project:
    """Load the project in `directory` (default: `$VOXLAKE_PROJECT` or the current folder)."""
    folder = Path(directory or os.environ.get("VOXLAKE_PROJECT") or Path.cwd()).resolve()
    path = folder / PROJECT_FILE
    if not path.exists():
        raise ProjectError(f"{path} not found: run `voxlake init` here or pass --project DIR")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ProjectError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(raw, dict):
        raise ProjectError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        config = ProjectConfig.model_validate(raw)
    except ValidationError as error:
        raise ProjectError(format_validation_error(path, error)) from error
    return Project(folder, config)


def init_project(directory: Path, config: ProjectConfig | None = None) -> Project:
    """Create a project in `directory` (which may exist, but must not hold one yet)."""
    directory = directory.resolve()
    if (directory / PROJECT_FILE).exists():
        raise ProjectError(f"{directory / PROJECT_FILE} already exists")
    directory.mkdir(parents=True, exist_ok=True)
    project = Project(directory, config or ProjectConfig())
    project.save()
    project.lake.root.mkdir(parents=True, exist_ok=True)
    project.ensure_dagster_home()
    # The default tokenizer is a demo checkpoint voxlake writes itself; writing it now
    # keeps the tokens asset's code version (the checkpoint hash) stable from the start.
    if project.config.tokenizer.checkpoint == DEMO_TOKENIZER_DIR:
        ensure_checkpoint(project.directory, project.config.tokenizer)
    return project
