"""Mutations of a valid corpus on disk, for the connector fuzzer (`test_fuzz.py`).

Each mutation takes the corpus folder and a hypothesis `data` object, draws what
to break (which file, line, JSON node, tar member, byte offset) and breaks it
the way real corpora break: types changed, text re-encoded, files truncated,
records duplicated or reordered, files replaced by links, FIFOs or empty files,
names that are not UTF-8, tar members with unsafe names. A mutation returns a
short description for the failure report.
"""

from __future__ import annotations

import io
import json
import os
import random
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

TEXT_SUFFIXES = (".txt", ".csv", ".tsv", ".jsonl", ".TXT")
JSON_SUFFIXES = (".json", ".jsonl")
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".opus", ".ogg")

# Any JSON value: what a wrong-typed field may hold instead of the right one.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)

Mutation = Callable[[Path, Any], str]


def _files(root: Path, suffixes: tuple[str, ...] | None = None) -> list[Path]:
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        if suffixes is None or path.name.endswith(suffixes):
            found.append(path)
    return found


def _pick(data: Any, paths: list[Path], label: str) -> Path | None:
    if not paths:
        return None
    return paths[data.draw(st.integers(0, len(paths) - 1), label=label)]


def truncate(root: Path, data: Any) -> str:
    """Cut a file (any file) at a drawn fraction of its size."""
    path = _pick(data, _files(root), "file")
    if path is None:
        return "nothing to truncate"
    size = path.stat().st_size
    keep = data.draw(st.integers(0, max(0, size - 1)), label="keep bytes")
    with path.open("r+b") as handle:
        handle.truncate(keep)
    return f"truncate {path.relative_to(root)} to {keep} of {size} bytes"


def garbage(root: Path, data: Any) -> str:
    """Overwrite a file's start with drawn bytes (a corrupt header)."""
    path = _pick(data, _files(root), "file")
    if path is None:
        return "nothing to corrupt"
    noise = data.draw(st.binary(min_size=1, max_size=64), label="bytes")
    with path.open("r+b") as handle:
        handle.write(noise)
    return f"overwrite the start of {path.relative_to(root)} with {len(noise)} bytes"


def empty(root: Path, data: Any) -> str:
    """Make a file zero bytes long."""
    path = _pick(data, _files(root), "file")
    if path is None:
        return "nothing to empty"
    path.write_bytes(b"")
    return f"empty {path.relative_to(root)}"


def delete(root: Path, data: Any) -> str:
    """Remove a file."""
    path = _pick(data, _files(root), "file")
    if path is None:
        return "nothing to delete"
    path.unlink()
    return f"delete {path.relative_to(root)}"


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def duplicate_line(root: Path, data: Any) -> str:
    """Repeat one line of a text manifest (an id listed twice), right after it or at the end."""
    path = _pick(data, _files(root, TEXT_SUFFIXES), "text file")
    lines = _lines(path) if path is not None else []
    if path is None or not lines:
        return "no line to duplicate"
    index = data.draw(st.integers(0, len(lines) - 1), label="line")
    line = lines[index] if lines[index].endswith(b"\n") else lines[index] + b"\n"
    at_end = data.draw(st.booleans(), label="at end")
    if not lines[-1].endswith(b"\n"):
        lines[-1] += b"\n"
    lines.insert(len(lines) if at_end else index + 1, line)
    path.write_bytes(b"".join(lines))
    return f"duplicate line {index + 1} of {path.relative_to(root)}"


def shuffle_lines(root: Path, data: Any) -> str:
    """Reorder the lines of a text manifest (the header may move too)."""
    path = _pick(data, _files(root, TEXT_SUFFIXES), "text file")
    lines = _lines(path) if path is not None else []
    if path is None or len(lines) < 2:
        return "no lines to reorder"
    seed = data.draw(st.integers(0, 2**16), label="seed")
    if not lines[-1].endswith(b"\n"):
        lines[-1] += b"\n"
    random.Random(seed).shuffle(lines)
    path.write_bytes(b"".join(lines))
    return f"shuffle the lines of {path.relative_to(root)} (seed {seed})"


