"""The `inventory[source]` step: run the source's connector and write its unit plans.

`source_fingerprint` says, without reading any audio, whether an inventory made
earlier is still current: `voxlake run` compares it with the one the last
inventory recorded and re-plans a source only when its files or settings changed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from pipelines.audio.opener import resolve_source_path
from pipelines.lake.paths import Lake
from pipelines.sources.base import connector
from pipelines.units import plan_units
from schemas import (
    SourceConfig,
    UnitLimits,
    UnitPlan,
)
from schemas.hashing import canonical_json_sha256

INVENTORY_CODE_VERSION = "2"  # 2: header durations plan units; LibriSpeech chapters split
"""Bumped when unit planning changes (then every source's fingerprint changes)."""


def inventory_source(
    source: SourceConfig,
    project_dir: Path,
    lake: Lake,
    limits: UnitLimits,
    on_unit: Callable[[UnitPlan], None] | None = None,
) -> list[UnitPlan]:
    """Run the source's connector and write its unit plans to the lake."""
    path = resolve_source_path(source, project_dir)
    if not path.exists():
        raise FileNotFoundError(f"source {source.name!r}: path {path} does not exist")
    groups = connector(source.kind.value)(path, source.typed_options())
    return plan_units(source.name, groups, limits, lake, on_unit=on_unit)


def source_fingerprint(source: SourceConfig, project_dir: Path, limits: UnitLimits) -> str:
    """Hash of the source's settings and of every file under its path (name, size, mtime).

    Cheap (a directory walk, no file is opened), and it changes whenever the
    inventory could: a file added, removed, replaced or touched, or an option or
    unit limit edited. Files a manifest points to outside the source's path are not
    walked; their changes are seen by the steps that read them.
    """
    path = resolve_source_path(source, project_dir)
    return canonical_json_sha256(
        {
            "code_version": INVENTORY_CODE_VERSION,
            "source": source.model_dump(mode="json"),
            "limits": limits.model_dump(mode="json"),
            "files": _listing(path),
        }
    )


def _listing(path: Path) -> list[list[object]]:
    """`[relative name, size, mtime_ns]` of every file under `path`, sorted; [] if it is missing."""
    try:
        stat = path.stat()
    except OSError:
        return []
    if not path.is_dir():
        return [[path.name, stat.st_size, stat.st_mtime_ns]]
    entries: list[list[object]] = []
    pending = [path]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as scan:
                for entry in scan:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(Path(entry.path))
                        continue
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue  # vanished mid-walk; the inventory itself will say so
                    # Names as the OS gives them (surrogate-escaped when not UTF-8):
                    # canonical JSON escapes them, so any name hashes.
                    name = os.path.relpath(entry.path, path)
                    entries.append([name, info.st_size, info.st_mtime_ns])
        except OSError:
            entries.append([os.path.relpath(folder, path), -1, -1])
    entries.sort()
    return entries
