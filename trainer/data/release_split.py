"""Release splits: read a release's ``release.json`` and ``utterances.parquet`` and select a split.

`load_release_split` resolves the shards (absolute paths inside the lake root) holding a
split's utterances and which shard and source each utterance key has; the streaming
reader (`trainer.data.stream`) reads only those shards and keeps only those keys.
"""

from __future__ import annotations

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
    """One split of a release: the shards to read and the utterance keys to keep.

    Attributes:
        lake_root: the lake root the shard paths were resolved under.
        release: the release's ``release.json``.
        split: ``train``, ``dev`` or ``test``.
        shards: absolute paths of the shards holding at least one utterance of the
            split, sorted.
        source_by_key: the split's utterance keys (WebDataset keys) and their source.
        shard_by_key: the shard (absolute path) each key lies in.
    """

    lake_root: Path
    release: Release
    split: str
    shards: tuple[Path, ...]
    source_by_key: Mapping[str, str] = field(repr=False)
    shard_by_key: Mapping[str, Path] = field(repr=False)

    @property
    def n_utterances(self) -> int:
        """Utterances in the split (dropped duplicates are in no split)."""
        return len(self.source_by_key)

    @property
    def n_shards(self) -> int:
        """Shards holding at least one utterance of the split."""
        return len(self.shards)

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


def load_release_split(lake_root: Path, release: str, split: str) -> ReleaseSplit:
    """Read release `release` of the lake at `lake_root` and select `split`.

    FileNotFoundError naming the file when the release (or its utterances file) does
    not exist; ValueError for an unknown split, an invalid release name, a shard path
    that leaves the lake root, an utterance in a shard the release does not list, or
    a key that appears twice in the split.
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
    description = Release.model_validate_json(release_file.read_text(encoding="utf-8"))
    utterances_file = folder / UTTERANCES_FILE
    if not utterances_file.is_file():
        raise FileNotFoundError(f"release {release!r} has no {utterances_file}")
    shard_paths = {
        s.shard: _resolve_shard(lake_root, s.shard, release_file) for s in description.shards
    }

    table = pq.read_table(utterances_file, columns=["key", "shard", "source", "split"])
    table = table.filter(pc.equal(table["split"], split))
    columns = table.to_pydict()
    source_by_key: dict[str, str] = {}
    shard_by_key: dict[str, Path] = {}
    for key, shard, source in zip(columns["key"], columns["shard"], columns["source"], strict=True):
        if shard not in shard_paths:
            raise ValueError(f"{utterances_file}: {key!r} lies in {shard!r}, not in {release_file}")
        if key in source_by_key:
            raise ValueError(f"{utterances_file}: key {key!r} appears twice in split {split!r}")
        source_by_key[key] = source
        shard_by_key[key] = shard_paths[shard]
    return ReleaseSplit(
        lake_root=lake_root,
        release=description,
        split=split,
        shards=tuple(sorted(set(shard_by_key.values()))),
        source_by_key=source_by_key,
        shard_by_key=shard_by_key,
    )
