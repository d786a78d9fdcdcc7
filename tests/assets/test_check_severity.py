"""A WARN-severity check that fails is a warning of `voxlake run`, not a failure; an ERROR
one fails the run and names its units. Checked on real Dagster check evaluations."""

from __future__ import annotations

import dagster as dg

from assets.runner import RunReport
from assets.submit import RunOutcome, _check_event


def _evaluation(severity: dg.AssetCheckSeverity, units: list[str]) -> dg.AssetCheckEvaluation:
    return dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey("quality"),
        check_name="distribution",
        passed=False,
        metadata={"failed_units": dg.MetadataValue.json(units)},
        severity=severity,
        description="SNR distribution is implausible",
    )


def test_a_failed_warn_check_is_a_warning_and_the_run_still_succeeds() -> None:
    outcome = RunOutcome(run_id="r1", status=dg.DagsterRunStatus.SUCCESS)
    _check_event(outcome, _evaluation(dg.AssetCheckSeverity.WARN, ["src.a.00000"]))
    assert outcome.failures == [] and outcome.failed_units == set()
    assert outcome.warnings == ["check quality:distribution: SNR distribution is implausible"]
    report = RunReport(warnings=list(outcome.warnings), failures=list(outcome.failures))
    assert report.success  # `voxlake run` exits 0 and prints the warning


def test_a_failed_error_check_fails_the_run_naming_its_units() -> None:
    outcome = RunOutcome(run_id="r1", status=dg.DagsterRunStatus.SUCCESS)
    _check_event(outcome, _evaluation(dg.AssetCheckSeverity.ERROR, ["src.a.00000"]))
    assert outcome.failed_units == {"src.a.00000"} and outcome.warnings == []
    report = RunReport(failures=list(outcome.failures))
    assert not report.success
