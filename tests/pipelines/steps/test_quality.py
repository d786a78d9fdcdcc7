"""The quality step over every bundled corpus: each input gets one decision, ingest
rejections keep their reason, every quality defect is rejected by the rule that
the generator planted, and every clean utterance is accepted with its measures
and written to the unit's audio shards, read back by `webdataset`. A policy edit
re-judges from the stored measures without decoding: one that changes no decision
writes no shard; a stricter one rewrites the audio shards from their own bytes; a
looser one decodes again. Its pure checks: `accounting` fails when a decision is
lost or an accepted utterance is missing from the shards, `distribution` warns
when every duration is the same."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import polars as pl
import pytest
import soundfile as sf
import webdataset as wds

from pipelines.demo.project import DEMO_SOURCES, demo_config
from pipelines.project import Project, init_project
from pipelines.shards.reader import read_index
from pipelines.steps.inventory import inventory_source
from pipelines.steps.manifest import build_manifest
from pipelines.steps.quality import (
    QualitySummary,
    assess_unit,
    check_accounting,
    check_distribution,
)
from schemas import AudioSampleMeta, ShardIndexRow

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


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the name of every recording the real decoder decodes from now on."""
    import pipelines.audio.prepare as prepare_module

    calls: list[str] = []
    real_decode = prepare_module.decode

    def counting_decode(source, name, **options):  # type: ignore[no-untyped-def]
        calls.append(name)
        return real_decode(source, name, **options)

    monkeypatch.setattr(prepare_module, "decode", counting_decode)
    return calls


def test_a_recording_is_decoded_once_per_unit(assessed, monkeypatch: pytest.MonkeyPatch) -> None:
    project, _ = assessed
    calls = _count_decodes(monkeypatch)
    # Without stored decisions the unit is decoded from the source.
    project.lake.quality("wenetspeech", "wenetspeech.train.00000").unlink()
    source = project.config.source("wenetspeech")
    summary = assess_unit(project, source, "wenetspeech.train.00000")
    assert summary.decoded
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


def _audio_row(utterance_id: str) -> ShardIndexRow:
    return ShardIndexRow(
        key=utterance_id.replace("/", "__"),
        utterance_id=utterance_id,
        source="s",
        unit="s.all.00000",
        shard="shards/s/s.all.00000/audio-000000.tar",
        shard_sha256="0" * 64,
        shard_bytes=10240,
        flac_offset=512,
        flac_size=1000,
        json_offset=2048,
        json_size=100,
        duration_s=2.0,
        pcm_sha256="1" * 64,
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
        audio_rows=[_audio_row(u) for u in frame["utterance_id"].to_list()],
    )


def test_accounting_check_passes_with_one_decision_per_row() -> None:
    outcome = check_accounting(_quality_summary(_decisions(3), 3))
    assert outcome.passed and outcome.severity == "error"
    assert outcome.metadata == {
        "manifest_rows": 3,
        "accepted_plus_rejected": 3,
        "rows": 3,
        "in_audio_shards": 3,
        "missing_from_shards": [],
        "unexpected_in_shards": [],
    }


def test_accounting_check_fails_when_an_accepted_utterance_is_not_in_a_shard() -> None:
    summary = _quality_summary(_decisions(3), 3)
    summary.audio_rows = summary.audio_rows[1:]
    outcome = check_accounting(summary)
    assert not outcome.passed and outcome.metadata["missing_from_shards"] == ["s/0"]


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


# --- audio shards and re-judging ------------------------------------------------------


def test_every_accepted_utterance_is_in_the_audio_shards_read_back_by_webdataset(
    assessed,
) -> None:
    project, frame = assessed
    accepted = frame.filter(pl.col("status") == "accepted")
    folders = sorted(project.lake.shards_root().glob("*/*/"))
    assert folders
    seen: dict[str, AudioSampleMeta] = {}
    for folder in folders:
        tars = sorted(str(p) for p in folder.glob("audio-*.tar"))
        index = read_index(folder)
        keys = [row.key for row in index]
        read_keys = []
        if not tars:  # a unit that accepted nothing has an empty index and no shard
            assert keys == []
            continue
        for sample in wds.WebDataset(tars, shardshuffle=False, empty_check=False):
            assert {k for k in sample if not k.startswith("__")} == {"flac", "json"}
            meta = AudioSampleMeta.model_validate_json(sample["json"])
            audio, rate = sf.read(io.BytesIO(sample["flac"]), dtype="float32")
            assert rate == 16000 and audio.ndim == 1
            assert len(audio) / 16000 == pytest.approx(meta.duration_s, abs=1e-6)
            assert "policy_version" not in json.loads(sample["json"])
            read_keys.append(sample["__key__"])
            seen[meta.utterance_id] = meta
        assert read_keys == keys  # index order is tar order
    assert set(seen) == set(accepted["utterance_id"].to_list())
    by_id = {r["utterance_id"]: r for r in accepted.to_dicts()}
    for utterance_id, meta in seen.items():
        assert meta.pcm_sha256 == by_id[utterance_id]["pcm_sha256"]
        assert meta.snr_db == by_id[utterance_id]["wada_snr_db"]


