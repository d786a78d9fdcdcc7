"""Export a release as a lhotse CutSet (`export_lhotse`), as manifests with FLAC files or as Shar.

The default layout, for `CutSet.from_file` (and `RecordingSet` / `SupervisionSet`)::

    out_dir/
      recordings_<split>.jsonl.gz     one Recording per utterance: audio/<key>.flac, 16 kHz mono
      supervisions_<split>.jsonl.gz   one SupervisionSegment per utterance, over its whole audio
      cuts_<split>.jsonl.gz           one MonoCut per utterance: its recording and supervision
      audio/<key>.flac                the audio shard's FLAC bytes, unchanged
      export.json                     release lineage and counts

With `shar=True`, lhotse Shar instead (`CutSet.from_shar(in_dir=out_dir / split)`), which
carries its audio inside its tars and can be moved and streamed as it is::

    out_dir/
      <split>/cuts.000000.jsonl.gz    the cuts, each with a Shar placeholder recording
      <split>/recording.000000.tar    <key>.flac (the audio shard's bytes) and <key>.json
      export.json

Splits are those the release keeps (`train`, `dev`, `test`); duplicates it dropped are
not exported. Every id (recording, supervision, cut) is the utterance's shard key (no
dots, safe as a file or tar member name); the supervision's `custom` holds the voxlake
`utterance_id`, `source` and `split`. Text, speaker and language are the release's.
Utterances without text are exported too (text null) and counted. The audio is never
decoded or re-encoded: lhotse reads the FLAC files voxlake prepared (16-bit, 16 kHz).

Paths. The manifests name each FLAC file by its absolute path under the final
`out_dir`, so `CutSet.from_file(...).load_audio()` works from any folder; with
`absolute_paths=False` they are relative to `out_dir` (portable; lhotse resolves them from
the current folder, or after `cuts.with_recording_path_prefix(out_dir)`).

Files are gzip'd with a zero timestamp and tar members have fixed metadata, so
re-exporting the same release to the same folder gives byte-identical files. The export
is staged and published with one rename (`staging.py`). lhotse itself is needed
(`pip install 'voxlake[lhotse]'`): its own classes write every manifest record.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import IO, Any

import soundfile as sf

from pipelines.project import Project
from pipelines.releases.export.staging import (
    EXPORT_FILE,
    ExportError,
    ExportStats,
    _check_out_dir,
    _export_record,
    _iter_samples,
    _Sample,
    _select,
    _staged,
    _write_json,
)
from pipelines.sources.lhotse import require_lhotse

AUDIO_DIR = "audio"
SHAR_SHARD_SIZE = 1000  # cuts per Shar shard, lhotse's default
MANIFESTS = ("recordings", "supervisions", "cuts")


class _GzipLines:
    """A `.jsonl.gz` file written line by line, with no timestamp in its gzip header."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("wb")
        self._gzip = gzip.GzipFile(filename="", mode="wb", fileobj=self._file, mtime=0)

    def write(self, record: dict[str, Any]) -> None:
        """One JSON line, as lhotse's own writer prints it."""
        line = json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n"
        self._gzip.write(line.encode("utf-8"))

    def close(self) -> None:
        """Finish the gzip stream and make the file durable."""
        self._gzip.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    # Fixed metadata: identical members give identical tars.
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def _manifests(lhotse: ModuleType, sample: _Sample, audio_source: Any) -> tuple[Any, Any, Any]:
    """The lhotse Recording, SupervisionSegment and MonoCut of one exported utterance."""
    assert sample.flac is not None  # selected with audio
    header = sf.info(io.BytesIO(sample.flac))
    num_samples = int(header.frames)
    rate_hz = int(header.samplerate)
    duration_s = num_samples / rate_hz
    recording = lhotse.Recording(
        id=sample.key,
        sources=[audio_source],
        sampling_rate=rate_hz,
        num_samples=num_samples,
        duration=duration_s,
        channel_ids=[0],
    )
    supervision = lhotse.SupervisionSegment(
        id=sample.key,
        recording_id=sample.key,
        start=0.0,
        duration=duration_s,
        channel=0,
        text=sample.meta.text,
        language=sample.language,
        speaker=sample.speaker,
        custom={
            "utterance_id": sample.utterance_id,
            "source": sample.source,
            "split": sample.split,
        },
    )
    cut = lhotse.MonoCut(
        id=sample.key,
        start=0.0,
        duration=duration_s,
        channel=0,
        supervisions=[supervision],
        recording=recording,
    )
    return recording, supervision, cut


def _has_text(sample: _Sample) -> bool:
    return sample.meta.text is not None and sample.meta.text.strip() != ""


def _write_manifests(
    lhotse: ModuleType,
    samples: Iterator[_Sample],
    staging: Path,
    out_dir: Path,
    split: str,
    absolute_paths: bool,
) -> tuple[int, int, float]:
    """Recordings, supervisions and cuts of one split, and its FLAC files: (cuts, no text, s)."""
    n_cuts = n_without_text = 0
    duration_s = 0.0
    with contextlib.ExitStack() as stack:
        writers = {}
        for name in MANIFESTS:
            writer = _GzipLines(staging / f"{name}_{split}.jsonl.gz")
            stack.callback(writer.close)
            writers[name] = writer
        for sample in samples:
            audio_rel = f"{AUDIO_DIR}/{sample.key}.flac"
            assert sample.flac is not None
            # Inside the staging folder: its one rename publishes every file at once.
            (staging / audio_rel).write_bytes(sample.flac)
            path = str(out_dir / audio_rel) if absolute_paths else audio_rel
            source = lhotse.AudioSource(type="file", channels=[0], source=path)
            recording, supervision, cut = _manifests(lhotse, sample, source)
            writers["recordings"].write(recording.to_dict())
            writers["supervisions"].write(supervision.to_dict())
            writers["cuts"].write(cut.to_dict())
            n_cuts += 1
            n_without_text += not _has_text(sample)
            duration_s += cut.duration
    return n_cuts, n_without_text, duration_s


