"""A tokenizer checkpoint folder's files and its content hash, without torch.

`tokenizer_checkpoint_sha256` is the checkpoint's content hash: the sha256 of the text
`sha256sum config.json model.safetensors preprocessor_config.json` prints. Per-file
hashes are cached in `<folder>/.voxlake-sha256.json`, keyed by size and mtime, so a
1.46 GB checkpoint is hashed once, not on every load. Kept apart from `loading` so
that versioning the `tokens` asset by this hash does not load torch.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

from schemas.hashing import file_sha256, listing_sha256

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PREPROCESSOR_FILE = "preprocessor_config.json"
CHECKPOINT_FILES = (CONFIG_FILE, WEIGHTS_FILE, PREPROCESSOR_FILE)
HASH_SIDECAR = ".voxlake-sha256.json"
_SIDECAR_FORMAT = "voxlake-sha256/1"


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be loaded: missing files, or tensors that do not fit."""


# --- content hash ------------------------------------------------------------------------------


def _read_sidecar(path: Path) -> dict[str, dict]:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as error:
        log.warning("ignoring unreadable hash cache %s (%s); hashing again", path, error)
        return {}
    files = payload.get("files") if isinstance(payload, dict) else None
    if payload.get("format") != _SIDECAR_FORMAT or not isinstance(files, dict):
        log.warning("ignoring hash cache %s of an unknown format; hashing again", path)
        return {}
    return files


def _write_sidecar(path: Path, files: dict[str, dict]) -> None:
    text = json.dumps({"format": _SIDECAR_FORMAT, "files": files}, indent=1, sort_keys=True)
    try:
        handle, temporary = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text + "\n")
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as error:
        # a read-only model folder is legitimate; the hash is then recomputed per load
        log.warning("cannot cache checkpoint hashes in %s (%s); they will be recomputed on "
                    "every load", path, error)


def checkpoint_file_hashes(directory: Path) -> dict[str, str]:
    """Hex sha256 of each checkpoint file, by name, reusing the sidecar cache when valid.

    A cached hash is reused only when the file's size and mtime (ns) equal
    those recorded with it; otherwise the file is hashed and the cache
    rewritten (atomically; skipped with a warning when the folder is read-only).
    """
    directory = Path(directory)
    _require_files(directory)
    sidecar = directory / HASH_SIDECAR
    cached = _read_sidecar(sidecar)
    updated: dict[str, dict] = {}
    changed = False
    for name in CHECKPOINT_FILES:
        stat = (directory / name).stat()
        entry = cached.get(name)
        if (isinstance(entry, dict) and entry.get("size") == stat.st_size
                and entry.get("mtime_ns") == stat.st_mtime_ns
                and isinstance(entry.get("sha256"), str)):
            updated[name] = entry
            continue
        updated[name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                         "sha256": file_sha256(directory / name)}
        changed = True
    if changed or set(cached) != set(updated):
        _write_sidecar(sidecar, updated)
    return {name: updated[name]["sha256"] for name in CHECKPOINT_FILES}


def tokenizer_checkpoint_sha256(directory: Path) -> str:
    """Content hash of a checkpoint folder (hex sha256; see the module docstring)."""
    hashes = checkpoint_file_hashes(directory)
    return listing_sha256((name, hashes[name]) for name in CHECKPOINT_FILES)


# --- loading -------------------------------------------------------------------------------


def _require_files(directory: Path) -> None:
    if not directory.is_dir():
        raise CheckpointError(f"tokenizer checkpoint folder {directory} does not exist")
    absent = [name for name in CHECKPOINT_FILES if not (directory / name).is_file()]
    if not absent:
        return
    hint = ""
    if WEIGHTS_FILE in absent and (directory / "pytorch_model.bin").exists():
        hint = (" (it has pytorch_model.bin, which voxlake does not read: unpickling can run "
                "code; convert it to safetensors first)")
    raise CheckpointError(f"tokenizer checkpoint {directory} lacks {', '.join(absent)}{hint}")
