"""The outcome of one asset check as plain data, what every `check_<name>()` step function returns.

`assets/` turns a `CheckOutcome` into a Dagster `AssetCheckResult` (same passed flag,
severity, description and metadata); the command line and the audit read it as it is.
Metadata values are JSON-able (numbers, strings, lists, dicts), so they need no Dagster
type: Dagster stores a list or a dict as JSON metadata.

>>> outcome = CheckOutcome(passed=False, metadata={"rows": 3}, description="1 row lost")
>>> (outcome.passed, outcome.severity)
(False, 'error')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warn"]
"""`error` fails a blocking check (downstream steps do not run); `warn` is only shown."""


@dataclass(frozen=True)
class CheckOutcome:
    """Whether one asset check passed, with the figures it looked at.

    `metadata` maps a name to a JSON-able value; `description` says what is wrong
    (None when there is nothing to add).
    """

    passed: bool
    metadata: dict[str, Any] = field(default_factory=dict)
    description: str | None = None
    severity: Severity = "error"


def combine_outcomes(outcomes: dict[str, CheckOutcome]) -> CheckOutcome:
    """One check over several work units, from each unit's own outcome.

    A run carries many units, and Dagster records one result per check and step:
    it passes when every unit passed; a failing unit's severity decides its
    severity (`error` if any failing unit's is); `failed_units` names them, and
    `units` holds each unit's own figures. With one unit it is that unit's outcome.

    >>> ok = CheckOutcome(passed=True, metadata={"rows": 3})
    >>> bad = CheckOutcome(passed=False, metadata={"rows": 2}, description="1 row lost")
    >>> combined = combine_outcomes({"a.x.00000": ok, "a.x.00001": bad})
    >>> combined.passed, combined.severity, combined.metadata["failed_units"]
    (False, 'error', ['a.x.00001'])
    >>> combined.description
    'a.x.00001: 1 row lost'
    """
    if len(outcomes) == 1:
        return next(iter(outcomes.values()))
    failed = {unit: o for unit, o in sorted(outcomes.items()) if not o.passed}
    severity: Severity = (
        "error" if any(o.severity == "error" for o in failed.values()) or not failed else "warn"
    )
    description = "; ".join(f"{unit}: {o.description or 'failed'}" for unit, o in failed.items())
    return CheckOutcome(
        passed=not failed,
        metadata={
            "n_units": len(outcomes),
            "failed_units": list(failed),
            "units": {unit: o.metadata for unit, o in sorted(outcomes.items())},
        },
        description=description or None,
        severity=severity,
    )
