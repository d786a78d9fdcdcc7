"""The `inventory[source]` step: run the source's connector and write its unit plans."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pipelines.audio.opener import resolve_source_path
from pipelines.lake.paths import Lake
from pipelines.sources.base import connector
from pipelines.units import plan_units
from schemas import (
    SourceConfig,
    UnitLimits,
    UnitPlan,
)


def inventory_source(
    source: SourceConfig,
    project_dir: Path,
    lake: Lake,
    limits: UnitLimits,
    on_unit: Callable[[UnitPlan], None] | None = None,
) -> list[UnitPlan]:
    """Run the source's connector and write its unit plans to the lake."""
    path = resolve_source_path(source, project_dir)
    if not path.exists():
        raise FileNotFoundError(f"source {source.name!r}: path {path} does not exist")
    groups = connector(source.kind.value)(path, source.typed_options())
    return plan_units(source.name, groups, limits, lake, on_unit=on_unit)
