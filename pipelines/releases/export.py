"""Export a release for training outside voxlake: VITA-Audio JSONL, or a Hugging Face dataset.

Both exports read the release's utterances through the shard index (a seek and a
read per member, never a tar extraction), skip the duplicates the release
dropped (`split` null), check that every shard still has the sha256 the release
recorded, and publish the whole output folder with one rename: the export is
built in a hidden staging folder beside `out_dir` (`.<name>.<random>.tmp`) and
renamed onto `out_dir` when complete, so a reader never sees half an export and
a failed export leaves no half folder behind.

**VITA-Audio JSONL** (`export_vita_jsonl`), the layout VITA-Audio's data loader
reads (`vita_audio/data/dataset_base.py`, `processor/audio_processor.py`)::

    out_dir/
      train.jsonl dev.jsonl test.jsonl      one per split that has kept utterances
      audio/<key>.flac                      the shard's FLAC bytes, unchanged (16 kHz mono)
      audio/<key>_glm4voice.json            the GLM-4-Voice codes of that audio
      export.json                           release lineage and counts

One JSONL line per utterance with text and per task, ordered by key, then by task::

    {"messages": [{"role": "user", "content": "Convert the speech to text.\\n<|audio|>"},
                  {"role": "assistant", "content": "<text>"}], "audios": ["audio/<key>.flac"]}
    {"messages": [{"role": "user", "content": "Convert the text to speech.\\n<text>"},
                  {"role": "assistant", "content": "<|audio|>"}], "audios": ["audio/<key>.flac"]}

Each `<|audio|>` in the messages consumes the next entry of `audios`. Audio
paths are relative to the JSONL's folder; upstream opens them as given, i.e.
relative to the trainer's working directory, so either start it in `out_dir` or
export with `absolute_paths=True`.

The code cache. Upstream tokenizes in the data loader and caches the codes next
to the audio: `AudioProcessor.process_audios` looks for
`os.path.splitext(audio_path)[0] + "_" + tokenizer_type.split("_")[-1] + ".json"`,
which for its GLM-4-Voice tokenizers (`glm4voice`, `sensevoice_glm4voice`) is
**`<audio path without extension>_glm4voice.json`**, and reads it with
`json.load` as a list of integer code ids (each becomes `<|audio_{id}|>`). We
write exactly the bytes upstream's own `json.dump(codes, f)` would: a JSON array
of integers in [0, 16384) with `", "` separators and no trailing newline, e.g.
`[123, 4567, 89]`. With the cache present, upstream never loads its tokenizer
for these files, and trains on the codes voxlake computed (`export.json` names
the tokenizer checkpoint's sha256).

Utterances without text (null or blank) have no ASR or TTS example; they are
counted and get no files. Text holding a chat special token (`<|...|>`, e.g.
`<|audio|>` or `<|im_end|>`) would be parsed as that token by the Qwen2
tokenizer and break the audio-tag count, so such utterances are skipped and
counted too. Re-exporting the same release with the same code gives
byte-identical files.

**Hugging Face** (`export_hf`): a `datasets.DatasetDict` with one split per
release split, saved with `save_to_disk(out_dir)` (plus `export.json`), columns
`key`, `utterance_id`, `audio` (`Audio(sampling_rate=16000)`: the FLAC bytes
stored as `{"bytes", "path": "<key>.flac"}`, encoded without decoding),
`codes` (list of uint16), `text`, `speaker`, `language`, `duration_s`,
`source`. Every kept utterance is a row, with or without text.
`datasets.load_from_disk(out_dir)` reads it back; the audio decodes through
torchcodec.

>>> code_cache_path(Path("audio/spk1__utt-0001.flac")).as_posix()
'audio/spk1__utt-0001_glm4voice.json'
>>> encode_code_cache(np.array([123, 4567, 89], dtype=np.uint16))
b'[123, 4567, 89]'
>>> [m["content"] for m in vita_examples("hello", "audio/k.flac", ("tts",))[0]["messages"]]
['Convert the text to speech.\\nhello', '<|audio|>']
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl

from pipelines.lake.atomic import write_bytes_atomic
from pipelines.lake.paths import Lake
from pipelines.project import Project
from pipelines.releases.create import load_release
from pipelines.shards.reader import read_index, read_members
from pipelines.version import code_version
from schemas import Release, ShardIndexRow, ShardSampleMeta
from schemas.audio import TARGET_SAMPLE_RATE_HZ
from schemas.shards import INDEX_NAME, decode_codes

if TYPE_CHECKING:
    import datasets

EXPORT_FILE = "export.json"
AUDIO_DIR = "audio"
AUDIO_TAG = "<|audio|>"
ASR_PROMPT = "Convert the speech to text.\n" + AUDIO_TAG
TTS_PROMPT = "Convert the text to speech.\n"
CODE_CACHE_SUFFIX = "_glm4voice.json"
VITA_TASKS: tuple[str, ...] = ("asr", "tts")
SPLITS: tuple[str, ...] = ("train", "dev", "test")
STAGING_SUFFIX = ".tmp"

# A chat special token as the Qwen2 tokenizer would parse it out of plain text.
_SPECIAL_TOKEN = re.compile(r"<\|[^\s<>|]*\|>")

ExportFormat = Literal["vita-jsonl", "hf"]


class ExportError(Exception):
    """An export cannot be written; the message says why (nothing was written)."""


@dataclass(frozen=True)
class ExportStats:
    """What an export wrote.

    `n_utterances` counts the release's kept utterances (duplicates excluded),
    `n_exported` the utterances written (VITA: audio files with their code
    cache; HF: rows), `examples_per_split` the JSONL lines (VITA) or rows (HF)
    per split, `duration_s` the seconds of audio written.
    """

    format: ExportFormat
    release: str
    out_dir: Path
    n_utterances: int
    n_exported: int
    n_duplicates_skipped: int
    n_without_text: int
    n_special_token_text: int
    examples_per_split: dict[str, int] = field(default_factory=dict)
    utterances_per_split: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0

    def counts(self) -> dict[str, Any]:
        """The counts as a JSON-ready mapping (as written to `export.json`)."""
        return {
            "n_utterances": self.n_utterances,
            "n_exported": self.n_exported,
            "n_duplicates_skipped": self.n_duplicates_skipped,
            "n_without_text": self.n_without_text,
            "n_special_token_text": self.n_special_token_text,
            "examples_per_split": dict(self.examples_per_split),
            "utterances_per_split": dict(self.utterances_per_split),
            "duration_s": round(self.duration_s, 3),
        }


def code_cache_path(audio_path: Path) -> Path:
    """Upstream's code cache of an audio file: `<audio path without extension>_glm4voice.json`."""
    return audio_path.with_name(audio_path.stem + CODE_CACHE_SUFFIX)


