"""Work-unit planning: bounded units, groups kept whole, stable keys, duplicates marked."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.lake.paths import Lake
from pipelines.sources.base import ItemGroup
from pipelines.units import plan_units, read_unit_items, read_units_index
from schemas import InventoryItem, UnitLimits


def _group(prefix: str, ids: list[str], duration_s: float | None = 1.0) -> ItemGroup:
    return ItemGroup(prefix, [InventoryItem(native_id=i, duration_s=duration_s) for i in ids])


def test_groups_are_packed_up_to_the_limit_and_never_split(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    groups = [
        _group("dev", ["a1", "a2", "a3"]),
        _group("dev", ["b1", "b2"]),
        _group("dev", ["c1", "c2", "c3", "c4", "c5", "c6"]),  # larger than the limit: alone
        _group("test", ["d1"]),
    ]
    plans = plan_units("libri", groups, UnitLimits(max_utterances=5), lake)
    assert [(p.unit, p.n_inputs) for p in plans] == [
        ("libri.dev.00000", 5),
        ("libri.dev.00001", 6),
        ("libri.test.00000", 1),
    ]
    items = list(read_unit_items(lake.inventory_items("libri", "libri.dev.00000")))
    assert [i.native_id for i in items] == ["a1", "a2", "a3", "b1", "b2"]
    assert read_units_index(lake, "libri") == plans


def test_a_splittable_group_is_cut_to_the_limits(tmp_path: Path) -> None:
    """Files batched by a connector (audio_folder, table) share no recording: the unit
    limits hold for them, by count and by duration."""
    group = _group("spk", ["a1", "a2", "a3", "a4", "a5"])
    group.splittable = True
    plans = plan_units("f", [group], UnitLimits(max_utterances=2), Lake(tmp_path / "n"))
    assert [p.n_inputs for p in plans] == [2, 2, 1]
    group = _group("spk", ["a1", "a2", "a3", "a4", "a5"], duration_s=10.0)
    group.splittable = True
    plans = plan_units("f", [group], UnitLimits(max_duration_s=25.0), Lake(tmp_path / "d"))
    assert [p.n_inputs for p in plans] == [2, 2, 1]
    assert all(p.declared_duration_s <= 25.0 for p in plans)


def test_an_audio_folder_honours_max_utterances(tmp_path: Path) -> None:
    import numpy as np
    import soundfile as sf

    from pipelines.sources.base import connector
    from schemas.sources import OPTIONS_BY_KIND

    folder = tmp_path / "corpus" / "spk"
    folder.mkdir(parents=True)
    for index in range(3):
        sf.write(folder / f"u{index}.wav", np.zeros(1600, dtype=np.int16), 16000)
    groups = connector("audio_folder")(tmp_path / "corpus", OPTIONS_BY_KIND["audio_folder"]())
    plans = plan_units("f", groups, UnitLimits(max_utterances=1), Lake(tmp_path / "lake"))
    assert [(p.unit, p.n_inputs) for p in plans] == [
        ("f.spk.00000", 1),
        ("f.spk.00001", 1),
        ("f.spk.00002", 1),
    ]


def test_duration_limit_closes_units(tmp_path: Path) -> None:
    groups = [_group("x", [f"r{i}"], duration_s=3000.0) for i in range(4)]
    plans = plan_units("w", groups, UnitLimits(max_duration_s=7000.0), Lake(tmp_path))
    assert [p.n_inputs for p in plans] == [2, 2]
    assert plans[0].declared_duration_s == 6000.0


def test_header_durations_plan_items_the_corpus_gives_no_duration(tmp_path: Path) -> None:
    """A declared duration wins; a header duration fills in where there is none; 0 s where
    neither is known. Whole groups count the sum of their items."""

    def make(suffix: str) -> ItemGroup:
        return ItemGroup(
            "x",
            [
                InventoryItem(native_id=f"declared{suffix}", duration_s=5.0),
                InventoryItem(native_id=f"header{suffix}"),
                InventoryItem(native_id=f"unknown{suffix}"),
            ],
            header_durations_s=[1.0, 2.0, None],
        )

    group = make("")
    assert group.planning_durations_s() == [5.0, 2.0, 0.0]
    plans = plan_units("w", [group, make("2")], UnitLimits(max_duration_s=10.0), Lake(tmp_path))
    assert [(p.n_inputs, p.declared_duration_s) for p in plans] == [(3, 7.0), (3, 7.0)]
    group = make("")
    group.splittable = True
    plans = plan_units("w", [group], UnitLimits(max_duration_s=6.0), Lake(tmp_path / "s"))
    assert [(p.n_inputs, p.declared_duration_s) for p in plans] == [(1, 5.0), (2, 2.0)]


def test_header_durations_must_match_the_items() -> None:
    group = ItemGroup("x", [InventoryItem(native_id="a")], header_durations_s=[1.0, 2.0])
    with pytest.raises(ValueError, match="2 header durations, 1 items"):
        group.planning_durations_s()


def test_same_inventory_gives_same_keys_and_bytes(tmp_path: Path) -> None:
    def groups() -> list[ItemGroup]:
        return [_group("s", ["a", "b"]), _group("s", ["c"])]

    first = plan_units("src", groups(), UnitLimits(max_utterances=2), Lake(tmp_path / "1"))
    second = plan_units("src", groups(), UnitLimits(max_utterances=2), Lake(tmp_path / "2"))
    assert first == second


def test_repeated_ids_are_kept_renamed_and_marked_duplicate(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    groups = [_group("g", ["a", "b"]), _group("g", ["a"]), _group("g", ["a", "a#2"])]
    plans = plan_units("s", groups, UnitLimits(), lake)
    items = list(read_unit_items(lake.inventory_items("s", plans[0].unit)))
    # The first occurrence keeps its id; each repeat gets the first free `#n`, so every
    # row of the unit has its own id and the unit's unique-id check holds.
    assert [(i.native_id, i.problem) for i in items] == [
        ("a", None),
        ("b", None),
        ("a#2", "duplicate_id"),
        ("a#3", "duplicate_id"),
        ("a#2#2", "duplicate_id"),
    ]
    assert "id 'a' appeared earlier in this source" in (items[2].problem_message or "")


def test_a_repeat_weighs_nothing_in_unit_planning(tmp_path: Path) -> None:
    """A duplicate is never decoded, so its duration does not count against the unit."""
    items = [
        InventoryItem(native_id="a", duration_s=4.0),
        InventoryItem(native_id="a", duration_s=4.0),
    ]
    plans = plan_units("s", [ItemGroup("g", items)], UnitLimits(max_duration_s=5.0), Lake(tmp_path))
    assert [(p.n_inputs, p.declared_duration_s) for p in plans] == [(2, 4.0)]


def test_names_that_are_not_utf8_are_escaped_and_rejected(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    bad = b"caf\xe9".decode("utf-8", "surrogateescape")  # a latin-1 file name, as os gives it
    group = ItemGroup(
        prefix="g",
        items=[
            InventoryItem(native_id=bad, audio_path=f"{bad}.wav", extra={"file": bad}),
            InventoryItem(native_id="fine", audio_path="fine.wav"),
        ],
    )
    plans = plan_units("s", [group], UnitLimits(), lake)
    items = {i.native_id: i for i in read_unit_items(lake.inventory_items("s", plans[0].unit))}
    assert set(items) == {"caf\\xe9", "fine"}
    assert items["caf\\xe9"].problem == "invalid_file_name"
    assert items["caf\\xe9"].audio_path == "caf\\xe9.wav"
    assert items["caf\\xe9"].extra == {"file": "caf\\xe9"}
    assert "caf\\xe9.wav" in (items["caf\\xe9"].problem_message or "")
    assert items["fine"].problem is None


def test_units_that_disappear_lose_their_inventory_file(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    plan_units("s", [_group("g", ["a"]), _group("h", ["b"])], UnitLimits(), lake)
    plan_units("s", [_group("g", ["a"])], UnitLimits(), lake)
    assert sorted(p.name for p in lake.inventory_dir("s").iterdir()) == [
        "s.g.00000.jsonl",
        "units.json",
    ]
