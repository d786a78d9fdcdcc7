"""The hf_dataset connector: the committed `save_to_disk` folder and hub-style parquet file
ingest to exactly their expected outcome, read with pyarrow alone and without loading
audio bytes while planning."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from source_checks import assert_matches_expected, ingest_source

from pipelines.sources import hf_dataset
from schemas import InventoryItem, ManifestRecord
from schemas.sources import HFDatasetOptions

AUDIO_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def ingest(
    tmp_path: Path, path: Path, options: dict[str, Any] | None = None
) -> dict[str, ManifestRecord]:
    """Inventory + manifest of one `hf_dataset` source; rows by native id."""
    return ingest_source("hf_dataset", tmp_path, path, options)


def _items(path: Path, **options: Any) -> dict[str, InventoryItem]:
    groups = hf_dataset.inventory(path, HFDatasetOptions(**options))
    return {i.native_id: i for g in groups for i in g.items}


def _wav(seconds: float = 0.5, rate_hz: int = 8000) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.full(int(rate_hz * seconds), 0.1), rate_hz, format="WAV")
    return buffer.getvalue()


def _write_arrow_stream(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with pa.OSFile(str(path), "wb") as sink, ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)


@pytest.fixture(scope="module")
def disk_records(
    tmp_path_factory: pytest.TempPathFactory, corpora: Path
) -> dict[str, ManifestRecord]:
    return ingest(tmp_path_factory.mktemp("disk"), corpora / "custom" / "hf_disk")


@pytest.fixture(scope="module")
def parquet_records(
    tmp_path_factory: pytest.TempPathFactory, corpora: Path
) -> dict[str, ManifestRecord]:
    return ingest(tmp_path_factory.mktemp("parquet"), corpora / "custom" / "hf_parquet")


def test_save_to_disk_matches_expected(
    disk_records: dict[str, ManifestRecord], corpora: Path
) -> None:
    assert_matches_expected(disk_records, corpora / "expected" / "custom_hf_disk.jsonl")


def test_parquet_folder_matches_expected(
    parquet_records: dict[str, ManifestRecord], corpora: Path
) -> None:
    assert_matches_expected(parquet_records, corpora / "expected" / "custom_hf_parquet.jsonl")


def test_parquet_file_path_matches_expected(tmp_path: Path, corpora: Path) -> None:
    records = ingest(tmp_path, corpora / "custom" / "hf_parquet" / "train-00000-of-00001.parquet")
    assert_matches_expected(records, corpora / "expected" / "custom_hf_parquet.jsonl")


def test_save_to_disk_literal_facts(disk_records: dict[str, ManifestRecord]) -> None:
    row = disk_records["train/utt-0003"]
    assert (row.status, row.text, row.speaker, row.split) == (
        "ok",
        "Arrow files hold the rows.",
        "spk_02",
        "train",
    )
    assert row.audio_path.startswith("train/data-0000") and row.audio_path.endswith(".arrow")
    assert row.audio_member.startswith("audio@")
    assert json.loads(row.extra) == {"audio_file": "utt-0003.wav"}
    garbage = disk_records["test/utt-0101"]
    assert (garbage.reject_reason, garbage.audio_path) == (
        "unreadable_audio",
        "test/data-00000-of-00001.arrow",
    )
    assert {r.split for r in disk_records.values()} == {"train", "test"}


def test_parquet_literal_facts(parquet_records: dict[str, ManifestRecord]) -> None:
    row = parquet_records["84-121123-0000"]
    assert (row.status, row.text, row.speaker, row.split) == (
        "ok",
        "THE HOUSE STOOD AT THE END OF THE LANE",
        "84",
        "train",
    )
    assert (row.audio_path, row.audio_member) == ("train-00000-of-00001.parquet", "audio@0")
    assert json.loads(row.extra) == {
        "chapter_id": 121123,
        "file": "dev-clean/84/121123/84-121123-0000.flac",
        "audio_file": "84-121123-0000.flac",
    }
    missing = parquet_records["174-50561-0001"]
    assert (missing.reject_reason, missing.audio_member) == ("missing_audio", "audio@3")


def test_groups_are_arrow_files_under_their_split(corpora: Path) -> None:
    groups = list(hf_dataset.inventory(corpora / "custom" / "hf_disk", HFDatasetOptions()))
    assert [g.prefix for g in groups] == ["train", "train", "test"]
    assert [len({i.audio_path for i in g.items}) for g in groups] == [1, 1, 1]
    test_only = _items(corpora / "custom" / "hf_disk", splits=["test"])
    assert sorted(test_only) == ["test/utt-0100", "test/utt-0101"]


def test_a_single_saved_dataset_folder(tmp_path: Path, corpora: Path) -> None:
    shutil.copytree(corpora / "custom" / "hf_disk" / "test", tmp_path / "test_only")
    items = _items(tmp_path / "test_only")
    assert sorted(items) == ["test/utt-0100", "test/utt-0101"]  # state.json names the split
    assert {i.audio_path for i in items.values()} == {"data-00000-of-00001.arrow"}


def test_planning_never_reads_parquet_audio_bytes(
    corpora: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    requested: list[list[str]] = []
    original = pq.ParquetFile.iter_batches

    def spy(self: pq.ParquetFile, *args: Any, **kwargs: Any) -> Any:
        requested.append(list(kwargs["columns"]))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    assert len(_items(corpora / "custom" / "hf_parquet")) == 5
    assert requested and all("audio.bytes" not in c and "audio" not in c for c in requested)


def test_null_bytes_and_missing_ids(tmp_path: Path) -> None:
    audio = pa.array(
        [
            {"bytes": _wav(), "path": "a.wav"},
            {"bytes": None, "path": "b.wav"},
            {"bytes": b"", "path": None},
            None,
        ],
        type=AUDIO_TYPE,
    )
    table = pa.table(
        {
            "audio": audio,
            "sentence": ["one", "two", "three", "four"],
            "language": ["EN", None, "fr", None],
            "embedding": [[0.5, 1.0]] * 4,
            "age": [30, None, 41, 52],
        }
    )
    _write_arrow_stream(tmp_path / "ds" / "data-00000-of-00001.arrow", table)
    (tmp_path / "ds" / "state.json").write_text(
        json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}], "_split": None})
    )
    (tmp_path / "pq").mkdir()
    pq.write_table(table, tmp_path / "pq" / "validation-00000-of-00001.parquet")

    arrow = ingest(tmp_path / "a", tmp_path / "ds", {"text_column": "sentence", "language": "de"})
    assert {k: r.reject_reason for k, r in arrow.items()} == {
        "0": None,
        "1": "missing_audio",
        "2": "missing_audio",
        "3": "missing_audio",
    }
    assert (arrow["0"].text, arrow["0"].language, arrow["1"].language) == ("one", "en", "de")
    assert arrow["0"].split is None
    assert json.loads(arrow["0"].extra) == {"audio_file": "a.wav", "age": 30}  # no list column

    # Parquet planning leaves the bytes unread: a null `bytes` leaf is caught by check_item.
    parquet = ingest(tmp_path / "p", tmp_path / "pq")
    assert {k: r.reject_reason for k, r in parquet.items()} == {
        "validation/0": None,
        "validation/1": "missing_audio",
        "validation/2": "missing_audio",
        "validation/3": "missing_audio",
    }
    assert parquet["validation/0"].split == "validation"
    assert parquet["validation/0"].duration_s == pytest.approx(0.5)


def test_layouts_that_are_not_datasets_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a Hugging Face dataset"):
        _items(tmp_path)
    pq.write_table(pa.table({"wave": [b"x"]}), tmp_path / "train-00000-of-00001.parquet")
    with pytest.raises(ValueError, match="no audio column 'audio'"):
        _items(tmp_path)