def encode_code_cache(codes: np.ndarray) -> bytes:
    """The cache file's bytes: the codes as a JSON array of integers, as `json.dump` writes it."""
    return json.dumps([int(code) for code in codes]).encode("ascii")


def vita_examples(text: str, audio_path: str, tasks: Sequence[str]) -> list[dict[str, Any]]:
    """The VITA-Audio chat examples of one utterance, one per task (`asr`, `tts`), in order.

    `audio_path` is written as the example's only `audios` entry; each example
    holds exactly one `<|audio|>` tag.
    """
    examples = []
    for task in tasks:
        if task == "asr":
            messages = [
                {"role": "user", "content": ASR_PROMPT},
                {"role": "assistant", "content": text},
            ]
        elif task == "tts":
            messages = [
                {"role": "user", "content": TTS_PROMPT + text},
                {"role": "assistant", "content": AUDIO_TAG},
            ]
        else:
            raise ValueError(f"unknown task {task!r}; expected one of {VITA_TASKS}")
        examples.append({"messages": messages, "audios": [audio_path]})
    return examples


def _has_text(text: str | None) -> bool:
    return text is not None and text.strip() != ""


# ---------------------------------------------------------------------------
# Reading a release's samples through the shard index


@dataclass(frozen=True)
class _Sample:
    """One kept utterance of a release with its shard members."""

    key: str
    utterance_id: str
    split: str
    speaker: str | None
    language: str | None
    source: str
    duration_s: float
    flac: bytes
    codes: np.ndarray
    meta: ShardSampleMeta


