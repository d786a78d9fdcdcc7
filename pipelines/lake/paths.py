"""Where each kind of lake file lives: the only code that knows lake folder and file names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
