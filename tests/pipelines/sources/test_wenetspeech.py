"""WenetSpeech connector: the committed corpus through inventory and manifest, quirks included."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from pipelines.lake.paths import Lake
from pipelines.sources import wenetspeech
from pipelines.sources.wenetspeech import clean_text, split_of
from pipelines.steps.inventory import inventory_source
from pipelines.steps.manifest import manifest_records
from pipelines.units import read_unit_items
from schemas import ManifestRecord, SourceConfig, UnitLimits, UnitPlan
from schemas.sources import WenetSpeechOptions

DURATION_TOLERANCE_S = 1e-3
FIRST = "Y0000000000_--5llN02F84"  # a train/youtube recording, no defects
PODCAST = "X0000000001_4RqlbH2n7Wc"  # batch_id, spaces/NBSP/Ω, one segment past the end


def _ingest(
    root: Path, work: Path, limits: UnitLimits | None = None, **options: object
) -> tuple[list[UnitPlan], dict[str, ManifestRecord]]:
    """Inventory + manifest of the corpus at `root`: the plans and each input's row by native id."""
    source = SourceConfig(name="wenet", kind="wenetspeech", path=str(root), options=options)
    lake = Lake(work / "lake")
    plans = inventory_source(source, work, lake, limits or UnitLimits())
    records: dict[str, ManifestRecord] = {}
    for plan in plans:
        for record in manifest_records(source, work, lake, plan.unit):
            native_id = record.utterance_id.removeprefix("wenet/")
            assert native_id not in records, f"{native_id} appears twice"
            records[native_id] = record
    return plans, records


