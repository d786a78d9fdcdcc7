"""The `catalogue[unit]` step: fold one unit's lake files into `catalogue.duckdb`.

The catalogue is derived from the lake; `pipelines.catalogue.build.update_catalogue`
is its single writer (holding the writer lock) and refreshes exactly the units it
is given, so per-unit steps write lake files only and this step folds each unit in
afterwards. The `catalogue` asset runs in the `catalogue` pool (one at a time):
DuckDB allows one writing process per file.
"""

from __future__ import annotations

from pipelines.catalogue.build import CatalogueStats, update_catalogue
from pipelines.project import Project


def catalogue_unit(project: Project, unit: str) -> CatalogueStats:
    """Refresh `unit`'s rows in the project's catalogue (rebuilding it if it must)."""
    return update_catalogue(project, units=[unit])
