"""Content hashing: one definition of every hash voxlake records, one name per thing hashed.

Every hash is hex sha256. A folder's hash is the sha256 of its `sha256sum`
listing (`<file sha256>  <relative path>` lines), so it can be
checked with coreutils. A configuration's hash is the sha256 of its canonical
JSON (sorted keys, no spaces), so equal settings give equal hashes whatever
the field order in the YAML.

>>> listing_sha256([("a.txt", "ff"), ("b.txt", "00")]) == bytes_sha256(b"ff  a.txt\\n00  b.txt\\n")
True
>>> canonical_json_sha256({"b": 1, "a": [1, 2]}) == bytes_sha256(b'{"a":[1,2],"b":1}')
True
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

CHUNK_BYTES = 1 << 20


def bytes_sha256(data: bytes) -> str:
    """Hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path, chunk_bytes: int = CHUNK_BYTES) -> str:
    """Hex sha256 of a file's content, read in chunks (bounded memory for any size)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def listing_sha256(file_hashes: Iterable[tuple[str, str]]) -> str:
    """sha256 of the `sha256sum` listing of `(relative path, file sha256)` pairs, in order."""
    listing = "".join(f"{sha256}  {name}\n" for name, sha256 in file_hashes)
    return bytes_sha256(listing.encode("utf-8"))


def folder_sha256(folder: Path, exclude: tuple[str, ...] = ()) -> str:
    """Content hash of every file under `folder` (`listing_sha256` of their hashes).

    Files named in `exclude` (relative POSIX paths) are left out, e.g. the info
    file that records the hash itself.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    hashes = []
    # Sorted as paths (part by part), the order the recorded hashes were made in.
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if relative not in exclude:
            hashes.append((relative, file_sha256(path)))
    return listing_sha256(hashes)


def canonical_json_sha256(value: Any) -> str:
    """sha256 of `value` as canonical JSON (sorted keys, compact separators, UTF-8)."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return bytes_sha256(canonical.encode("utf-8"))
