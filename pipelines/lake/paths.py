"""Where each kind of lake file lives: the only code that knows lake folder and file names.

```
lake/
  inventory/<source>/units.json, <unit>.jsonl
  manifests/<source>/<unit>.parquet
  quality/<source>/<unit>.parquet
  shards/<source>/<unit>/audio-000000.tar …, index.parquet
  codes/<tokenizer>/<source>/<unit>/codes-000000.tar …, index.parquet
  releases/<name>/release.json, utterances.parquet
  runs/<run_id>.json  evals/<eval_id>.json, <eval_id>.utterances.parquet
  checkpoints/<run_id>/  tokenizers/<release>/
  reports/
```
File names inside a shard folder and a release folder are contracts of their
own (`schemas/shards.py`, `schemas/release.py`); this module puts them in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from schemas.release import RELEASE_FILE, RELEASES_DIR, UTTERANCES_FILE
from schemas.shards import INDEX_NAME, tokenizer_dir_name

INVENTORY_DIR = "inventory"
MANIFESTS_DIR = "manifests"
QUALITY_DIR = "quality"
CODES_DIR = "codes"
SHARDS_DIR = "shards"
RUNS_DIR = "runs"
EVALS_DIR = "evals"
CHECKPOINTS_DIR = "checkpoints"
TOKENIZERS_DIR = "tokenizers"
REPORTS_DIR = "reports"
UNITS_INDEX_FILE = "units.json"
UNIT_FILE_SUFFIX = ".parquet"
"""Suffix of a unit's manifest and quality files (`<source>/<unit>.parquet`)."""
RECORD_FILE_SUFFIX = ".json"
"""Suffix of a training-run or evaluation record (`<run_id>.json`, `<eval_id>.json`)."""
EVAL_UTTERANCES_SUFFIX = ".utterances.parquet"
"""Suffix of an evaluation's per-utterance rows (`<eval_id>.utterances.parquet`)."""


@dataclass(frozen=True)
class Lake:
    """Paths inside the lake root. Each step writes only its own unit's files."""

    root: Path

    # --- per source and unit -----------------------------------------------------------

    def inventory_root(self) -> Path:
        """Folder holding every source's inventory folder."""
        return self.root / INVENTORY_DIR

    def inventory_dir(self, source: str) -> Path:
        """Folder of a source's unit plans (`<unit>.jsonl`) and its `units.json`."""
        return self.inventory_root() / source

    def inventory_items(self, source: str, unit: str) -> Path:
        """Inventory items of one unit, one JSON object per line."""
        return self.inventory_dir(source) / f"{unit}.jsonl"

    def units_index(self, source: str) -> Path:
        """The list of a source's units with their input counts and hashes."""
        return self.inventory_dir(source) / UNITS_INDEX_FILE

    def manifests_dir(self) -> Path:
        """Folder of every source's manifests (`<source>/<unit>.parquet`)."""
        return self.root / MANIFESTS_DIR

    def manifest(self, source: str, unit: str) -> Path:
        """One unit's manifest: one row per input utterance."""
        return self.manifests_dir() / source / f"{unit}.parquet"

    def quality_dir(self) -> Path:
        """Folder of every source's quality decisions (`<source>/<unit>.parquet`)."""
        return self.root / QUALITY_DIR

    def quality(self, source: str, unit: str) -> Path:
        """One unit's quality decisions: one row per manifest row."""
        return self.quality_dir() / source / f"{unit}.parquet"

    def shards_root(self) -> Path:
        """Folder of every source's audio shard folders (`<source>/<unit>/`)."""
        return self.root / SHARDS_DIR

    def shards_dir(self, source: str, unit: str) -> Path:
        """Folder of one unit's audio shards and their `index.parquet`."""
        return self.shards_root() / source / unit

    def shard_index(self, source: str, unit: str) -> Path:
        """One unit's audio shard index: where each sample's members lie."""
        return self.shards_dir(source, unit) / INDEX_NAME

    def codes_root(self, tokenizer_sha256: str) -> Path:
        """Folder of one tokenizer's code shard folders (`<source>/<unit>/`)."""
        return self.root / CODES_DIR / tokenizer_dir_name(tokenizer_sha256)

    def codes_dir(self, tokenizer_sha256: str, source: str, unit: str) -> Path:
        """Folder of one unit's code shards (one tokenizer) and their `index.parquet`."""
        return self.codes_root(tokenizer_sha256) / source / unit

    def code_index(self, tokenizer_sha256: str, source: str, unit: str) -> Path:
        """One unit's code shard index for one tokenizer."""
        return self.codes_dir(tokenizer_sha256, source, unit) / INDEX_NAME

    def manifests_glob(self) -> str:
        """Glob over every manifest file, for DuckDB/polars scans."""
        return str(self.manifests_dir() / "*" / "*.parquet")

    # --- lake-wide -----------------------------------------------------------------------

    def releases_dir(self) -> Path:
        """Folder of every release."""
        return self.root / RELEASES_DIR

    def release_dir(self, name: str) -> Path:
        """Folder of one release: `release.json` and `utterances.parquet`."""
        return self.releases_dir() / name

    def release_file(self, name: str) -> Path:
        """A release's `Release` record."""
        return self.release_dir(name) / RELEASE_FILE

    def release_utterances(self, name: str) -> Path:
        """A release's utterances and their splits."""
        return self.release_dir(name) / UTTERANCES_FILE

    def runs_dir(self) -> Path:
        """Folder of the training-run records (`<run_id>.json`)."""
        return self.root / RUNS_DIR

    def run_record(self, run_id: str) -> Path:
        """One training run's record."""
        return self.runs_dir() / f"{run_id}.json"

    def evals_dir(self) -> Path:
        """Folder of the evaluation records (`<eval_id>.json`)."""
        return self.root / EVALS_DIR

    def eval_record(self, eval_id: str) -> Path:
        """One evaluation's record."""
        return self.evals_dir() / f"{eval_id}.json"

    def eval_utterances(self, eval_id: str) -> Path:
        """One evaluation's per-utterance scores (`schemas.training.EvalUtterance` rows)."""
        return self.evals_dir() / f"{eval_id}{EVAL_UTTERANCES_SUFFIX}"

    def eval_report(self, eval_id: str) -> Path:
        """One evaluation's self-contained HTML report."""
        return self.reports_dir() / f"{eval_id}.html"

    def checkpoints_dir(self) -> Path:
        """Folder of the training runs' folders (checkpoints, logs)."""
        return self.root / CHECKPOINTS_DIR

    def run_dir(self, run_id: str) -> Path:
        """One training run's folder (DeepSpeed checkpoints, log, exported checkpoint)."""
        return self.checkpoints_dir() / run_id

    def tokenizers_dir(self) -> Path:
        """Folder of the text tokenizers trained on releases."""
        return self.root / TOKENIZERS_DIR

    def text_tokenizer_dir(self, release: str) -> Path:
        """The text tokenizer trained on one release's transcripts."""
        return self.tokenizers_dir() / release

    def reports_dir(self) -> Path:
        """Folder of the HTML reports."""
        return self.root / REPORTS_DIR
