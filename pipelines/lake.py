"""The lake: one folder of immutable per-unit files, written atomically.

Every writer goes through `atomic_write`: the bytes land in a temporary file
in the destination folder and are renamed into place only when complete, so a
reader never sees half a file and a killed step leaves nothing a re-run trips
over. When the new bytes equal the file already there, the file is left alone
(its mtime too), so an unchanged re-run changes nothing on disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

TMP_SUFFIX = ".tmp"


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file's content."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_write(path: Path) -> Iterator[io.BufferedWriter]:
    """Open a temporary file next to `path`; rename it onto `path` when the block succeeds.

    On any exception the temporary file is removed and `path` is untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists() and sha256_file(path) == sha256_file(tmp):
            tmp.unlink()
            return
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_write(path) as handle:
        handle.write(data)


def write_parquet_atomic(path: Path, table: pa.Table) -> None:
    """Write `table` as Parquet to `path` atomically and deterministically.

    Fixed writer settings make identical tables give identical bytes.
    """
    with atomic_write(path) as handle:
        pq.write_table(
            table,
            handle,
            compression="zstd",
            use_dictionary=True,
            write_statistics=True,
            row_group_size=64 * 1024,
        )


@dataclass(frozen=True)
class Lake:
    """Paths inside the lake root. Each step writes only its own unit's files."""

    root: Path

    def inventory_dir(self, source: str) -> Path:
        """Folder of a source's unit plans (`<unit>.jsonl`) and its `units.json`."""
        return self.root / "inventory" / source

    def inventory_items(self, source: str, unit: str) -> Path:
        """Inventory items of one unit, one JSON object per line."""
        return self.inventory_dir(source) / f"{unit}.jsonl"

    def units_index(self, source: str) -> Path:
        """The list of a source's units with their input counts and hashes."""
        return self.inventory_dir(source) / "units.json"

    def manifest(self, source: str, unit: str) -> Path:
        """One unit's manifest: one row per input utterance."""
        return self.root / "manifests" / source / f"{unit}.parquet"

    def quality(self, source: str, unit: str) -> Path:
        """One unit's quality decisions: one row per manifest row."""
        return self.root / "quality" / source / f"{unit}.parquet"

    def tokens(self, source: str, unit: str) -> Path:
        """One unit's GLM-4-Voice codes: one row per accepted utterance."""
        return self.root / "tokens" / source / f"{unit}.parquet"

    def shards_dir(self, source: str, unit: str) -> Path:
        """Folder of one unit's shards and their `index.parquet`."""
        return self.root / "shards" / source / unit

    def release_dir(self, name: str) -> Path:
        """Folder of one release: `release.json` and `utterances.parquet`."""
        return self.root / "releases" / name

    def reports_dir(self) -> Path:
        """Folder of the HTML reports."""
        return self.root / "reports"

    def manifests_glob(self) -> str:
        """Glob over every manifest file, for DuckDB/polars scans."""
        return str(self.root / "manifests" / "*" / "*.parquet")


def remove_stale_temporaries(folder: Path) -> int:
    """Delete temporary files a killed writer left in `folder`; return how many."""
    removed = 0
    if folder.is_dir():
        for tmp in folder.rglob(f".*{TMP_SUFFIX}"):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed
