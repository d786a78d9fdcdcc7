"""Source-code references, so the Dagster UI links each asset to the code that does its work.

Asset `X` does its work in `pipelines/steps/X.py` (the four `train_*` stages share
`pipelines/steps/train.py`; `inventory/<source>` is `pipelines/steps/inventory.py`)
and is declared in `assets/<group>.py`. `with_code_references` attaches both as
`LocalFileCodeReference`s: the step module first, labelled, then the declaring
function's file and line (Dagster's `with_source_code_references`).
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

STEPS_PACKAGE = "pipelines.steps"
TRAIN_STAGE_PREFIX = "train_"
CODE_REFERENCES_KEY = "dagster/code_references"


def step_module(key: dg.AssetKey) -> str:
    """The dotted name of the step module doing asset `key`'s work.

    >>> step_module(dg.AssetKey(["inventory", "libri"])), step_module(dg.AssetKey("train_sft"))
    ('pipelines.steps.inventory', 'pipelines.steps.train')
    """
    name = key.path[0]
    if name.startswith(TRAIN_STAGE_PREFIX):
        name = "train"
    return f"{STEPS_PACKAGE}.{name}"


def step_file(key: dg.AssetKey) -> Path:
    """The file of `step_module(key)`, found without importing it (ValueError if there is none)."""
    module = step_module(key)
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ValueError(f"asset {key.to_user_string()} has no step module {module}")
    return Path(spec.origin)


def _with_step_reference(assets_def: dg.AssetsDefinition) -> dg.AssetsDefinition:
    def add(spec: dg.AssetSpec) -> dg.AssetSpec:
        path = step_file(spec.key)
        reference = dg.LocalFileCodeReference(
            file_path=str(path), label=f"step: {step_module(spec.key).replace('.', '/')}.py"
        )
        return spec.merge_attributes(
            metadata={
                CODE_REFERENCES_KEY: dg.CodeReferencesMetadataValue(code_references=[reference])
            }
        )

    return assets_def.map_asset_specs(add)


def with_code_references(
    assets_defs: Sequence[dg.AssetsDefinition],
) -> list[dg.AssetsDefinition]:
    """`assets_defs` with references to their step module and their declaration attached."""
    # The code-reference API is marked beta; its warnings would reach every command's
    # terminal each time the definitions load.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        stepped = [_with_step_reference(a) for a in assets_defs]
        return list(dg.with_source_code_references(stepped))  # type: ignore[arg-type]
