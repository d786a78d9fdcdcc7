"""The `catalogue` step: fold the lake's new and changed files into `catalogue.duckdb`.

The catalogue is derived from the lake. Per-unit steps write lake files only;
this lake-wide step then refreshes, in one transaction, exactly the units,
releases, runs and evaluations whose files (for a unit: manifest, quality, audio
shard index, and the code shard index of the configured tokenizer) were added,
replaced or removed since the catalogue last recorded them (the file-stat comparison of
`pipelines.catalogue.build.update_catalogue`, its single writer), so the result
always equals a rebuild. The `catalogue` asset runs in the `catalogue` pool (one at
a time): DuckDB allows one writing process per file.
"""

from __future__ import annotations

from pipelines.catalogue.build import CatalogueStats, update_catalogue
from pipelines.project import Project


def catalogue_lake(project: Project) -> CatalogueStats:
    """Bring the project's catalogue up to date with its lake (rebuilding it if it must)."""
    return update_catalogue(project)
