"""Open a source's audio: an `AudioOpener` rooted where its manifest paths are relative to."""

from __future__ import annotations

from pathlib import Path

from pipelines.audio.ref import AudioOpener
from pipelines.sources.base import source_root
from schemas import (
    SourceConfig,
)


def resolve_source_path(source: SourceConfig, project_dir: Path) -> Path:
    """The source's path, relative paths taken from the project folder."""
    path = Path(source.path).expanduser()
    return path if path.is_absolute() else (project_dir / path)


def source_opener(source: SourceConfig, project_dir: Path) -> AudioOpener:
    """An `AudioOpener` rooted where the source's audio paths are relative to.

    Paths may also point into the source's `allowed_roots` (resolved like its path).
    """
    root = source_root(resolve_source_path(source, project_dir))
    allowed = tuple(
        resolve_source_path(source.model_copy(update={"path": r}), project_dir)
        for r in source.allowed_roots
    )
    return AudioOpener(root, allowed)