@pytest.fixture(scope="module")
def ingested(
    corpora: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[list[UnitPlan], dict[str, ManifestRecord]]:
    return _ingest(corpora / "wenetspeech", tmp_path_factory.mktemp("wenet"))


def test_every_input_matches_the_expected_outcome(
    ingested: tuple[list[UnitPlan], dict[str, ManifestRecord]],
    load_expected: Callable[[str], list[dict]],
    assert_matches_expected: Callable[..., None],
) -> None:
    plans, records = ingested
    assert_matches_expected(
        plans, records, load_expected("wenetspeech"), DURATION_TOLERANCE_S, compare_sample_rate=True
    )


def test_first_segment_literally(
    ingested: tuple[list[UnitPlan], dict[str, ManifestRecord]],
) -> None:
    record = ingested[1][f"{FIRST}_S00000"]
    assert record.status == "ok"
    assert record.text == "怎么样这些日子住得还习惯吧"
    assert record.speaker is None
    assert record.language == "zh"
    assert record.split == "train"
    assert record.subsets == ["L", "M", "S"]
    assert record.audio_path == f"audio/train/youtube/B00000/{FIRST}.opus"
    assert record.offset_s == 1.0  # the recording's 1 s lead-in
    assert record.duration_s == pytest.approx(5.0)
    extra = json.loads(record.extra)
    assert extra["aid"] == FIRST
    assert extra["source"] == "youtube"
    assert extra["tags"] == ["drama"]
    assert extra["confidence"] == 1.0
    assert "batch_id" not in extra
    assert extra["recording_duration_s"] > 15.0


def test_text_quirks_batch_id_and_confidence(
    ingested: tuple[list[UnitPlan], dict[str, ManifestRecord]],
) -> None:
    records = ingested[1]
    record = records[f"{PODCAST}_S00000"]
    assert record.text == "今天天气很好"
    extra = json.loads(record.extra)
    assert extra["raw_text"] == "今天 天气\u00a0很好Ω"
    assert extra["batch_id"] == "B00000"
    assert records[f"{PODCAST}_S00001"].text == "新闻播报现在开始"
    weak = records[f"{FIRST}_S00002"]
    assert weak.status == "ok" and weak.subsets == ["W"]
    assert json.loads(weak.extra)["confidence"] == pytest.approx(0.8)
    assert clean_text("a b\u00a0cΩ") == "abc"


def test_each_broken_input_is_rejected_with_its_reason(
    ingested: tuple[list[UnitPlan], dict[str, ManifestRecord]],
) -> None:
    records = ingested[1]
    out_of_range = records[f"{PODCAST}_S00003"]
    assert out_of_range.reject_reason == "segment_out_of_range"
    assert out_of_range.duration_s == pytest.approx(4.0)
    swapped = records["X0000000002_Tq0aZ7pLm3s_S00001"]
    assert swapped.reject_reason == "invalid_timing"
    assert swapped.offset_s == 8.25 and swapped.duration_s is None
    assert swapped.split == "dev"
    for index in (0, 1):  # every segment of a recording whose opus file is absent
        assert records[f"Y0000000004_pP8sLr2TzQ0_S{index:05d}"].reject_reason == "missing_audio"
    escaped = records["X0000000005_zz0utsIde00_S00000"]
    assert escaped.reject_reason == "path_escape"
    assert escaped.audio_path == "../../outside.opus"
    assert escaped.split == "train"  # from its subsets: the path names no split


def test_a_recording_is_one_group_and_units_are_named_by_split(
    corpora: Path, tmp_path: Path
) -> None:
    plans, _ = _ingest(corpora / "wenetspeech", tmp_path, UnitLimits(max_utterances=1))
    lake = Lake(tmp_path / "lake")
    aids_by_unit = {
        plan.unit: {
            i.extra["aid"] for i in read_unit_items(lake.inventory_items("wenet", plan.unit))
        }
        for plan in plans
    }
    # Seven entries, each whole in its own unit (the last one's `segments` is not a list:
    # one rejected item stands for it).
    assert len(plans) == 7
    assert all(len(aids) == 1 for aids in aids_by_unit.values())
    assert [p.unit for p in plans] == [
        "wenet.dev.00000",
        "wenet.test_net.00000",
        "wenet.train.00000",
        "wenet.train.00001",
        "wenet.train.00002",
        "wenet.train.00003",
        "wenet.train.00004",
    ]


def test_interleaved_splits_still_fill_units(corpora: Path, tmp_path: Path) -> None:
    # The fixture lists train, dev, test_net, then train again: the two train
    # recordings share one open unit instead of producing two half-empty ones.
    plans, _ = _ingest(corpora / "wenetspeech", tmp_path, UnitLimits(max_utterances=100))
    units = [p.unit for p in plans]
    assert units == ["wenet.dev.00000", "wenet.test_net.00000", "wenet.train.00000"]


def test_subsets_option_keeps_only_matching_segments(corpora: Path, tmp_path: Path) -> None:
    plans, records = _ingest(corpora / "wenetspeech", tmp_path, subsets=["S"])
    assert sorted(records) == [
        f"{PODCAST}_S00000",
        f"{FIRST}_S00000",
        f"{FIRST}_S00000#2",  # listed twice, the repeat too is in S
        "Y0000000004_pP8sLr2TzQ0_S00000",
        # Its subsets cannot be read, so it is kept (and rejected) whatever the filter.
        "Y0000000009_flattened:segments",
    ]
    # Filtered-out segments are not inputs at all: nothing counts them.
    assert sum(p.n_inputs for p in plans) == 5
    _, dev = _ingest(corpora / "wenetspeech", tmp_path / "dev", subsets=["DEV", "TEST_MEETING"])
    dev.pop("Y0000000009_flattened:segments")
    assert {r.split for r in dev.values()} == {"dev"} and len(dev) == 3


def test_metadata_is_streamed_not_loaded(corpora: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("WenetSpeech.json must be streamed, not loaded whole")

    monkeypatch.setattr(json, "load", refuse)
    monkeypatch.setattr(json, "loads", refuse)
    groups = list(wenetspeech.inventory(corpora / "wenetspeech", WenetSpeechOptions()))
    assert sum(len(g.items) for g in groups) == 19


def test_split_comes_from_the_path_else_the_subsets() -> None:
    assert split_of("audio/test_meeting/third_party/B00000/a.opus", ["TEST_MEETING"]) == (
        "test_meeting"
    )
    assert split_of("elsewhere/a.opus", ["TEST_NET"]) == "test_net"
    assert split_of("../../outside.opus", ["L", "M"]) == "train"


def test_unusable_segments_are_malformed_records(tmp_path: Path) -> None:
    document = {
        "dataset": "WenetSpeech",
        "audios": [
            {
                "aid": "A1",
                "duration": 60.0,
                "path": "audio/train/podcast/B00000/A1.opus",
                "segments": [
                    {
                        "sid": "A1_S0",
                        "begin_time": "1.0",
                        "end_time": 2.0,
                        "text": "好",
                        "subsets": ["L"],
                    },
                    {"begin_time": 1.0, "end_time": 2.0, "text": "好", "subsets": ["L"]},
                    {
                        "sid": "A1_S2",
                        "begin_time": 3.0,
                        "end_time": 3.0,
                        "text": "好",
                        "subsets": ["L"],
                    },
                ],
            }
        ],
        "notes": "",
    }
    (tmp_path / "WenetSpeech.json").write_text(json.dumps(document), encoding="utf-8")
    (group,) = wenetspeech.inventory(tmp_path, WenetSpeechOptions())
    problems = {i.native_id: i.problem for i in group.items}
    assert problems == {
        "A1_S0": "malformed_record",
        "A1:S1": "malformed_record",
        "A1_S2": "invalid_timing",
    }


def test_broken_json_raises_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "WenetSpeech.json").write_text('{"audios": [{"aid": "A1", ', encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        list(wenetspeech.inventory(tmp_path, WenetSpeechOptions()))
