"""Resources: the voxlake project the assets work on.

Bound as `voxlake_project` (`PROJECT_RESOURCE_KEY`); an asset takes it as a
parameter of that name and calls `load()` for the `Project` it works on.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from pipelines.project import Project, load_project

PROJECT_RESOURCE_KEY = "voxlake_project"


class VoxlakeProject(dg.ConfigurableResource):
    """The voxlake project folder (holding `voxlake.yaml`) whose lake the assets write."""

    project_dir: str

    def load(self) -> Project:
        """Load and validate the project's configuration."""
        return load_project(Path(self.project_dir))