@dataclass(frozen=True)
class _Selection:
    """A release's kept utterances (sorted by key) and their index rows."""

    release: Release
    kept: list[dict[str, Any]]
    rows: dict[str, ShardIndexRow]
    n_duplicates: int

    def splits(self) -> list[str]:
        """The splits that hold kept utterances, in train, dev, test order."""
        present = {u["split"] for u in self.kept}
        return [s for s in SPLITS if s in present] + sorted(present - set(SPLITS))


def _select(project: Project, release_name: str) -> _Selection:
    """Load a release and find every kept utterance's index row; ExportError when one is off."""
    release, utterances = load_release(project, release_name)
    kept_frame = utterances.filter(pl.col("split").is_not_null()).sort("key")
    kept = kept_frame.to_dicts()
    if not kept:
        raise ExportError(f"release {release_name!r} keeps no utterance")
    wanted = {u["key"]: u for u in kept}
    if len(wanted) != len(kept):
        raise ExportError(f"release {release_name!r} lists a key twice")
    sha_by_shard = {s.shard: s.sha256 for s in release.shards}
    rows: dict[str, ShardIndexRow] = {}
    for source, unit in sorted({(s.source, s.unit) for s in release.shards}):
        shard_dir = project.lake.shards_dir(source, unit)
        if not (shard_dir / INDEX_NAME).exists():
            raise ExportError(
                f"release {release_name!r}: no shard index {shard_dir / INDEX_NAME} "
                f"(unit {source}/{unit} was removed or is being rewritten)"
            )
        for row in read_index(shard_dir):
            if row.key in wanted:
                rows[row.key] = row
    for key, utterance in wanted.items():
        row = rows.get(key)
        if row is None:
            raise ExportError(
                f"release {release_name!r}: {utterance['utterance_id']!r} ({key}) is in no "
                "shard index of the release's units"
            )
        if row.shard != utterance["shard"] or row.utterance_id != utterance["utterance_id"]:
            raise ExportError(
                f"release {release_name!r}: {key} is now in {row.shard} as "
                f"{row.utterance_id!r}, the release says {utterance['shard']} as "
                f"{utterance['utterance_id']!r}"
            )
        if sha_by_shard.get(row.shard) != row.shard_sha256:
            raise ExportError(
                f"release {release_name!r}: shard {row.shard} has sha256 {row.shard_sha256}, "
                f"the release recorded {sha_by_shard.get(row.shard)}; the shard was rewritten "
                "after the release was made"
            )
    return _Selection(release, kept, rows, utterances.height - len(kept))


def _iter_samples(lake: Lake, selection: _Selection, split: str) -> Iterator[_Sample]:
    """The kept utterances of one split, sorted by key, with their FLAC, codes and metadata."""
    utterances = [u for u in selection.kept if u["split"] == split]
    rows = [selection.rows[u["key"]] for u in utterances]
    # Three readers in lockstep: each opens a shard once per run of rows in it.
    members = zip(
        read_members(lake.root, rows, "flac"),
        read_members(lake.root, rows, "codes"),
        read_members(lake.root, rows, "json"),
        strict=True,
    )
    for utterance, row, (flac, codes_npy, meta_json) in zip(utterances, rows, members, strict=True):
        meta = ShardSampleMeta.model_validate_json(meta_json)
        codes = decode_codes(codes_npy)
        if meta.utterance_id != row.utterance_id or len(codes) != meta.n_codes:
            raise ExportError(
                f"{row.shard}: members of {row.key} disagree with the index "
                f"({meta.utterance_id!r}, {len(codes)} codes, meta says {meta.n_codes})"
            )
        yield _Sample(
            key=row.key,
            utterance_id=row.utterance_id,
            split=split,
            speaker=utterance["speaker"],
            language=utterance["language"],
            source=utterance["source"],
            duration_s=float(utterance["duration_s"]),
            flac=flac,
            codes=codes,
            meta=meta,
        )


# ---------------------------------------------------------------------------
# The output folder


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and next(path.iterdir(), None) is None


