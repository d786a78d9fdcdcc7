"""Export a release as VITA-Audio JSONL (`export_vita_jsonl`): the layout VITA-Audio's data loader
reads (`vita_audio/data/dataset_base.py`, `processor/audio_processor.py`)::

    out_dir/
      train.jsonl dev.jsonl test.jsonl      one per split that has kept utterances
      audio/<key>.flac                      the audio shard's FLAC bytes, unchanged (16 kHz mono)
      audio/<key>_glm4voice.json            the GLM-4-Voice codes of that audio, from the
                                            aligned code shard (joined by key)
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

>>> code_cache_path(Path("audio/spk1__utt-0001.flac")).as_posix()
'audio/spk1__utt-0001_glm4voice.json'
>>> encode_code_cache(np.array([123, 4567, 89], dtype=np.uint16))
b'[123, 4567, 89]'
>>> [m["content"] for m in vita_examples("hello", "audio/k.flac", ("tts",))[0]["messages"]]
['Convert the text to speech.\\nhello', '<|audio|>']
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.project import Project
from pipelines.releases.export.staging import (
    EXPORT_FILE,
    ExportError,
    ExportStats,
    _check_out_dir,
    _export_record,
    _iter_samples,
    _select,
    _staged,
    _write_json,
)
from schemas.prompts import ASR_PROMPT, AUDIO_TAG, TTS_PROMPT

AUDIO_DIR = "audio"
CODE_CACHE_SUFFIX = "_glm4voice.json"
VITA_TASKS: tuple[str, ...] = ("asr", "tts")

# A chat special token as the Qwen2 tokenizer would parse it out of plain text.
_SPECIAL_TOKEN = re.compile(r"<\|[^\s<>|]*\|>")


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
                {"role": "user", "content": f"{ASR_PROMPT}\n{AUDIO_TAG}"},
                {"role": "assistant", "content": text},
            ]
        elif task == "tts":
            messages = [
                {"role": "user", "content": f"{TTS_PROMPT}\n{text}"},
                {"role": "assistant", "content": AUDIO_TAG},
            ]
        else:
            raise ValueError(f"unknown task {task!r}; expected one of {VITA_TASKS}")
        examples.append({"messages": messages, "audios": [audio_path]})
    return examples


def _has_text(text: str | None) -> bool:
    return text is not None and text.strip() != ""


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
    `audio/<key>.flac` (the audio shard's FLAC bytes),
    `audio/<key>_glm4voice.json` (the codes of the aligned code shard),
    `export.json`. `tasks` is a non-empty subset of ("asr", "tts"), written in
    the order given. `absolute_paths` writes the `audios`
    entries as absolute paths under the final `out_dir` instead of paths
    relative to it. A non-empty `out_dir` is refused unless `overwrite` is set
    and it holds an earlier export (`export.json`). Raises ExportError (and
    ReleaseError for an unknown release); on any error nothing is written.
    """
    task_list = list(dict.fromkeys(tasks))
    if not task_list or any(t not in VITA_TASKS for t in task_list):
        raise ExportError(f"tasks must be a non-empty subset of {VITA_TASKS}, got {task_list}")
    out_dir = _check_out_dir(project, out_dir, overwrite)
    selection = _select(project, release_name, with_audio=True)

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
                    assert sample.flac is not None  # selected with audio
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
