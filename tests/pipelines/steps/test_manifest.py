"""The manifest step's pure check: `accounting` passes when every input is one manifest row
with a unique id, and fails (with the same figures the asset shows) when a row is lost or
an id repeats."""

from __future__ import annotations

from collections import Counter

import polars as pl

from pipelines.steps.manifest import ManifestSummary, check_accounting


def _summary(n_ok: int, n_rejected: int) -> ManifestSummary:
    return ManifestSummary(
        unit="s.all.00000",
        n_inputs=n_ok + n_rejected,
        n_ok=n_ok,
        n_rejected=n_rejected,
        rejections=Counter({"missing_audio": n_rejected}),
    )


def _manifest(ids: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"utterance_id": ids})


def test_accounting_passes_when_every_input_is_one_row() -> None:
    outcome = check_accounting(3, _summary(2, 1), _manifest(["s/a", "s/b", "s/c"]))
    assert outcome.passed and outcome.severity == "error" and outcome.description is None
    assert outcome.metadata == {"inputs": 3, "rows": 3, "ok_plus_rejected": 3, "unique_ids": 3}


def test_accounting_fails_when_a_row_is_lost() -> None:
    outcome = check_accounting(3, _summary(2, 1), _manifest(["s/a", "s/b"]))
    assert not outcome.passed
    assert outcome.metadata["rows"] == 2
    assert outcome.description == "3 inputs but 2 rows (2 unique ids)"


def test_accounting_fails_when_an_id_repeats() -> None:
    outcome = check_accounting(3, _summary(2, 1), _manifest(["s/a", "s/a", "s/c"]))
    assert not outcome.passed and outcome.metadata["unique_ids"] == 2


def test_accounting_fails_when_the_plan_had_more_inputs() -> None:
    assert not check_accounting(4, _summary(2, 1), _manifest(["s/a", "s/b", "s/c"])).passed
