"""Everything Dagster: assets, checks, partitions, resources and the `Definitions`.

The work itself lives in `pipelines/`, `quality/`, ...; these modules only wire
it to Dagster and report what happened.
"""
