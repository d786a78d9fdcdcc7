"""The one dynamic partitions definition every per-unit asset shares."""

from __future__ import annotations

import dagster as dg

UNITS_PARTITIONS_NAME = "units"

# Inventory registers unit keys here; manifest (and later steps) are partitioned by
# it, so the mapping between per-unit assets is the identity.
units_partitions = dg.DynamicPartitionsDefinition(name=UNITS_PARTITIONS_NAME)
