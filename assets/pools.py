"""The named Dagster pools and their limits: the one place they are defined.

Asset declarations name their pool with these constants, and `assets.runner`
sets each limit on the project's instance when it opens it (`dagster.yaml`
leaves every other pool at its default limit of 1).
"""

from __future__ import annotations

CATALOGUE_POOL = "catalogue"
"""The catalogue's writers (`catalogue`, `release`): DuckDB allows one writing process per file."""

GPU_POOL = "gpu"
"""Steps that hold the accelerator (`tokens`, the training stages, `evaluation`)."""

POOL_LIMITS: dict[str, int] = {
    CATALOGUE_POOL: 1,
    # One step at a time on the one device (or on the CPU of a machine without one).
    GPU_POOL: 1,
}
"""Steps of each pool that may run at once."""