def reencode_line(root: Path, data: Any) -> str:
    """Put bytes that are not UTF-8 (latin-1 text, a stray 0xff) into one line."""
    path = _pick(data, _files(root, (*TEXT_SUFFIXES, ".json")), "text file")
    lines = _lines(path) if path is not None else []
    if path is None or not lines:
        return "no line to re-encode"
    index = data.draw(st.integers(0, len(lines) - 1), label="line")
    bad = data.draw(st.sampled_from([b"caf\xe9", b"\xff\xfe", b"\xc3", b"\x80abc"]), label="bytes")
    body = lines[index].rstrip(b"\r\n")
    cut = data.draw(st.integers(0, len(body)), label="at")
    lines[index] = body[:cut] + bad + body[cut:] + lines[index][len(body) :]
    path.write_bytes(b"".join(lines))
    return f"insert {bad!r} into line {index + 1} of {path.relative_to(root)}"


def crlf_and_bom(root: Path, data: Any) -> str:
    """Write a text manifest with Windows line ends and/or a byte-order mark."""
    path = _pick(data, _files(root, (*TEXT_SUFFIXES, ".json")), "text file")
    if path is None:
        return "no text file"
    raw = path.read_bytes()
    if data.draw(st.booleans(), label="crlf"):
        raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if data.draw(st.booleans(), label="bom"):
        raw = b"\xef\xbb\xbf" + raw
    path.write_bytes(raw)
    return f"CRLF/BOM in {path.relative_to(root)}"


