"""Hugging Face style corpora: a `save_to_disk` DatasetDict and a hub-style parquet file.

- `custom/hf_disk/`: written by `datasets` itself (`DatasetDict.save_to_disk`,
  train in two shards, test in one), columns `id`, `audio` (an `Audio()`
  feature holding embedded FLAC/WAV bytes), `text`, `speaker_id`; one test
  row holds bytes that are not audio.
- `custom/hf_parquet/train-00000-of-00001.parquet`: written with pyarrow in
  the layout of LibriSpeech on the hub (`file`, `audio` struct `{bytes, path}`,
  `text`, `speaker_id`, `chapter_id`, `id`, and the `huggingface` schema
  metadata); one row's audio is null.

The audio is encoded here and handed over as bytes, so neither writer needs
an audio decoder (torchcodec, FFmpeg).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from pipelines.demo.corpus.expected import ExpectedUtterance
from pipelines.demo.corpus.speech import AudioInfo, Voice, encode, is_unreadable, probe, synthesize

RATE_HZ = 16000
GARBAGE_SEED = 1337


@dataclass(frozen=True)
class HFRow:
    """One row of the save_to_disk dataset."""

    split: str
    id: str
    text: str
    speaker_id: str
    voice: Voice
    container: str = "FLAC"  # FLAC or WAV bytes; "garbage" for bytes that are not audio


HF_DISK_ROWS = (
    HFRow("train", "utt-0000", "A small dataset saved to disk.", "spk_01", Voice("en-us+f3", 170)),
    HFRow("train", "utt-0001", "Each row carries its audio bytes.", "spk_01",
          Voice("en-us+f3", 170)),
    HFRow("train", "utt-0002", "The train split has two shards.", "spk_02",
          Voice("en-us+m3", 170)),
    HFRow("train", "utt-0003", "Arrow files hold the rows.", "spk_02", Voice("en-us+m3", 170),
          container="WAV"),
    HFRow("test", "utt-0100", "The test split is a single shard.", "spk_03",
          Voice("en-us+f2", 170)),
    HFRow("test", "utt-0101", "These bytes will never decode.", "spk_03",
          Voice("en-us+f2", 170), container="garbage"),
)
TRAIN_SHARDS = 2


@dataclass(frozen=True)
class ParquetRow:
    """One row of the hub-style LibriSpeech parquet file."""

    speaker_id: int
    chapter_id: int
    index: int
    text: str
    voice: Voice
    audio_missing: bool = False

    @property
    def id(self) -> str:
        """LibriSpeech utterance id `<spk>-<chap>-<NNNN>`."""
        return f"{self.speaker_id}-{self.chapter_id}-{self.index:04d}"


PARQUET_ROWS = (
    ParquetRow(84, 121123, 0, "THE HOUSE STOOD AT THE END OF THE LANE", Voice("en-us+f4", 170)),
    ParquetRow(84, 121123, 1, "ITS WINDOWS LOOKED OUT OVER THE FIELDS", Voice("en-us+f4", 170)),
    ParquetRow(174, 50561, 0, "HE WALKED TO TOWN EVERY SATURDAY", Voice("en-us+m2", 170)),
    ParquetRow(174, 50561, 1, "THIS ROW HAS NO AUDIO AT ALL", Voice("en-us+m2", 170),
               audio_missing=True),
    ParquetRow(174, 50561, 2, "THE BAKER ALWAYS SAVED HIM A LOAF", Voice("en-us+m2", 170)),
)
PARQUET_NAME = "train-00000-of-00001.parquet"


def _audio_bytes(text: str, voice: Voice, container: str) -> bytes:
    audio = synthesize(text, voice, RATE_HZ)
    return encode(audio, RATE_HZ, container, "PCM_16", 1.0 if container == "FLAC" else None)


def write_hf_disk(root: Path) -> list[ExpectedUtterance]:
    """Write `root` with `DatasetDict.save_to_disk`; return the expected rows."""
    import datasets  # heavy import, only needed here

    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "audio": datasets.Audio(sampling_rate=RATE_HZ),
            "text": datasets.Value("string"),
            "speaker_id": datasets.Value("string"),
        }
    )
    infos: dict[str, AudioInfo | None] = {}
    columns: dict[str, dict[str, list[object]]] = {}
    for row in HF_DISK_ROWS:
        if row.container == "garbage":
            data = np.random.default_rng(GARBAGE_SEED).bytes(2048)
            if not is_unreadable(data):
                raise RuntimeError(f"{row.id}: the garbage bytes decode as audio")
            infos[row.id] = None
        else:
            data = _audio_bytes(row.text, row.voice, row.container)
            infos[row.id] = probe(data)
        suffix = ".wav" if row.container == "WAV" else ".flac"
        split = columns.setdefault(row.split, {"id": [], "audio": [], "text": [], "speaker_id": []})
        split["id"].append(row.id)
        split["audio"].append({"bytes": data, "path": row.id + suffix})
        split["text"].append(row.text)
        split["speaker_id"].append(row.speaker_id)

    splits = {}
    for name, mapping in columns.items():
        built = datasets.Dataset.from_dict(mapping, features=features, split=name)
        # An in-memory dataset gets a random fingerprint, which save_to_disk writes into
        # state.json; a fixed one keeps the folder byte-identical between generations.
        splits[name] = datasets.Dataset(
            built.data, info=built.info, split=built.split, fingerprint=f"voxlake-fixture-{name}"
        )
    # save_to_disk draws progress bars; keep the generator's own output readable.
    bars_were_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        datasets.DatasetDict(splits).save_to_disk(
            str(root), num_shards={"train": TRAIN_SHARDS, "test": 1}
        )
    finally:
        if not bars_were_disabled:
            datasets.enable_progress_bars()
    return _hf_disk_expected(root, infos)


def _hf_disk_expected(root: Path, infos: dict[str, AudioInfo | None]) -> list[ExpectedUtterance]:
    """Expected rows, locating each row in the arrow file datasets actually wrote it to."""
    by_id = {row.id: row for row in HF_DISK_ROWS}
    rows: list[ExpectedUtterance] = []
    for arrow_path in sorted(root.glob("*/data-*.arrow")):
        with pa.memory_map(str(arrow_path)) as source:
            ids = ipc.open_stream(source).read_all().column("id").to_pylist()
        for index, row_id in enumerate(ids):
            spec = by_id[row_id]
            info = infos[row_id]
            rows.append(
                ExpectedUtterance(
                    f"{spec.split}/{spec.id}",
                    None if info else "unreadable_audio",
                    text=spec.text,
                    speaker=spec.speaker_id,
                    split=spec.split,
                    audio_path=arrow_path.relative_to(root).as_posix(),
                    audio_member=f"audio@{index}",
                    duration_s=info.duration_s if info else None,
                    sample_rate_hz=info.sample_rate_hz if info else None,
                )
            )
    if len(rows) != len(HF_DISK_ROWS):
        raise RuntimeError(f"save_to_disk wrote {len(rows)} rows, expected {len(HF_DISK_ROWS)}")
    return rows


def write_hf_parquet(root: Path) -> list[ExpectedUtterance]:
    """Write the hub-style parquet file under `root`; return the expected rows."""
    audio_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    # What the hub's datasets writes into the schema metadata, so readers see an Audio column.
    hf_features = {
        "file": {"dtype": "string", "_type": "Value"},
        "audio": {"sampling_rate": RATE_HZ, "_type": "Audio"},
        "text": {"dtype": "string", "_type": "Value"},
        "speaker_id": {"dtype": "int64", "_type": "Value"},
        "chapter_id": {"dtype": "int64", "_type": "Value"},
        "id": {"dtype": "string", "_type": "Value"},
    }
    schema = pa.schema(
        [
            ("file", pa.string()),
            ("audio", audio_type),
            ("text", pa.string()),
            ("speaker_id", pa.int64()),
            ("chapter_id", pa.int64()),
            ("id", pa.string()),
        ],
        metadata={"huggingface": json.dumps({"info": {"features": hf_features}})},
    )
    columns: dict[str, list[object]] = {name: [] for name in schema.names}
    rows: list[ExpectedUtterance] = []
    for index, spec in enumerate(PARQUET_ROWS):
        flac_name = f"{spec.id}.flac"
        info = None
        if spec.audio_missing:
            columns["audio"].append(None)
        else:
            data = _audio_bytes(spec.text, spec.voice, "FLAC")
            info = probe(data)
            columns["audio"].append({"bytes": data, "path": flac_name})
        columns["file"].append(
            f"dev-clean/{spec.speaker_id}/{spec.chapter_id}/{flac_name}"
        )
        columns["text"].append(spec.text)
        columns["speaker_id"].append(spec.speaker_id)
        columns["chapter_id"].append(spec.chapter_id)
        columns["id"].append(spec.id)
        rows.append(
            ExpectedUtterance(
                spec.id,
                "missing_audio" if spec.audio_missing else None,
                text=spec.text,
                speaker=str(spec.speaker_id),
                split="train",
                audio_path=PARQUET_NAME,
                audio_member=f"audio@{index}",
                duration_s=info.duration_s if info else None,
                sample_rate_hz=info.sample_rate_hz if info else None,
            )
        )
    table = pa.table(columns, schema=schema)
    root.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, root / PARQUET_NAME)
    return rows
