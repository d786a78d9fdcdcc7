"""Emilia connector: the committed tars through inventory and manifest, pairing and defects."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from pipelines.lake.paths import Lake
from pipelines.sources import emilia
from pipelines.sources.emilia import sample_key
from pipelines.steps.inventory import inventory_source
from pipelines.steps.manifest import manifest_records
from schemas import ManifestRecord, SourceConfig, UnitLimits, UnitPlan
from schemas.sources import EmiliaOptions

DURATION_TOLERANCE_S = 1e-3  # Emilia declares durations; no header is read for them
EN_TAR = "Emilia/EN/EN-B000000.tar"


def _ingest(
    root: Path, work: Path, **options: object
) -> tuple[list[UnitPlan], dict[str, ManifestRecord]]:
    """Inventory + manifest of the corpus at `root`: the plans and each input's row by native id."""
    source = SourceConfig(name="emilia", kind="emilia", path=str(root), options=options)
    lake = Lake(work / "lake")
    plans = inventory_source(source, work, lake, UnitLimits())
    records: dict[str, ManifestRecord] = {}
    for plan in plans:
        for record in manifest_records(source, work, lake, plan.unit):
            native_id = record.utterance_id.removeprefix("emilia/")
            assert native_id not in records, f"{native_id} appears twice"
            records[native_id] = record
    return plans, records


