"""Options of each source kind, as written under `options:` in `voxlake.yaml`.

Each model forbids unknown keys, so a misspelt option is an error that names it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

AUDIO_EXTENSIONS = ["wav", "flac", "mp3", "ogg", "opus", "m4a"]


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LibriSpeechOptions(_Options):
    """LibriSpeech: `path` is the `LibriSpeech/` folder holding the split folders."""

    splits: list[str] | None = Field(None, description="splits to read; default: all present")


class WenetSpeechOptions(_Options):
    """WenetSpeech: `path` is the folder holding `WenetSpeech.json` and `audio/`."""

    json_file: str = Field("WenetSpeech.json", description="metadata file, relative to path")
    subsets: list[str] | None = Field(
        None, description="keep segments in any of these subsets (L M S W DEV TEST_NET ...)"
    )


class EmiliaOptions(_Options):
    """Emilia: `path` holds `Emilia/<L>/<L>-B000000.tar` (and `Emilia-YODAS/...`)."""

    collections: list[str] = Field(
        default_factory=lambda: ["Emilia", "Emilia-YODAS"], description="top folders to read"
    )
    languages: list[str] | None = Field(None, description="language folders (EN ZH ...)")


class AudioFolderOptions(_Options):
    """A folder tree of audio files with optional same-stem transcripts."""

    extensions: list[str] = Field(default_factory=lambda: list(AUDIO_EXTENSIONS))
    transcript_extensions: list[str] = Field(default_factory=lambda: ["txt", "lab"])
    require_text: bool = Field(False, description="reject audio without a transcript")
    language: str | None = Field(None, description="language code of every file")


class TableOptions(_Options):
    """A CSV/TSV/JSONL manifest: `path` is the file; audio paths are relative to its folder."""

    path_column: str = "path"
    id_column: str = "id"
    text_column: str = "text"
    speaker_column: str = "speaker"
    language_column: str = "language"
    start_column: str = "start"
    end_column: str = "end"
    language: str | None = Field(None, description="language when the table has none")
    require_text: bool = False


class VitaJsonlOptions(_Options):
    """VITA-Audio training JSONL: `path` is the file; audio paths relative to its folder."""

    language: str | None = None


class HFDatasetOptions(_Options):
    """A Hugging Face dataset: a `save_to_disk` folder, or parquet file(s) with an audio struct."""

    splits: list[str] | None = None
    audio_column: str = "audio"
    id_column: str = "id"
    text_column: str = "text"
    speaker_column: str = "speaker_id"
    language_column: str = "language"
    language: str | None = None


class LhotseOptions(_Options):
    """lhotse manifests: `path` is a folder of manifests (or Shar), or one cuts manifest.

    With no option set, the folder is searched for Shar, then `*cuts*.jsonl[.gz]`, then
    `*recordings*` + `*supervisions*` pairs (see `pipelines/sources/lhotse.py`).
    """

    cuts: str | None = Field(
        None, description="a CutSet manifest or a Shar folder, relative to path"
    )
    recordings: str | None = Field(None, description="a RecordingSet manifest, relative to path")
    supervisions: str | None = Field(
        None, description="the SupervisionSet manifest that goes with `recordings`"
    )
    language: str | None = Field(None, description="language where a supervision has none")
    split: str | None = Field(
        None, description="split of every item; default: the cut's or supervision's custom.split"
    )
    require_text: bool = Field(False, description="reject spans without a transcript")


OPTIONS_BY_KIND: dict[str, type[BaseModel]] = {
    "librispeech": LibriSpeechOptions,
    "wenetspeech": WenetSpeechOptions,
    "emilia": EmiliaOptions,
    "audio_folder": AudioFolderOptions,
    "table": TableOptions,
    "vita_jsonl": VitaJsonlOptions,
    "hf_dataset": HFDatasetOptions,
    "lhotse": LhotseOptions,
}
