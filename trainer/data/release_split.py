"""Release splits: read a release's ``release.json`` and ``utterances.parquet`` and select a split.

`load_release_split` resolves the CODE shards (absolute paths inside the lake root) holding
a split's utterances (``ReleaseUtterance.codes_shard``, listed in ``Release.code_shards``)
and which code shard and source each utterance key has; the streaming reader
(`trainer.data.stream`) reads only those shards and keeps only those keys. Training needs
the codes and the transcript, both in the code shards, so the audio shards
(``ReleaseUtterance.shard``, ``Release.shards``) are never resolved, opened or required to
exist: a training machine needs the code shards of the release only.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pyarrow.compute as pc
import pyarrow.parquet as pq

from schemas.release import (
    RELEASE_FILE,
    RELEASE_NAME_PATTERN,
    RELEASES_DIR,
    SPLITS,
    UTTERANCES_FILE,
    Release,
)


@dataclass(frozen=True)
class ReleaseSplit:
    """One split of a release: the code shards to read and the utterance keys to keep.

    Attributes:
        lake_root: the lake root the shard paths were resolved under.
        release: the release's ``release.json``.
        split: ``train``, ``dev`` or ``test``.
        code_shards: absolute paths of the code shards holding at least one utterance
            of the split, sorted.
        source_by_key: the split's utterance keys (WebDataset keys) and their source.
        code_shard_by_key: the code shard (absolute path) each key lies in.
    """

    lake_root: Path
    release: Release
    split: str
    code_shards: tuple[Path, ...]
    source_by_key: Mapping[str, str] = field(repr=False)
    code_shard_by_key: Mapping[str, Path] = field(repr=False)

    @property
    def n_utterances(self) -> int:
        """Utterances in the split (dropped duplicates are in no split)."""
        return len(self.source_by_key)

    @property
    def n_code_shards(self) -> int:
        """Code shards holding at least one utterance of the split."""
        return len(self.code_shards)

    def keys(self, source: str | None = None) -> list[str]:
        """The split's keys, sorted; only those of `source` when given."""
        return sorted(k for k, s in self.source_by_key.items() if source is None or s == source)

    def n_by_source(self) -> dict[str, int]:
        """Utterances per source."""
        return dict(sorted(Counter(self.source_by_key.values()).items()))


def _resolve_shard(lake_root: Path, shard: str, release_file: Path) -> Path:
    """The absolute path of a lake-relative shard path; ValueError if it leaves the lake."""
    relative = PurePosixPath(shard)
    if not shard or "\\" in shard or relative.is_absolute() or ".." in relative.parts:
        raise ValueError(f"{release_file}: shard path {shard!r} is not inside the lake root")
    root = lake_root.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise ValueError(
            f"{release_file}: shard path {shard!r} resolves to {path}, outside the lake root {root}"
        )
    return path


def _read_release(release_file: Path) -> Release:
    """`release.json`, refusing (with what to do) a release made before code shards existed."""
    text = release_file.read_text(encoding="utf-8")
    if "code_shards" not in json.loads(text):
        raise ValueError(
            f"{release_file} lists no code_shards: the release was made before codes were "
            "shards of their own; create a new release to train on"
        )
    return Release.model_validate_json(text)


def load_release_split(lake_root: Path, release: str, split: str) -> ReleaseSplit:
    """Read release `release` of the lake at `lake_root` and select `split`.

    FileNotFoundError naming the file when the release (or its utterances file) does
    not exist; ValueError for an unknown split, an invalid release name, a release
    without code shards (made before they existed), a code shard path that leaves the
    lake root, an utterance in a code shard the release does not list, or a key that
    appears twice in the split. Nothing of the audio shards is read or checked.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if not re.fullmatch(RELEASE_NAME_PATTERN, release):
        raise ValueError(f"invalid release name {release!r}")
    lake_root = Path(lake_root)
    folder = lake_root / RELEASES_DIR / release
    release_file = folder / RELEASE_FILE
    if not release_file.is_file():
        raise FileNotFoundError(f"no release {release!r}: {release_file} does not exist")
    description = _read_release(release_file)
    utterances_file = folder / UTTERANCES_FILE
    if not utterances_file.is_file():
        raise FileNotFoundError(f"release {release!r} has no {utterances_file}")
    code_paths = {
        s.shard: _resolve_shard(lake_root, s.shard, release_file) for s in description.code_shards
    }

    columns_present = set(pq.read_schema(utterances_file).names)
    if "codes_shard" not in columns_present:
        raise ValueError(
            f"{utterances_file} has no codes_shard column: the release was made before "
            "codes were shards of their own; create a new release to train on"
        )
    table = pq.read_table(utterances_file, columns=["key", "codes_shard", "source", "split"])
    table = table.filter(pc.equal(table["split"], split))
    columns = table.to_pydict()
    source_by_key: dict[str, str] = {}
    shard_by_key: dict[str, Path] = {}
    for key, shard, source in zip(
        columns["key"], columns["codes_shard"], columns["source"], strict=True
    ):
        if shard not in code_paths:
            raise ValueError(
                f"{utterances_file}: {key!r} lies in code shard {shard!r}, "
                f"not in the code_shards of {release_file}"
            )
        if key in source_by_key:
            raise ValueError(f"{utterances_file}: key {key!r} appears twice in split {split!r}")
        source_by_key[key] = source
        shard_by_key[key] = code_paths[shard]
    return ReleaseSplit(
        lake_root=lake_root,
        release=description,
        split=split,
        code_shards=tuple(sorted(set(shard_by_key.values()))),
        source_by_key=source_by_key,
        code_shard_by_key=shard_by_key,
    )
