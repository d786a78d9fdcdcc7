"""Resources: the voxlake project the assets work on."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from pipelines.project import Project, load_project


class VoxlakeProject(dg.ConfigurableResource):
    """The voxlake project folder (holding `voxlake.yaml`) whose lake the assets write."""

    project_dir: str

    def load(self) -> Project:
        """Load and validate the project's configuration."""
        return load_project(Path(self.project_dir))
