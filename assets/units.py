"""What every per-unit asset starts with: the loaded project, its unit and that unit's source.

`unit_run(context, voxlake_project)` replaces the lines each per-unit asset would
repeat (load the project, take the unit from the partition key, find the unit's
source, log progress to the run), so an asset body only calls its step and maps
the result to Dagster objects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg

from assets.resources import VoxlakeProject
from pipelines.project import Project
from pipelines.units import source_of_unit
from schemas import SourceConfig


@dataclass(frozen=True)
class UnitRun:
    """One per-unit asset materialisation: the project, the unit, the run's log."""

    project: Project
    unit: str
    log: dg.DagsterLogManager

    @property
    def source(self) -> SourceConfig:
        """The configured source the unit belongs to (KeyError naming the known ones)."""
        return self.project.config.source(source_of_unit(self.unit))

    def progress(self, counted: str) -> Callable[[int, int], None]:
        """A step progress callback logging `<unit>: <done>/<total> <counted>`."""

        def report(done: int, total: int) -> None:
            self.log.info(f"{self.unit}: {done}/{total} {counted}")

        return report


def unit_run(context: dg.AssetExecutionContext, voxlake_project: VoxlakeProject) -> UnitRun:
    """The project loaded from the resource and the unit named by the run's partition key."""
    return UnitRun(project=voxlake_project.load(), unit=context.partition_key, log=context.log)