def _write_shar(
    lhotse: ModuleType, samples: Iterator[_Sample], folder: Path, shard_size: int
) -> tuple[int, int, float]:
    """One split as Shar: `cuts.NNNNNN.jsonl.gz` + `recording.NNNNNN.tar` per `shard_size` cuts."""
    folder.mkdir()
    n_cuts = n_without_text = 0
    duration_s = 0.0
    cuts: _GzipLines | None = None
    tar: tarfile.TarFile | None = None
    tar_file: IO[bytes] | None = None

    def close_shard() -> None:
        assert cuts is not None and tar is not None and tar_file is not None
        cuts.close()
        tar.close()
        tar_file.flush()
        os.fsync(tar_file.fileno())
        tar_file.close()

    try:
        for sample in samples:
            if n_cuts % shard_size == 0:
                if cuts is not None:
                    close_shard()
                number = n_cuts // shard_size
                cuts = _GzipLines(folder / f"cuts.{number:06d}.jsonl.gz")
                tar_file = (folder / f"recording.{number:06d}.tar").open("wb")
                tar = tarfile.open(fileobj=tar_file, mode="w", format=tarfile.PAX_FORMAT)
            assert cuts is not None and tar is not None and sample.flac is not None
            # What lhotse's SharWriter writes: a placeholder recording (audio in the tar),
            # the audio member, then the recording's JSON member.
            placeholder = lhotse.AudioSource(type="shar", channels=[0], source="")
            recording, _, cut = _manifests(lhotse, sample, placeholder)
            _add_member(tar, f"{sample.key}.flac", sample.flac)
            _add_member(
                tar, f"{sample.key}.json", (json.dumps(recording.to_dict()) + "\n").encode("utf-8")
            )
            cuts.write(cut.to_dict())
            n_cuts += 1
            n_without_text += not _has_text(sample)
            duration_s += cut.duration
        if cuts is not None:
            close_shard()
            cuts = None
    finally:
        if cuts is not None:  # an error mid-shard: close the files, the staging goes away
            with contextlib.suppress(OSError):
                close_shard()
    return n_cuts, n_without_text, duration_s


def export_lhotse(
    project: Project,
    release_name: str,
    out_dir: Path,
    *,
    shar: bool = False,
    shard_size: int = SHAR_SHARD_SIZE,
    absolute_paths: bool = True,
    overwrite: bool = False,
) -> ExportStats:
    """Write release `release_name` as a lhotse CutSet in `out_dir` (layouts: module docstring).

    Manifests with FLAC files by default, Shar with `shar` (`shard_size` cuts per
    shard). `absolute_paths` (manifests only) names the FLAC files by absolute paths
    under the final `out_dir`, else by paths relative to it. A non-empty `out_dir`
    is refused unless `overwrite` is set and it holds an earlier export. Raises
    LhotseMissingError without lhotse, ExportError (and ReleaseError for an unknown
    release); on any error nothing is written.
    """
    lhotse = require_lhotse()
    if shard_size < 1:
        raise ExportError(f"shard_size must be at least 1, got {shard_size}")
    out_dir = _check_out_dir(project, out_dir, overwrite)
    selection = _select(project, release_name, with_audio=True)
    export_format = "lhotse-shar" if shar else "lhotse"
    n_exported = n_without_text = 0
    duration_s = 0.0
    cuts_per_split: dict[str, int] = {}
    with _staged(out_dir, overwrite) as staging:
        if not shar:
            (staging / AUDIO_DIR).mkdir()
        for split in selection.splits():
            samples = _iter_samples(project.lake, selection, split)
            if shar:
                counts = _write_shar(lhotse, samples, staging / split, shard_size)
            else:
                counts = _write_manifests(lhotse, samples, staging, out_dir, split, absolute_paths)
            n_cuts, n_no_text, split_s = counts
            cuts_per_split[split] = n_cuts
            n_exported += n_cuts
            n_without_text += n_no_text
            duration_s += split_s
        stats = ExportStats(
            format=export_format,
            release=release_name,
            out_dir=out_dir,
            n_utterances=len(selection.kept),
            n_exported=n_exported,
            n_duplicates_skipped=selection.n_duplicates,
            n_without_text=n_without_text,
            n_special_token_text=0,
            examples_per_split=cuts_per_split,
            utterances_per_split=dict(cuts_per_split),
            duration_s=duration_s,
        )
        if shar:
            layout = {split: f"{split}/" for split in cuts_per_split}
            load = "lhotse.CutSet.from_shar(in_dir=<this folder>/<split>)"
        else:
            layout = {
                split: {name: f"{name}_{split}.jsonl.gz" for name in MANIFESTS}
                for split in cuts_per_split
            }
            load = "lhotse.CutSet.from_file(<this folder>/cuts_<split>.jsonl.gz)"
        extra = {
            "lhotse_version": lhotse.__version__,
            "files": layout,
            "load": load,
            "ids": "recording, supervision and cut ids are the utterances' shard keys",
            "audio_paths": (
                "inside the Shar tars"
                if shar
                else "absolute"
                if absolute_paths
                else "relative to this folder"
            ),
        }
        _write_json(staging / EXPORT_FILE, _export_record(export_format, selection, stats, extra))
    return stats