@pytest.fixture(scope="module")
def ingested(
    corpora: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[list[UnitPlan], dict[str, ManifestRecord]]:
    return _ingest(corpora / "emilia", tmp_path_factory.mktemp("emilia"))


def test_every_input_matches_the_expected_outcome(
    ingested: tuple[list[UnitPlan], dict[str, ManifestRecord]],
    load_expected: Callable[[str], list[dict]],
    assert_matches_expected: Callable[..., None],
) -> None:
    plans, records = ingested
    assert_matches_expected(
        plans, records, load_expected("emilia"), DURATION_TOLERANCE_S, compare_sample_rate=False
    )


def test_good_sample_literally(
    ingested: tuple[list[UnitPlan], dict[str, ManifestRecord]],
) -> None:
    record = ingested[1]["EN_B00000_S00000_W000000"]
    assert record.status == "ok"
    assert record.text == "So the first thing we did was check the weather."  # leading space gone
    assert record.speaker == "EN_B00000_S00000"
    assert record.language == "en"
    assert record.audio_path == EN_TAR
    assert record.audio_member == "EN_B00000_S00000_W000000.mp3"
    assert record.offset_s == 0.0
    assert 1.0 < (record.duration_s or 0.0) < 10.0
    extra = json.loads(record.extra)
    assert extra["collection"] == "Emilia"
    assert extra["dnsmos"] == pytest.approx(3.3697)
    assert extra["wav"] == "EN_B00000/EN_B00000_S00000/mp3/EN_B00000_S00000_W000000.mp3"
    assert ingested[1]["ZH_B00000_S00000_W000001"].text == "其实每个人都有自己的习惯。"
    yodas = json.loads(ingested[1]["EN_B00000_S10000_W000000"].extra)
    assert yodas["collection"] == "Emilia-YODAS"


def test_each_broken_sample_is_rejected_with_its_reason(
    ingested: tuple[list[UnitPlan], dict[str, ManifestRecord]],
) -> None:
    records = ingested[1]
    no_json = records["EN_B00000_S00002_W000000"]
    assert (no_json.reject_reason, no_json.text) == ("missing_metadata", None)
    assert no_json.audio_member == "EN_B00000_S00002_W000000.mp3"
    no_mp3 = records["ZH_B00000_S00001_W000000"]
    assert (no_mp3.reject_reason, no_mp3.audio_member) == ("missing_audio", None)
    assert no_mp3.text == "这一段的音频文件丢失了。"
    assert records["EN_B00000_S10001_W000000"].reject_reason == "malformed_record"
    evil = records["../evil"]
    assert (evil.reject_reason, evil.audio_member) == ("path_escape", "../evil.mp3")


def test_one_unit_per_tar_named_collection_and_language(
    ingested: tuple[list[UnitPlan], dict[str, ManifestRecord]],
) -> None:
    plans = ingested[0]
    assert [(p.unit, p.n_inputs) for p in plans] == [
        ("emilia.Emilia-EN.00000", 5),
        ("emilia.Emilia-YODAS-EN.00000", 4),
        ("emilia.Emilia-ZH.00000", 5),
    ]


def test_collection_and_language_options_filter(corpora: Path) -> None:
    def ids(**options: object) -> set[str]:
        groups = emilia.inventory(corpora / "emilia", EmiliaOptions(**options))
        return {i.native_id for g in groups for i in g.items}

    assert {i[:2] for i in ids(languages=["zh"])} == {"ZH"}
    yodas = ids(collections=["Emilia-YODAS"])
    assert "EN_B00000_S10000_W000000" in yodas and "EN_B00000_S00000_W000000" not in yodas
    assert ids(collections=["Emilia-YODAS"], languages=["ZH"]) == set()


def test_each_tar_is_opened_once(corpora: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[tuple[str, str]] = []
    real_open = tarfile.open

    def counting_open(name: Path, mode: str = "r", **kwargs: object) -> tarfile.TarFile:
        opened.append((Path(name).name, mode))
        return real_open(name, mode, **kwargs)

    monkeypatch.setattr(emilia.tarfile, "open", counting_open)
    list(emilia.inventory(corpora / "emilia", EmiliaOptions()))
    assert len(opened) == 3
    assert all(mode.startswith("r|") for _, mode in opened)  # sequential streaming reads


def _tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_members_are_paired_by_key_in_any_order(tmp_path: Path) -> None:
    def record(key: str) -> bytes:
        return json.dumps(
            {
                "id": key,
                "text": f" {key} text",
                "duration": 3.0,
                "speaker": key[:4],
                "language": "EN",
                "dnsmos": 3.1,
            }
        ).encode()

    _tar(
        tmp_path / "Emilia" / "EN" / "EN-B000001.tar",
        [
            ("AAAA_W1.json", record("AAAA_W1")),
            ("BBBB_W2.mp3", b"not decoded here"),
            ("AAAA_W1.mp3", b"not decoded here"),
            ("sub/CCCC_W3.mp3", b"x"),
            ("BBBB_W2.json", record("BBBB_W2")),
            ("sub/CCCC_W3.json", record("CCCC_W3")),
        ],
    )
    (group,) = emilia.inventory(tmp_path, EmiliaOptions())
    assert group.prefix == "Emilia-EN"
    items = {i.native_id: i for i in group.items}
    assert sorted(items) == ["AAAA_W1", "BBBB_W2", "sub/CCCC_W3"]
    assert all(i.problem is None for i in items.values())
    assert items["AAAA_W1"].audio_member == "AAAA_W1.mp3"
    assert items["AAAA_W1"].text == "AAAA_W1 text"
    assert items["AAAA_W1"].language == "en"  # lower-cased
    assert items["sub/CCCC_W3"].audio_member == "sub/CCCC_W3.mp3"
    assert items["BBBB_W2"].audio_path == "Emilia/EN/EN-B000001.tar"


def test_a_tar_that_breaks_off_keeps_what_was_read_and_counts_the_loss(
    corpora: Path, tmp_path: Path
) -> None:
    whole = (corpora / "emilia" / EN_TAR).read_bytes()
    cut = tmp_path / EN_TAR
    cut.parent.mkdir(parents=True)
    cut.write_bytes(whole[: len(whole) // 2])
    (group,) = emilia.inventory(tmp_path, EmiliaOptions())
    items = {i.native_id: i for i in group.items}
    assert items["EN_B00000_S00000_W000000"].problem is None
    lost = items[f"{EN_TAR}:unreadable"]
    assert lost.problem == "malformed_record" and "cannot be read" in (lost.problem_message or "")


def test_sample_key_is_the_name_up_to_the_first_dot_of_the_basename() -> None:
    assert sample_key("EN_B00000_S00000_W000000.mp3") == ("EN_B00000_S00000_W000000", "mp3")
    assert sample_key("a.b/c.seg.json") == ("a.b/c", "seg.json")
    assert sample_key("../evil.json") == ("../evil", "json")