def _check_out_dir(project: Project, out_dir: Path, overwrite: bool) -> Path:
    """The resolved `out_dir`, after refusing destinations an export must not replace."""
    out_dir = out_dir.expanduser().resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir} exists and is not a folder")
    for protected in (project.directory.resolve(), project.lake.root.resolve()):
        if protected == out_dir or out_dir in protected.parents:
            raise ExportError(f"{out_dir} holds the project or its lake; export elsewhere")
    if out_dir.is_dir() and not _is_empty_dir(out_dir):
        if not overwrite:
            raise ExportError(f"{out_dir} is not empty; pass overwrite=True to replace it")
        if not (out_dir / EXPORT_FILE).is_file():
            # overwrite replaces an earlier export, never an arbitrary folder.
            raise ExportError(
                f"{out_dir} is not empty and holds no {EXPORT_FILE}: it is not an export, "
                "so it is not replaced even with overwrite=True"
            )
    return out_dir


@contextlib.contextmanager
def _staged(out_dir: Path, overwrite: bool) -> Iterator[Path]:
    """A staging folder beside `out_dir`, renamed onto it when the block succeeds.

    An earlier export in `out_dir` is moved aside, the staging folder renamed in,
    and the old one deleted. On any exception the staging folder is removed and
    `out_dir` is untouched.
    """
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=STAGING_SUFFIX, dir=out_dir.parent)
    )
    try:
        yield staging
        old: Path | None = None
        if _is_empty_dir(out_dir):
            out_dir.rmdir()
        elif out_dir.exists():
            if not overwrite:
                raise ExportError(f"{out_dir} was written to during the export; nothing replaced")
            old = Path(
                tempfile.mkdtemp(
                    prefix=f".{out_dir.name}.old.", suffix=STAGING_SUFFIX, dir=out_dir.parent
                )
            )
            os.replace(out_dir, old / out_dir.name)
        os.rename(staging, out_dir)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _write_json(path: Path, data: dict[str, Any]) -> None:
    text = json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False, allow_nan=False)
    write_bytes_atomic(path, (text + "\n").encode("utf-8"))


def _export_record(
    export_format: ExportFormat, selection: _Selection, stats: ExportStats, extra: dict[str, Any]
) -> dict[str, Any]:
    """`export.json`: the release, its lineage, the exporter's code version and the counts."""
    release = selection.release
    return {
        "format": export_format,
        "release": release.name,
        "release_created_at": release.created_at.isoformat(),
        "where": release.where,
        "policy_versions": release.policy_versions,
        "tokenizer_sha256": release.tokenizer_sha256,
        "tokenizer_is_demo": release.tokenizer_is_demo,
        "code_version": release.code_version,
        "export_code_version": code_version(),
        "shards": [{"shard": s.shard, "sha256": s.sha256} for s in release.shards],
        "counts": stats.counts(),
        **extra,
    }


# ---------------------------------------------------------------------------
# The exports


