"""The release contract: an immutable, named selection of shards (a dataset version).

A release lives in `lake/releases/<name>/`: `release.json` (`Release`: what was
selected, how, and the lineage: the checksums of its audio shards and of its code
shards, policy versions, tokenizer hashes, code version) and `utterances.parquet`
(`ReleaseUtterance` rows: which utterances, in which split, in which audio shard
and which code shard). Creating a release that exists is an error. Training reads
the code shards only; readers that want the audio join the two by key.

Evaluation sets: a source's own test splits (`ReleaseSpec.eval_splits`, by default
LibriSpeech `test-clean`/`test-other` and WenetSpeech `test_net`/`test_meeting`) are
named evaluation sets, `<source>/<split>`. A release puts an evaluation-set utterance
it selects into `test`, never into train or dev (`ReleaseUtterance.eval_set` names the
set), and holds back from every split an utterance with the same 16 kHz PCM as any
evaluation-set utterance of the lake (`held_back_for` names it), whatever its source.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.arrow import arrow_schema

RELEASE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"

SPLITS: tuple[str, ...] = ("train", "dev", "test")
"""The splits of every release, in order."""

RELEASES_DIR = "releases"
"""The lake folder holding one folder per release (readers outside `pipelines/`, such as the
trainer, find releases under it)."""

RELEASE_FILE = "release.json"
"""The `Release` record inside a release folder."""

UTTERANCES_FILE = "utterances.parquet"
"""The `ReleaseUtterance` rows inside a release folder."""

DEFAULT_EVAL_SPLITS: tuple[str, ...] = ("test-clean", "test-other", "test_net", "test_meeting")
"""Source splits that are evaluation sets unless a release spec says otherwise: the
LibriSpeech and WenetSpeech test sets upstream reports WER/CER on (split names as the
connectors write them in the manifest's `split`)."""


def eval_set_name(source: str, split: str) -> str:
    """The name of a source split's evaluation set.

    >>> eval_set_name("librispeech", "test-clean")
    'librispeech/test-clean'
    """
    return f"{source}/{split}"


class ReleaseShard(BaseModel):
    """One shard (audio or codes) a release reads from, with the checksum it had when released."""

    model_config = ConfigDict(extra="forbid")

    shard: str = Field(description="path relative to the lake root")
    sha256: str
    bytes: int
    source: str
    unit: str


class ReleaseUtterance(BaseModel):
    """One utterance in a release (or dropped from it as a duplicate)."""

    model_config = ConfigDict(extra="forbid")

    utterance_id: str
    key: str
    shard: str = Field(description="the audio shard, relative to the lake root")
    codes_shard: str = Field(description="the aligned code shard, relative to the lake root")
    source: str
    language: str | None
    speaker: str | None
    duration_s: float
    split: Literal["train", "dev", "test"] | None = Field(
        description="None for a dropped duplicate"
    )
    duplicate_of: str | None = Field(None, description="kept utterance with the same PCM hash")
    eval_set: str | None = Field(
        None, description="the evaluation set (`<source>/<split>`) it belongs to; split `test`"
    )
    held_back_for: str | None = Field(
        None,
        description="evaluation-set utterance with the same PCM: this one is in no split",
    )


class Release(BaseModel):
    """`release.json`: the selection, its parameters and its lineage."""

    model_config = ConfigDict(extra="forbid")

    name: str
    created_at: dt.datetime
    where: str = Field(description="SQL predicate over the catalogue's `utterances`")
    split_by: Literal["speaker", "utterance"] = "speaker"
    dev_fraction: float = Field(0.0, ge=0, lt=1)
    test_fraction: float = Field(0.0, ge=0, lt=1)
    dedup: bool = False
    n_utterances: int
    duration_s: float
    n_duplicates_dropped: int = 0
    eval_splits: list[str] = Field(
        default_factory=list, description="source splits treated as evaluation sets"
    )
    eval_sets: dict[str, int] = Field(
        default_factory=dict, description="evaluation sets in `test`: name -> utterances"
    )
    n_held_back: int = Field(
        0, description="utterances kept out of every split: same PCM as an evaluation-set one"
    )
    policy_versions: list[str]
    tokenizer_sha256: list[str]
    tokenizer_is_demo: bool
    code_version: str
    shards: list[ReleaseShard] = Field(description="the audio shards")
    code_shards: list[ReleaseShard] = Field(
        description="the code shards (one tokenizer), aligned with the audio shards"
    )


RELEASE_UTTERANCE_ARROW_SCHEMA = arrow_schema(ReleaseUtterance)


class ReleaseSpec(BaseModel):
    """A release to create, as written under `releases:` in voxlake.yaml (or on the CLI)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=RELEASE_NAME_PATTERN)
    where: str = Field("TRUE", description="SQL predicate over the catalogue's `utterances`")
    split_by: Literal["speaker", "utterance"] = "speaker"
    dev: float = Field(0.0, ge=0, lt=1, description="share of speakers (or utterances) in dev")
    test: float = Field(0.0, ge=0, lt=1, description="share in test")
    dedup: bool = Field(False, description="drop exact duplicates (same 16 kHz PCM)")
    eval_splits: list[str] = Field(
        default_factory=lambda: list(DEFAULT_EVAL_SPLITS),
        description="source splits that are evaluation sets: `split` (any source) or "
        "`source/split`; their utterances go to `test` only, and their PCM duplicates from "
        "any source are held back",
    )
