"""The lake files the catalogue reflects, and the entities they belong to.

`scan_lake` lists them with the stat fields that tell a change; the writers compare
that list with the `lake_files` table to find what to reload. Where each kind of
file lives is `Lake`'s business (`pipelines/lake/paths.py`): this module asks it
for every folder and file name.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pipelines.lake.paths import (
    EVAL_UTTERANCES_SUFFIX,
    RECORD_FILE_SUFFIX,
    UNIT_FILE_SUFFIX,
    Lake,
)
from schemas.hashing import canonical_json_sha256

# Lake file kinds, and the entity each kind's files belong to. A unit's `code_index` is
# the one of the configured tokenizer only: codes of other tokenizers are not catalogued.
UNIT_KINDS = ("manifest", "quality", "shard_index", "code_index")
RELEASE_KINDS = ("release", "release_utterances")
GROUP_OF_KIND = {
    **dict.fromkeys(UNIT_KINDS, "unit"),
    "units_index": "source",
    **dict.fromkeys(RELEASE_KINDS, "release"),
    "run": "run",
    "eval": "eval",
    "eval_utterances": "eval",
}
GROUPS = ("unit", "source", "release", "run", "eval")


@dataclass(frozen=True)
class LakeFile:
    """One lake file the catalogue reads, with the stat fields that tell a change.

    Lake files are immutable and replaced by atomic rename, so a changed file
    has a new inode, and (size, mtime_ns, inode) changes with its content;
    hashing every file on each update would read the whole lake.
    """

    path: str  # relative to the lake root, posix
    kind: str
    entity: str  # unit, source, release name, run id or eval id
    size_bytes: int
    mtime_ns: int
    inode: int

    @property
    def group(self) -> str:
        """What the entity is: 'unit', 'source', 'release', 'run' or 'eval'."""
        return GROUP_OF_KIND[self.kind]


def _visible(entries: Iterable[os.DirEntry[str]]) -> list[os.DirEntry[str]]:
    # Names starting with '.' are temporaries of writers still at work (or killed).
    return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)


def _subdirs(folder: Path) -> list[os.DirEntry[str]]:
    if not folder.is_dir():
        return []
    with os.scandir(folder) as entries:
        return [e for e in _visible(entries) if e.is_dir()]


def _files(folder: str | Path, suffix: str) -> list[os.DirEntry[str]]:
    with os.scandir(folder) as entries:
        return [e for e in _visible(entries) if e.name.endswith(suffix) and e.is_file()]


def scan_lake(lake: Lake, tokenizer_sha256: str | None) -> list[LakeFile]:
    """Every lake file the catalogue reads, sorted by path.

    Per unit: its manifest and quality files, its audio shard index and the code
    shard index of tokenizer `tokenizer_sha256` (the configured one; None while its
    checkpoint does not exist: no code index then); per source: its units index; per
    release: its `Release` record and utterances; every training-run and evaluation
    record, and each evaluation's per-utterance scores (`Lake` says where each lies).

    The code index's path names its tokenizer, so configuring another tokenizer
    changes the files of exactly the units that have codes of either.
    """
    root = lake.root
    found: list[LakeFile] = []

    def add(path: str | Path, kind: str, entity: str) -> None:
        stat = os.stat(path)
        relative = Path(path).relative_to(root).as_posix()
        found.append(LakeFile(relative, kind, entity, stat.st_size, stat.st_mtime_ns, stat.st_ino))

    for kind, folder in (("manifest", lake.manifests_dir()), ("quality", lake.quality_dir())):
        for source_dir in _subdirs(folder):
            for entry in _files(source_dir.path, UNIT_FILE_SUFFIX):
                add(entry.path, kind, entry.name.removesuffix(UNIT_FILE_SUFFIX))
    for source_dir in _subdirs(lake.shards_root()):
        for unit_dir in _subdirs(Path(source_dir.path)):
            index = lake.shard_index(source_dir.name, unit_dir.name)
            if index.is_file():
                add(index, "shard_index", unit_dir.name)
    if tokenizer_sha256 is not None:
        for source_dir in _subdirs(lake.codes_root(tokenizer_sha256)):
            for unit_dir in _subdirs(Path(source_dir.path)):
                index = lake.code_index(tokenizer_sha256, source_dir.name, unit_dir.name)
                if index.is_file():
                    add(index, "code_index", unit_dir.name)
    for source_dir in _subdirs(lake.inventory_root()):
        units_json = lake.units_index(source_dir.name)
        if units_json.is_file():
            add(units_json, "units_index", source_dir.name)
    for release_dir in _subdirs(lake.releases_dir()):
        for path, kind in (
            (lake.release_file(release_dir.name), "release"),
            (lake.release_utterances(release_dir.name), "release_utterances"),
        ):
            if path.is_file():
                add(path, kind, release_dir.name)
    for folder, kind in ((lake.runs_dir(), "run"), (lake.evals_dir(), "eval")):
        if folder.is_dir():
            for entry in _files(folder, RECORD_FILE_SUFFIX):
                add(entry.path, kind, entry.name.removesuffix(RECORD_FILE_SUFFIX))
    if lake.evals_dir().is_dir():
        for entry in _files(lake.evals_dir(), EVAL_UTTERANCES_SUFFIX):
            add(entry.path, "eval_utterances", entry.name.removesuffix(EVAL_UTTERANCES_SUFFIX))
    found.sort(key=lambda f: f.path)
    return found


def entity_fingerprints(files: Iterable[LakeFile]) -> dict[str, dict[str, frozenset[tuple]]]:
    """Per group, per entity: the set of its files' identities (path, kind, stat fields)."""
    found: dict[str, dict[str, set[tuple]]] = {g: defaultdict(set) for g in GROUPS}
    for f in files:
        found[f.group][f.entity].add((f.path, f.kind, f.size_bytes, f.mtime_ns, f.inode))
    return {g: {e: frozenset(s) for e, s in by.items()} for g, by in found.items()}


UPSTREAM_GROUPS = ("unit", "source")
"""The groups whose files come from upstream of the catalogue (the per-unit assets and the
inventories); releases, runs and evaluations are written by assets downstream of it."""


def upstream_content_sha256(files: Iterable[LakeFile], tokenizer_sha256: str | None) -> str:
    """Hash of the unit and source files the catalogue holds (path, kind, stat fields) and of
    the tokenizer whose codes it holds: the catalogue's data version.

    It is what a release reads of the catalogue, so a refresh that folds in nothing new
    from upstream keeps it, and what reads the catalogue is not stale because of it. The
    releases, runs and evaluations it folds in too are written downstream of it: they do
    not count, or a release would make itself stale.
    """
    fingerprints = entity_fingerprints(f for f in files if f.group in UPSTREAM_GROUPS)
    identities = sorted(
        list(identity)
        for group in UPSTREAM_GROUPS
        for by in fingerprints[group].values()
        for identity in by
    )
    return canonical_json_sha256({"tokenizer_sha256": tokenizer_sha256, "files": identities})