def export_vita_jsonl(
    project: Project,
    release_name: str,
    out_dir: Path,
    tasks: Iterable[str] = VITA_TASKS,
    *,
    overwrite: bool = False,
    absolute_paths: bool = False,
) -> ExportStats:
    """Write release `release_name` as VITA-Audio JSONL with audio files and code caches.

    Layout and formats are in the module docstring: `<split>.jsonl` per split,
    `audio/<key>.flac` (the shard's FLAC bytes), `audio/<key>_glm4voice.json`
    (the codes), `export.json`. `tasks` is a non-empty subset of ("asr",
    "tts"), written in the order given. `absolute_paths` writes the `audios`
    entries as absolute paths under the final `out_dir` instead of paths
    relative to it. A non-empty `out_dir` is refused unless `overwrite` is set
    and it holds an earlier export (`export.json`). Raises ExportError (and
    ReleaseError for an unknown release); on any error nothing is written.
    """
    task_list = list(dict.fromkeys(tasks))
    if not task_list or any(t not in VITA_TASKS for t in task_list):
        raise ExportError(f"tasks must be a non-empty subset of {VITA_TASKS}, got {task_list}")
    out_dir = _check_out_dir(project, out_dir, overwrite)
    selection = _select(project, release_name)

    n_exported = n_without_text = n_special = 0
    duration_s = 0.0
    lines_per_split: dict[str, int] = {}
    utterances_per_split: dict[str, int] = {}
    with _staged(out_dir, overwrite) as staging:
        (staging / AUDIO_DIR).mkdir()
        for split in selection.splits():
            n_lines = n_in_split = 0
            # Files inside the staging folder need no rename of their own: the folder's
            # rename publishes them all at once. Lines stream out; nothing grows in memory.
            with (staging / f"{split}.jsonl").open("w", encoding="utf-8", newline="\n") as jsonl:
                for sample in _iter_samples(project.lake, selection, split):
                    n_in_split += 1
                    text = sample.meta.text
                    if text is None or not text.strip():
                        n_without_text += 1
                        continue
                    if _SPECIAL_TOKEN.search(text):
                        n_special += 1
                        continue
                    audio_rel = f"{AUDIO_DIR}/{sample.key}.flac"
                    audio_path = staging / audio_rel
                    audio_path.write_bytes(sample.flac)
                    code_cache_path(audio_path).write_bytes(encode_code_cache(sample.codes))
                    n_exported += 1
                    duration_s += sample.duration_s
                    audio_ref = str(out_dir / audio_rel) if absolute_paths else audio_rel
                    for example in vita_examples(text, audio_ref, task_list):
                        jsonl.write(json.dumps(example, ensure_ascii=False, allow_nan=False))
                        jsonl.write("\n")
                        n_lines += 1
                jsonl.flush()
                os.fsync(jsonl.fileno())
            lines_per_split[split] = n_lines
            utterances_per_split[split] = n_in_split
        stats = ExportStats(
            format="vita-jsonl",
            release=release_name,
            out_dir=out_dir,
            n_utterances=len(selection.kept),
            n_exported=n_exported,
            n_duplicates_skipped=selection.n_duplicates,
            n_without_text=n_without_text,
            n_special_token_text=n_special,
            examples_per_split=lines_per_split,
            utterances_per_split=utterances_per_split,
            duration_s=duration_s,
        )
        extra = {
            "tasks": task_list,
            "files": {split: f"{split}.jsonl" for split in lines_per_split},
            "audio_paths": "absolute" if absolute_paths else "relative to this folder",
            "code_cache": {
                "path": "<audio path without extension>" + CODE_CACHE_SUFFIX,
                "format": "JSON array of integer GLM-4-Voice code ids in [0, 16384)",
            },
        }
        _write_json(staging / EXPORT_FILE, _export_record("vita-jsonl", selection, stats, extra))
    return stats


def hf_export_features() -> datasets.Features:
    """The features of `export_hf`'s dataset (audio at 16 kHz, codes as uint16 lists)."""
    import datasets  # an export dependency only

    string = datasets.Value("string")
    return datasets.Features(
        {
            "key": string,
            "utterance_id": string,
            "audio": datasets.Audio(sampling_rate=TARGET_SAMPLE_RATE_HZ),
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
        yield {
            "key": sample.key,
            "utterance_id": sample.utterance_id,
            # Encoded bytes with a path: `Audio` stores them as they are, no decoding.
            "audio": {"bytes": sample.flac, "path": f"{sample.key}.flac"},
            "codes": sample.codes,
            "text": sample.meta.text,
            "speaker": sample.speaker,
            "language": sample.language,
            "duration_s": sample.duration_s,
            "source": sample.source,
        }


def export_hf(
    project: Project, release_name: str, out_dir: Path, *, overwrite: bool = False
) -> ExportStats:
    """Save release `release_name` as a Hugging Face `DatasetDict` (one split per release split).

    Columns and types are `hf_export_features()`; rows are sorted by key within
    each split and include utterances without text (`text` null). The folder
    also holds `export.json` (lineage and counts). Out-folder rules and errors
    as in `export_vita_jsonl`.
    """
    import datasets  # an export dependency only

    out_dir = _check_out_dir(project, out_dir, overwrite)
    selection = _select(project, release_name)
    features = hf_export_features()
    shard_digest = hashlib.sha256(
        json.dumps([[s.shard, s.sha256] for s in selection.release.shards]).encode()
    ).hexdigest()

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
                fingerprint = hashlib.sha256(
                    f"{release_name}\0{split}\0{shard_digest}".encode()
                ).hexdigest()[:16]
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
        extra = {"splits": list(rows_per_split), "sample_rate_hz": TARGET_SAMPLE_RATE_HZ}
        _write_json(staging / EXPORT_FILE, _export_record("hf", selection, stats, extra))
    return stats
