"""`CheckOutcome`, what every step's `check_<name>()` returns: an error unless told otherwise,
and its module's examples run."""

from __future__ import annotations

import doctest

import pipelines.steps.checks as checks
from pipelines.steps.checks import CheckOutcome


def test_an_outcome_is_an_error_without_description_by_default() -> None:
    outcome = CheckOutcome(passed=True)
    assert (outcome.severity, outcome.description, outcome.metadata) == ("error", None, {})


def test_module_doctests() -> None:
    result = doctest.testmod(checks)
    assert result.attempted > 0 and result.failed == 0
