"""The quality step over every bundled corpus: each input gets one decision, ingest
rejections keep their reason, every quality defect is rejected by the rule that
the generator planted, and every clean utterance is accepted with its measures.
Its pure checks: `accounting` fails when a decision is lost, `distribution` warns
when every duration is the same."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipelines.demo.project import DEMO_SOURCES, demo_config
from pipelines.project import Project, init_project
from pipelines.steps.inventory import inventory_source
from pipelines.steps.manifest import build_manifest
from pipelines.steps.quality import (
    QualitySummary,
    assess_unit,
    check_accounting,
    check_distribution,
)

EXPECTED_NAME = {
    "librispeech": "librispeech",
    "wenetspeech": "wenetspeech",
    "emilia": "emilia",
    "custom_folder": "custom_folder",
    "custom_table": "custom_table",
    "custom_vita": "custom_vita",
    "custom_hf": "custom_hf_disk",
    "custom_parquet": "custom_hf_parquet",
}


@pytest.fixture(scope="module")
def assessed(
    tmp_path_factory: pytest.TempPathFactory, corpora: Path
) -> tuple[Project, pl.DataFrame]:
    folder = tmp_path_factory.mktemp("q") / "proj"
    project = init_project(folder, demo_config(folder, corpora))
    frames = []
    for source in project.config.sources:
        plans = inventory_source(source, project.directory, project.lake, project.config.units)
        for plan in plans:
            build_manifest(source, project.directory, project.lake, plan.unit, plan.n_inputs)
            frames.append(assess_unit(project, source, plan.unit).frame)
    return project, pl.concat(frames)


def test_every_input_has_exactly_one_decision(assessed, load_expected) -> None:
    _, frame = assessed
    assert frame["utterance_id"].n_unique() == frame.height
    total = sum(len(load_expected(EXPECTED_NAME[name])) for name, *_ in DEMO_SOURCES)
    assert frame.height == total


def test_decisions_match_the_planted_defects(assessed, load_expected) -> None:
    _, frame = assessed
    by_id = {r["utterance_id"]: r for r in frame.to_dicts()}
    for name, *_ in DEMO_SOURCES:
        for entry in load_expected(EXPECTED_NAME[name]):
            row = by_id[f"{name}/{entry['native_id']}"]
            if entry["status"] == "rejected":
                assert (row["status"], row["reject_stage"], row["reject_rule"]) == (
                    "rejected",
                    "ingest",
                    entry["reason"],
                ), row
            elif entry["later_reason"] is not None:
                assert (row["status"], row["reject_stage"], row["reject_rule"]) == (
                    "rejected",
                    "policy",
                    entry["later_reason"],
                ), row
                assert row["reject_message"]
            else:
                assert row["status"] == "accepted", row
                assert row["wada_snr_db"] is not None and row["pcm_sha256"]
                assert row["duration_s"] == pytest.approx(entry["duration_s"], abs=0.06)


def test_rejections_carry_value_threshold_and_policy_version(assessed) -> None:
    project, frame = assessed
    version = project.config.quality.version()
    assert frame["policy_version"].unique().to_list() == [version]
    policy_rejects = frame.filter(pl.col("reject_stage") == "policy")
    assert policy_rejects.height > 0
    for row in policy_rejects.to_dicts():
        if row["reject_rule"] != "keep_subsets":
            assert row["reject_value"] is not None and row["reject_threshold"] is not None
        assert row["reject_rule"] == row["failed_rules"][0]


def test_same_audio_gives_the_same_pcm_hash(assessed) -> None:
    _, frame = assessed
    accepted = frame.filter(pl.col("status") == "accepted")
    assert accepted["pcm_sha256"].n_unique() == accepted.height  # distinct utterances


def test_rerun_gives_identical_bytes(assessed) -> None:
    project, _ = assessed
    source = project.config.source("wenetspeech")
    path = next((project.lake.root / "quality" / "wenetspeech").glob("*.parquet"))
    before = path.read_bytes()
    assess_unit(project, source, path.stem)
    assert path.read_bytes() == before


def test_a_recording_is_decoded_once_per_unit(assessed, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipelines.audio.prepare as prepare_module

    project, _ = assessed
    calls: list[str] = []
    real_decode = prepare_module.decode

    def counting_decode(source, name):  # type: ignore[no-untyped-def]
        calls.append(name)
        return real_decode(source, name)

    monkeypatch.setattr(prepare_module, "decode", counting_decode)
    source = project.config.source("wenetspeech")
    summary = assess_unit(project, source, "wenetspeech.train.00000")
    decoded = summary.frame.filter(
        pl.col("reject_stage").is_null() | (pl.col("reject_stage") == "policy")
    )
    assert decoded.height > len(calls) >= 1
    assert len(calls) == len(set(calls))


def _decisions(n: int, duration_s: float = 2.0, snr_db: float = 20.0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "utterance_id": [f"s/{i}" for i in range(n)],
            "status": ["accepted"] * n,
            "reject_stage": pl.Series([None] * n, dtype=pl.String),
            "wada_snr_db": [snr_db + i for i in range(n)],
            "duration_s": [duration_s + 0.5 * i for i in range(n)],
        }
    )


def _quality_summary(frame: pl.DataFrame, n_manifest_rows: int) -> QualitySummary:
    return QualitySummary(
        unit="s.all.00000",
        path=Path("quality.parquet"),
        sha256="0" * 64,
        policy_version="v1",
        frame=frame,
        n_manifest_rows=n_manifest_rows,
        n_accepted=frame.height,
    )


def test_accounting_check_passes_with_one_decision_per_row() -> None:
    outcome = check_accounting(_quality_summary(_decisions(3), 3))
    assert outcome.passed and outcome.severity == "error"
    assert outcome.metadata == {"manifest_rows": 3, "accepted_plus_rejected": 3, "rows": 3}


def test_accounting_check_fails_when_a_decision_is_lost() -> None:
    summary = _quality_summary(_decisions(3), 3)
    summary.frame = summary.frame.slice(1)
    outcome = check_accounting(summary)
    assert not outcome.passed and outcome.metadata["rows"] == 2


def test_accounting_check_fails_on_a_repeated_id() -> None:
    frame = _decisions(3).with_columns(pl.lit("s/0").alias("utterance_id"))
    assert not check_accounting(_quality_summary(frame, 3)).passed


def test_distribution_check_passes_on_varied_measures() -> None:
    outcome = check_distribution(_decisions(6))
    assert outcome.passed and outcome.severity == "warn" and outcome.description is None
    assert outcome.metadata == {"measured": 6}


def test_distribution_check_warns_when_every_duration_is_the_same() -> None:
    frame = _decisions(6).with_columns(pl.lit(3.0).alias("duration_s"))
    outcome = check_distribution(frame)
    assert not outcome.passed and outcome.severity == "warn"
    assert outcome.description == "all 6 durations are 3.000 s"


def test_distribution_check_counts_only_measured_rows() -> None:
    frame = _decisions(6).with_columns(
        pl.when(pl.int_range(pl.len()) < 2)
        .then(pl.lit("ingest"))
        .otherwise(pl.lit(None))
        .alias("reject_stage")
    )
    assert check_distribution(frame).metadata == {"measured": 4}
