"""Assemble the Dagster `Definitions` of one voxlake project.

`dagster dev -m assets.definitions` (what `voxlake ui` runs) loads the project
named by `$VOXLAKE_PROJECT` (default: the current folder): one inventory asset
per source in its `voxlake.yaml`, the per-unit assets (manifest → quality →
tokens → shards → catalogue) and the lake-wide ones (quality report, releases),
then training. Every asset carries source-code references to its step module
(`pipelines/steps/<asset>.py`) and to its declaration (`assets/<group>.py`).

Loading it is light (no torch, transformers, deepspeed or trainer import; the
steps import them when they run), so every run worker and code server starts fast.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import dagster as dg

from assets.catalogue import catalogue, catalogue_sensor
from assets.code_references import with_code_references
from assets.executors import job_executor
from assets.ingest import INGEST_GROUP, build_inventory_asset, build_manifest_asset
from assets.quality import build_quality_asset, quality_report
from assets.releases import release
from assets.resources import PROJECT_RESOURCE_KEY, VoxlakeProject
from assets.tokens import build_tokens_asset
from assets.training import TRAIN_ASSETS, evaluation
from pipelines.project import load_project
from pipelines.tokenizer import configured_tokenizer_sha256

INVENTORY_JOB = "inventory_job"
UNIT_JOB = "unit_job"
LAKE_JOB = "lake_job"
TRAINING_JOB = "training_job"


def build_definitions(project_dir: Path) -> dg.Definitions:
    """The `Definitions` for the project in `project_dir`."""
    with warnings.catch_warnings():
        # Backfill policies and asset-level retry policies are marked beta/preview; they
        # are what voxlake relies on, and the warning would repeat in every process.
        warnings.simplefilter("ignore", dg.BetaWarning)
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return _build_definitions(project_dir)


def _build_definitions(project_dir: Path) -> dg.Definitions:
    project = load_project(project_dir)
    sources = project.config.sources
    execution = project.config.execution
    inventories = [build_inventory_asset(s) for s in sources]
    manifest = build_manifest_asset(sources, execution)
    # Every asset partitioned by unit, in pipeline order; a run carries up to
    # `execution.units_per_run` units through all of them.
    unit_assets = [
        manifest,
        build_quality_asset(project.config.quality, execution),
        build_tokens_asset(
            # The checkpoint's content hash versions the tokens asset; hashing is cached
            # by the checkpoint loader, so a 1.5 GB checkpoint is hashed once per process.
            configured_tokenizer_sha256(project.directory, project.config.tokenizer),
            execution,
        ),
    ]
    # Assets over the whole lake, run after the units: the catalogue folds them in.
    lake_assets = [catalogue, quality_report, release]
    # Training stages on `training.release`, then evaluation of the final checkpoint.
    training_assets = [*TRAIN_ASSETS, evaluation]
    return dg.Definitions(
        assets=with_code_references([*inventories, *unit_assets, *lake_assets, *training_assets]),
        jobs=[
            dg.define_asset_job(
                INVENTORY_JOB,
                selection=dg.AssetSelection.groups(INGEST_GROUP)
                - dg.AssetSelection.assets(manifest),
                description="Plan the work units of every source.",
            ),
            dg.define_asset_job(
                UNIT_JOB,
                selection=dg.AssetSelection.assets(*unit_assets),
                description="Carry a range of work units through every per-unit step.",
            ),
            dg.define_asset_job(
                LAKE_JOB,
                selection=dg.AssetSelection.assets(*lake_assets),
                description="Lake-wide assets: the catalogue, reports and releases.",
            ),
            dg.define_asset_job(
                TRAINING_JOB,
                selection=dg.AssetSelection.assets(*training_assets),
                description="The four training stages on training.release, then evaluation.",
            ),
        ],
        sensors=[catalogue_sensor],
        executor=job_executor(execution),
        resources={
            PROJECT_RESOURCE_KEY: VoxlakeProject(project_dir=str(project.directory)),
            "pipes_subprocess_client": dg.PipesSubprocessClient(),
        },
    )


def _project_dir_from_env() -> Path:
    return Path(os.environ.get("VOXLAKE_PROJECT") or Path.cwd())


@dg.definitions
def defs() -> dg.Definitions:
    """Loaded by `dagster dev -m assets.definitions`: the project of `$VOXLAKE_PROJECT`."""
    return build_definitions(_project_dir_from_env())