def _json_nodes(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths of every container element (dict key or list index) in a JSON value."""
    nodes: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        for key, child in value.items():
            nodes.append((*path, key))
            nodes.extend(_json_nodes(child, (*path, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            nodes.append((*path, index))
            nodes.extend(_json_nodes(child, (*path, index)))
    return nodes


def _retype(value: Any, data: Any, label: str) -> tuple[Any, str]:
    nodes = _json_nodes(value)
    if not nodes:
        return value, "no JSON node"
    node = nodes[data.draw(st.integers(0, len(nodes) - 1), label=f"{label} node")]
    action = data.draw(st.sampled_from(["retype", "drop", "duplicate"]), label=f"{label} action")
    parent = value
    for key in node[:-1]:
        parent = parent[key]
    last = node[-1]
    if action == "retype":
        parent[last] = data.draw(json_values, label=f"{label} value")
    elif action == "drop":
        del parent[last]
    elif isinstance(parent, list):
        parent.insert(last, json.loads(json.dumps(parent[last])))
    else:
        return value, f"duplicate of a key is a no-op at {node}"
    return value, f"{action} {'/'.join(map(str, node))}"


def retype_json(root: Path, data: Any) -> str:
    """Change, drop or duplicate one node of a JSON document or of one JSONL line."""
    path = _pick(data, _files(root, JSON_SUFFIXES), "json file")
    if path is None:
        return "no JSON file"
    if path.suffix == ".jsonl":
        lines = _lines(path)
        if not lines:
            return "empty JSONL"
        index = data.draw(st.integers(0, len(lines) - 1), label="line")
        try:
            value = json.loads(lines[index])
        except ValueError:
            return "line is not JSON"
        value, what = _retype(value, data, "jsonl")
        lines[index] = (json.dumps(value, ensure_ascii=False) + "\n").encode()
        path.write_bytes(b"".join(lines))
        return f"{what} in line {index + 1} of {path.relative_to(root)}"
    try:
        value = json.loads(path.read_bytes())
    except ValueError:
        return "file is not JSON"
    value, what = _retype(value, data, "json")
    path.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
    return f"{what} in {path.relative_to(root)}"


def link_outside(root: Path, data: Any) -> str:
    """Replace a file by a symlink to a valid file outside the corpus (it must never be read)."""
    path = _pick(data, _files(root), "file")
    if path is None:
        return "nothing to replace"
    outside = root.parent / "outside" / path.name
    outside.parent.mkdir(exist_ok=True)
    outside.write_bytes(path.read_bytes())
    path.unlink()
    path.symlink_to(outside)
    return f"{path.relative_to(root)} -> {outside} (outside the corpus)"


def fifo(root: Path, data: Any) -> str:
    """Replace a file by a FIFO of the same name (reading it would block)."""
    path = _pick(data, _files(root), "file")
    if path is None:
        return "nothing to replace"
    path.unlink()
    os.mkfifo(path)
    return f"{path.relative_to(root)} is a FIFO"


def undecodable_name(root: Path, data: Any) -> str:
    """Rename a file so that its name is not valid UTF-8 (the extension is kept)."""
    path = _pick(data, _files(root), "file")
    if path is None:
        return "nothing to rename"
    stem, dot, suffix = path.name.partition(".")
    new_name = os.fsencode(stem) + b"\xe9" + os.fsencode(dot + suffix)
    os.rename(path, os.path.join(os.fsencode(path.parent), new_name))
    return f"rename {path.relative_to(root)} to {new_name!r}"


def mutate_tar(root: Path, data: Any) -> str:
    """Rewrite one tar: duplicate, drop, rename (unsafely too), retype or cut one member."""
    path = _pick(data, _files(root, (".tar",)), "tar")
    if path is None:
        return "no tar"
    try:
        with tarfile.open(path) as tar:
            members = [(m, tar.extractfile(m).read() if m.isfile() else b"") for m in tar]
    except (tarfile.TarError, OSError, EOFError):
        return f"{path.relative_to(root)} is no longer a readable tar: untouched"
    if not members:
        return "empty tar"
    index = data.draw(st.integers(0, len(members) - 1), label="member")
    action = data.draw(
        st.sampled_from(["duplicate", "drop", "unsafe_name", "retype", "cut", "rename"]),
        label="tar action",
    )
    info, payload = members[index]
    what = f"{action} member {info.name} of {path.relative_to(root)}"
    if action == "duplicate":
        members.insert(index + 1, (info, payload))
    elif action == "drop":
        del members[index]
    elif action == "unsafe_name":
        bad = data.draw(st.sampled_from(["../", "/abs/", "a/../../"]), label="prefix")
        members[index] = (_renamed(info, bad + info.name), payload)
    elif action == "rename":
        stem = data.draw(st.sampled_from(["other", info.name.split(".")[0] + "x"]), label="stem")
        extension = info.name.partition(".")[2]
        members[index] = (_renamed(info, f"{stem}.{extension}"), payload)
    elif action == "retype":
        try:
            value = json.loads(payload)
        except ValueError:
            return what + " (not JSON: untouched)"
        value, detail = _retype(value, data, "member")
        payload = json.dumps(value, ensure_ascii=False).encode()
        members[index] = (info, payload)
        what += f" ({detail})"
    else:
        keep = data.draw(st.integers(0, max(0, len(payload) - 1)), label="keep")
        members[index] = (info, payload[:keep])
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as out:
        for member, body in members:
            copy = tarfile.TarInfo(member.name)
            copy.size = len(body)
            copy.mtime = member.mtime
            out.addfile(copy, io.BytesIO(body))
    path.write_bytes(buffer.getvalue())
    return what


def _renamed(info: tarfile.TarInfo, name: str) -> tarfile.TarInfo:
    copy = tarfile.TarInfo(name)
    copy.size = info.size
    copy.mtime = info.mtime
    return copy


FILE_MUTATIONS: list[Mutation] = [
    truncate,
    garbage,
    empty,
    delete,
    link_outside,
    fifo,
    undecodable_name,
]
TEXT_MUTATIONS: list[Mutation] = [duplicate_line, shuffle_lines, reencode_line, crlf_and_bom]
JSON_MUTATIONS: list[Mutation] = [retype_json]
TAR_MUTATIONS: list[Mutation] = [mutate_tar]