def _files(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.iterdir())}


def _with_policy(project: Project, **changes: object) -> Project:
    policy = project.config.quality.model_copy(update=changes)
    return dataclasses.replace(
        project, config=project.config.model_copy(update={"quality": policy})
    )


def test_a_policy_edit_that_changes_no_decision_rewrites_no_shard(
    assessed, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, _ = assessed
    source = project.config.source("librispeech")
    unit = sorted(p.stem for p in (project.lake.quality_dir() / "librispeech").glob("*.parquet"))[0]
    before = assess_unit(project, source, unit)
    shards_before = _files(project.lake.shards_dir("librispeech", unit))
    calls = _count_decodes(monkeypatch)
    # 60 s instead of 30 s: no bundled utterance is that long, so no decision changes.
    edited = _with_policy(project, max_duration_s=60.0)
    assert edited.config.quality.version() != project.config.quality.version()
    after = assess_unit(edited, source, unit)
    assert calls == []
    assert (after.decoded, after.audio_written) == (False, False)
    assert _files(project.lake.shards_dir("librispeech", unit)) == shards_before
    assert after.audio_index_sha256 == before.audio_index_sha256
    decisions = ["utterance_id", "status", "reject_rule"]
    assert after.frame.select(decisions).equals(before.frame.select(decisions))
    assert after.frame["policy_version"].unique().to_list() == [edited.config.quality.version()]
    assess_unit(project, source, unit)  # back to the fixture's policy


def test_a_stricter_policy_rewrites_the_audio_shards_from_their_own_bytes(
    assessed, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, _ = assessed
    source = project.config.source("librispeech")
    unit = sorted(p.stem for p in (project.lake.quality_dir() / "librispeech").glob("*.parquet"))[0]
    before = assess_unit(project, source, unit)
    snrs = sorted(before.frame.filter(pl.col("status") == "accepted")["wada_snr_db"].to_list())
    assert len(snrs) >= 2
    old_flac = _flac_by_id(project, unit)
    calls = _count_decodes(monkeypatch)
    stricter = _with_policy(project, min_snr_db=snrs[len(snrs) // 2] + 1e-6)
    after = assess_unit(stricter, source, unit)
    assert calls == []  # re-judged and re-packed, never decoded
    assert (after.decoded, after.audio_written) == (False, True)
    kept = set(after.frame.filter(pl.col("status") == "accepted")["utterance_id"].to_list())
    assert 0 < len(kept) < len(snrs)
    new_flac = _flac_by_id(project, unit)
    assert set(new_flac) == kept
    assert all(new_flac[u] == old_flac[u] for u in kept)
    assert check_accounting(after).passed

    # Back to the looser policy: the newly accepted audio is in no shard, so it decodes.
    again = assess_unit(project, source, unit)
    assert again.decoded and calls
    assert _flac_by_id(project, unit) == old_flac


def _flac_by_id(project: Project, unit: str) -> dict[str, bytes]:
    from pipelines.shards.reader import read_members

    rows = read_index(project.lake.shards_dir("librispeech", unit))
    flacs = read_members(project.lake.root, rows, "flac")
    return {row.utterance_id: flac for row, flac in zip(rows, flacs, strict=True)}


def test_whole_16k_mono_flac_files_are_stored_as_their_own_frames_and_the_rest_encoded(
    assessed,
) -> None:
    """A LibriSpeech utterance's member is its source's frames (`passthrough_flac`), any
    other is our encoder's FLAC of the PCM; every member decodes to the PCM whose sha256
    the index holds."""
    import hashlib

    from pipelines.audio.flac import passthrough_flac
    from pipelines.audio.opener import source_opener
    from pipelines.audio.pcm import flac16_of_pcm
    from pipelines.lake.views import unit_manifest
    from pipelines.shards.reader import read_members

    project, _ = assessed
    passed_through = encoded = 0
    for source in project.config.sources:
        with source_opener(source, project.directory) as opener:
            for folder in sorted(project.lake.shards_root().glob(f"{source.name}/*/")):
                unit = folder.name
                items = unit_manifest(project.lake, source.name, unit).to_dicts()
                manifest = {item["utterance_id"]: item for item in items}
                rows = read_index(folder)
                flacs = read_members(project.lake.root, rows, "flac")
                for row, flac in zip(rows, flacs, strict=True):
                    pcm, rate = sf.read(io.BytesIO(flac), dtype="int16")
                    assert rate == 16000 and pcm.ndim == 1
                    assert hashlib.sha256(pcm.tobytes()).hexdigest() == row.pcm_sha256
                    item = manifest[row.utterance_id]
                    opened = opener.open(item["audio_path"], item["audio_member"])
                    if isinstance(opened, io.BytesIO):
                        data = opened.getvalue()
                    else:
                        data = opened.read_bytes()
                    expected = None if item["is_segment"] else passthrough_flac(data, pcm.size)
                    if expected is not None:
                        assert flac == expected
                        assert flac[4] == 0x80  # STREAMINFO is the only metadata block
                        passed_through += 1
                    else:
                        assert flac == flac16_of_pcm(pcm)
                        encoded += 1
    assert passed_through >= 5 and encoded >= 5
