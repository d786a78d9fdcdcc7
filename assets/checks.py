"""Asset check results from the steps' `CheckOutcome`s: the one mapping to Dagster's type."""

from __future__ import annotations

import dagster as dg

from pipelines.steps.checks import CheckOutcome

_SEVERITY = {"error": dg.AssetCheckSeverity.ERROR, "warn": dg.AssetCheckSeverity.WARN}


def check_result(check_name: str, outcome: CheckOutcome) -> dg.AssetCheckResult:
    """The `AssetCheckResult` of check `check_name` of the asset being materialised.

    Lists and dicts in the outcome's metadata become JSON metadata, numbers and
    strings stay what they are (Dagster's own normalisation).
    """
    return dg.AssetCheckResult(
        check_name=check_name,
        passed=outcome.passed,
        severity=_SEVERITY[outcome.severity],
        metadata=outcome.metadata,
        description=outcome.description,
    )
