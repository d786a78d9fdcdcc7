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
