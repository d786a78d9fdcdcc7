"""Source connectors, one module per `--kind`; `connector(kind)` finds the module.

Each module exposes `inventory(path: Path, options) -> Iterator[ItemGroup]`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pipelines.units import ItemGroup

Inventory = Callable[[Path, Any], Iterator[ItemGroup]]


def connector(kind: str) -> Inventory:
    """The `inventory` function of the connector for `kind`."""
    module = importlib.import_module(f"pipelines.sources.{kind}")
    return module.inventory


def source_root(path: Path) -> Path:
    """The folder audio paths are relative to: the path itself, or a manifest file's folder."""
    return path if path.is_dir() else path.parent
