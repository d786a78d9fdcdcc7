"""The named Dagster pools and their limits: the one place they are defined.

Asset declarations name their pool with these constants; `assets.instance` sets
each limit on the project's instance whenever voxlake opens it (`dagster.yaml`
leaves every other pool at its default limit of 1).
"""

from __future__ import annotations

import os

from pipelines.runtime import accelerator_slots

GPU_SLOTS_ENV = "VOXLAKE_GPU_SLOTS"
"""Overrides the `gpu` limit, e.g. on a cluster whose workers hold more devices than this one."""

CATALOGUE_POOL = "catalogue"
"""The catalogue's writers (`catalogue`, `release`): DuckDB allows one writing process per file."""

GPU_POOL = "gpu"
"""Steps that hold the accelerator (`tokens`, the training stages, `evaluation`)."""


def pool_limits() -> dict[str, int]:
    """Steps of each pool that may run at once on this machine.

    `gpu` is one step per CUDA device; on a machine without one, one per usable
    core (tokenization then runs on the CPU, and each step's torch threads are
    its share of the cores). `$VOXLAKE_GPU_SLOTS` overrides it.
    """
    override = os.environ.get(GPU_SLOTS_ENV)
    gpu = int(override) if override else accelerator_slots()
    return {CATALOGUE_POOL: 1, GPU_POOL: max(1, gpu)}
