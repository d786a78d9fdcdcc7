"""Export a release as a Hugging Face dataset (`export_hf`).

A `datasets.DatasetDict` with one split per release split, saved with
`save_to_disk(out_dir)` (plus `export.json`), columns
`key`, `utterance_id`, `audio` (`Audio(sampling_rate=16000)`: the audio shard's
FLAC bytes stored as `{"bytes", "path": "<key>.flac"}`, encoded without
decoding), `codes` (list of uint16, from the aligned code shard, joined by key),
`text`, `speaker`, `language`, `duration_s`, `source`. Every kept utterance is
a row, with or without text. `datasets.load_from_disk(out_dir)` reads it back;
the audio decodes through torchcodec.

With `with_audio=False` the dataset has no `audio` column and the export reads
the code shards only (no audio shard is opened, none needs to be present): a
codes-only dataset for training (the codes are 25 bytes per second of speech).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.project import Project
from pipelines.releases.export.staging import (
    EXPORT_FILE,
    STAGING_SUFFIX,
    ExportStats,
    _check_out_dir,
    _export_record,
    _iter_samples,
    _select,
    _Selection,
    _staged,
    _write_json,
)
from pipelines.releases.export.vita_jsonl import _has_text
from schemas.audio import TARGET_SAMPLE_RATE_HZ
from schemas.hashing import bytes_sha256

if TYPE_CHECKING:
    import datasets


def hf_export_features(*, with_audio: bool = True) -> datasets.Features:
    """The features of `export_hf`'s dataset (audio at 16 kHz, codes as uint16 lists);
    without the `audio` column when `with_audio` is False."""
    import datasets  # an export dependency only

    string = datasets.Value("string")
    audio = {"audio": datasets.Audio(sampling_rate=TARGET_SAMPLE_RATE_HZ)} if with_audio else {}
    return datasets.Features(
        {
            "key": string,
            "utterance_id": string,
            **audio,
            "codes": datasets.List(datasets.Value("uint16")),
            "text": string,
            "speaker": string,
            "language": string,
            "duration_s": datasets.Value("float64"),
            "source": string,
        }
    )


def _hf_rows(project: Project, selection: _Selection, split: str) -> Iterator[dict[str, Any]]:
    """Rows of one split for `Dataset.from_generator` (module-level: nothing to pickle)."""
    for sample in _iter_samples(project.lake, selection, split):
        # Encoded bytes with a path: `Audio` stores them as they are, no decoding.
        audio = (
            {"audio": {"bytes": sample.flac, "path": f"{sample.key}.flac"}}
            if selection.with_audio
            else {}
        )
        yield {
            "key": sample.key,
            "utterance_id": sample.utterance_id,
            **audio,
            "codes": sample.codes,
            "text": sample.meta.text,
            "speaker": sample.speaker,
            "language": sample.language,
            "duration_s": sample.duration_s,
            "source": sample.source,
        }


def export_hf(
    project: Project,
    release_name: str,
    out_dir: Path,
    *,
    overwrite: bool = False,
    with_audio: bool = True,
) -> ExportStats:
    """Save release `release_name` as a Hugging Face `DatasetDict` (one split per release split).

    Columns and types are `hf_export_features(with_audio=with_audio)`; rows are
    sorted by key within each split and include utterances without text (`text`
    null). With audio, each row joins the audio shard's FLAC with the aligned code
    shard's codes by key; without (`with_audio=False`), only the code shards are
    read. The folder also holds `export.json` (lineage and counts). Out-folder
    rules and errors as in `export_vita_jsonl`.
    """
    import datasets  # an export dependency only

    out_dir = _check_out_dir(project, out_dir, overwrite)
    selection = _select(project, release_name, with_audio=with_audio)
    features = hf_export_features(with_audio=with_audio)
    read = [*(selection.release.shards if with_audio else []), *selection.release.code_shards]
    shard_digest = bytes_sha256(json.dumps([[s.shard, s.sha256] for s in read]).encode())

    with _staged(out_dir, overwrite) as staging:
        # The generator's Arrow cache gets a fresh folder beside the output (same disk,
        # never a stale hit in ~/.cache), deleted once the dataset is saved.
        cache_dir = Path(
            tempfile.mkdtemp(
                prefix=f".{out_dir.name}.cache.", suffix=STAGING_SUFFIX, dir=out_dir.parent
            )
        )
        rows_per_split: dict[str, int] = {}
        n_without_text = 0
        duration_s = 0.0
        try:
            splits: dict[str, datasets.Dataset] = {}
            for split in selection.splits():
                fingerprint = bytes_sha256(f"{release_name}\0{split}\0{shard_digest}".encode())[:16]
                dataset = datasets.Dataset.from_generator(
                    _hf_rows,
                    features=features,
                    cache_dir=str(cache_dir),
                    gen_kwargs={"project": project, "selection": selection, "split": split},
                    split=datasets.NamedSplit(split),
                    fingerprint=fingerprint,
                )
                splits[split] = dataset
                rows_per_split[split] = dataset.num_rows
                texts = dataset.data.column("text").to_pylist()
                n_without_text += sum(1 for text in texts if not _has_text(text))
                duration_s += float(sum(dataset.data.column("duration_s").to_pylist()))
            datasets.DatasetDict(splits).save_to_disk(str(staging))
            del splits, dataset  # release the memory-mapped cache files before deleting them
        finally:
            shutil.rmtree(cache_dir, ignore_errors=True)
        stats = ExportStats(
            format="hf",
            release=release_name,
            out_dir=out_dir,
            n_utterances=len(selection.kept),
            n_exported=sum(rows_per_split.values()),
            n_duplicates_skipped=selection.n_duplicates,
            n_without_text=n_without_text,
            n_special_token_text=0,
            examples_per_split=rows_per_split,
            utterances_per_split=dict(rows_per_split),
            duration_s=duration_s,
        )
        extra = {
            "splits": list(rows_per_split),
            "sample_rate_hz": TARGET_SAMPLE_RATE_HZ,
            "with_audio": with_audio,
        }
        _write_json(staging / EXPORT_FILE, _export_record("hf", selection, stats, extra))
    return stats
