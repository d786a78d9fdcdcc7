"""Find and open the audio an utterance points at, safely, without extracting anything.

An utterance's audio is a plain file, a member of a tar (Emilia, WebDataset),
or a cell of an Arrow/Parquet file (Hugging Face datasets). `AudioOpener`
resolves paths under the source root (refusing anything that escapes it),
reads tar members into memory through `tarfile.extractfile` (never
`extractall`), and caches containers so a unit opens each file once.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import soundfile as sf

# Formats libsndfile cannot read; they need FFmpeg (through torchcodec), if installed.
FFMPEG_ONLY_EXTENSIONS = {".m4a", ".aac", ".mp4", ".wma", ".webm"}

# "Error opening <_io.BytesIO object at 0x7f...>: " or "Error opening '/abs/path': ".
_OPENING_PREFIX = re.compile(r"^Error opening (<[^>]*>|'[^']*'|\S+): ")
# What libsndfile says when it finds no header it knows in a regular file (an MP3 that
# is only an ID3 tag, random bytes): it reads as if the file were missing.
_NO_FORMAT_TEXT = "File does not exist or is not a regular file (possibly a pipe?)."


def libsndfile_error_text(error: Exception) -> str:
    """libsndfile's reason, without its "Error opening <file>:" prefix.

    The caller names the file itself. libsndfile names in-memory audio (tar
    members, Arrow cells) by the `BytesIO`'s repr, whose address changes on every
    run, and it calls a regular file holding no audio it knows "does not exist";
    callers only pass files they have opened, so that is said as what it is.
    """
    text = _OPENING_PREFIX.sub("", str(error).strip())
    if text == _NO_FORMAT_TEXT:
        return "no audio stream in a format libsndfile knows"
    return text


@contextlib.contextmanager
def libsndfile_input(source: Path | io.BytesIO) -> Iterator[Path | io.BytesIO | int]:
    """What to hand `soundfile.SoundFile` for `source`: a path as it is; in-memory bytes
    copied into an anonymous in-memory file (Linux `memfd_create`), whose descriptor is
    yielded and closed afterwards.

    libsndfile reads a `BytesIO` through Python callbacks, one per read, and its MP3
    reader asks for a few hundred bytes at a time: a 24 kHz Emilia MP3 costs ~1,300
    callbacks, ~20 % of decoding it. From a descriptor it reads with plain `read()`
    calls; the samples are the same. Where `memfd_create` is missing (not Linux) the
    `BytesIO` is yielded.
    """
    if not isinstance(source, io.BytesIO) or not hasattr(os, "memfd_create"):
        yield source
        return
    try:
        fd = os.memfd_create("voxlake-audio", os.MFD_CLOEXEC)
    except OSError:
        yield source
        return
    try:
        with source.getbuffer() as view:
            written = 0
            while written < len(view):
                written += os.write(fd, view[written:])
        os.lseek(fd, 0, os.SEEK_SET)
        yield fd
    finally:
        os.close(fd)


class AudioRefError(Exception):
    """An utterance's audio cannot be used; `reason` is a `RejectReason` value."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@functools.lru_cache(maxsize=64)
def _real_root(root: Path) -> Path:
    # A source's root is resolved once per process, not once per utterance (the paths
    # under it still are: a symlink inside the root may point anywhere).
    return Path(os.path.realpath(root))


def resolve_under(root: Path, relative: str, allowed_roots: tuple[Path, ...] = ()) -> Path:
    """Resolve `relative` under `root`; raise `AudioRefError('path_escape')` if it leaves it.

    Absolute paths, `..` components and symlinks are all resolved first, so a
    symlink inside the root that points outside is caught too.
    """
    candidate = Path(relative)
    joined = candidate if candidate.is_absolute() else root / candidate
    resolved = Path(os.path.realpath(joined))
    roots = (_real_root(root), *(_real_root(r) for r in allowed_roots))
    if not any(resolved == r or resolved.is_relative_to(r) for r in roots):
        raise AudioRefError(
            "path_escape", f"{relative!r} resolves to {resolved}, outside {roots[0]}"
        )
    return resolved


def safe_member_name(name: str) -> bool:
    """True when a tar member name is relative and has no `..` (safe to use as a key)."""
    path = PurePosixPath(name)
    return not path.is_absolute() and ".." not in path.parts and name.strip() != ""


@dataclass(frozen=True)
class AudioHeader:
    """What a file header says about its audio."""

    frames: int
    sample_rate_hz: int
    channels: int
    format: str

    @property
    def duration_s(self) -> float:
        """Duration in seconds (frames / rate)."""
        return self.frames / self.sample_rate_hz


def _file_kind(mode: int) -> str:
    """What a non-regular file is, for messages."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def _open_tar(path: Path) -> tuple[tarfile.TarFile, dict[str, tarfile.TarInfo], str | None]:
    """A tar, its regular-file members by name, and why the listing stopped early (or None).

    A tar cut short still serves the members before the cut: each utterance
    whose member is lost is rejected on its own, and the others go on.
    """
    try:
        tar = tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError) as error:
        raise AudioRefError(
            "unreadable_audio", f"{path.name} is not a readable tar ({error})"
        ) from error
    members: dict[str, tarfile.TarInfo] = {}
    broken: str | None = None
    try:
        for info in tar:
            if info.isfile():
                members[info.name] = info
    except (tarfile.TarError, OSError, EOFError) as error:
        broken = str(error) or type(error).__name__
    return tar, members, broken


class AudioOpener:
    """Opens utterance audio under one source root, caching containers for one unit."""

    def __init__(self, root: Path, allowed_roots: tuple[Path, ...] = ()) -> None:
        self.root = root
        self.allowed_roots = allowed_roots
        self._tars: dict[Path, tuple[tarfile.TarFile, dict[str, tarfile.TarInfo], str | None]] = {}
        self._tables: dict[tuple[Path, str], pa.ChunkedArray] = {}
        # Per unit: each audio path is resolved and checked once, and each folder's real
        # path once (a unit's files share a few folders).
        self._paths: dict[str, Path] = {}
        self._folders: dict[str, str] = {}
        self._root_text = str(root)
        self._real_roots = tuple(str(_real_root(r)) for r in (root, *allowed_roots))

    def close(self) -> None:
        """Close every cached container."""
        for tar, _, _ in self._tars.values():
            tar.close()
        self._tars.clear()
        self._tables.clear()
        self._paths.clear()
        self._folders.clear()

    def __enter__(self) -> AudioOpener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def path(self, audio_path: str) -> Path:
        """The resolved, existing file for `audio_path` (AudioRefError otherwise).

        Resolved as `resolve_under` does, once per opener (a unit) for each path: the
        folder's real path is cached and only the file itself is looked at again
        (`lstat`; a symlink is resolved in full).
        """
        cached = self._paths.get(audio_path)
        if cached is not None:
            return cached
        resolved, mode = self._resolve(audio_path)
        if mode is None:
            try:
                mode = resolved.stat().st_mode
            except FileNotFoundError:
                raise AudioRefError(
                    "missing_audio", f"audio file {audio_path!r} does not exist"
                ) from None
            except OSError as error:
                raise AudioRefError(
                    "unreadable_audio",
                    f"audio file {audio_path!r} cannot be read ({error.strerror})",
                ) from None
        if not stat.S_ISREG(mode):
            raise AudioRefError(
                "unreadable_audio",
                f"audio file {audio_path!r} is {_file_kind(mode)}, not a regular file",
            )
        self._paths[audio_path] = resolved
        return resolved

    def _resolve(self, audio_path: str) -> tuple[Path, int | None]:
        """`resolve_under(root, audio_path, allowed_roots)`, and the file's mode when known.

        realpath(folder/name) is realpath(folder)/name when name is not a symlink (nor
        "." or ".."): the folder is resolved once per opener, the name checked with one
        lstat; anything else takes `resolve_under`'s full path.
        """
        joined = os.path.join(self._root_text, audio_path)  # an absolute path stays as it is
        folder, name = os.path.split(joined)
        if name in ("", ".", ".."):
            return resolve_under(self.root, audio_path, self.allowed_roots), None
        real_folder = self._folders.get(folder)
        if real_folder is None:
            real_folder = self._folders[folder] = os.path.realpath(folder)
        resolved_text = os.path.join(real_folder, name)
        try:
            mode: int | None = os.lstat(resolved_text).st_mode
        except OSError:
            mode = None  # missing or unreadable: `path` says which, after the escape check
        if mode is not None and stat.S_ISLNK(mode):
            return resolve_under(self.root, audio_path, self.allowed_roots), None
        # realpath gives normalised absolute paths: "inside" is equal or below a root.
        if not any(
            resolved_text == root or resolved_text.startswith(root.rstrip(os.sep) + os.sep)
            for root in self._real_roots
        ):
            roots = (_real_root(self.root), *(_real_root(r) for r in self.allowed_roots))
            raise AudioRefError(
                "path_escape",
                f"{audio_path!r} resolves to {Path(resolved_text)}, outside {roots[0]}",
            )
        return Path(resolved_text), mode

    def open(self, audio_path: str, audio_member: str | None) -> Path | io.BytesIO:
        """A plain file's path, or the bytes of a container member."""
        path = self.path(audio_path)
        if audio_member is None:
            return path
        if ".tar" in path.suffixes or path.suffix == ".tar":
            return io.BytesIO(self._tar_member(path, audio_member))
        if path.suffix in {".arrow", ".parquet"}:
            return io.BytesIO(self._table_cell(path, audio_member))
        raise AudioRefError(
            "unreadable_audio", f"{audio_path!r} is not a container but has member {audio_member!r}"
        )

    def _tar_member(self, path: Path, member: str) -> bytes:
        if not safe_member_name(member):
            raise AudioRefError("path_escape", f"tar member name {member!r} is not a safe name")
        if path not in self._tars:
            self._tars[path] = _open_tar(path)
        tar, members, broken = self._tars[path]
        info = members.get(member)
        if info is None and broken is not None:
            raise AudioRefError(
                "truncated_audio", f"{path.name} breaks off before member {member!r} ({broken})"
            )
        if info is None:
            raise AudioRefError("missing_audio", f"no member {member!r} in {path.name}")
        handle = tar.extractfile(info)
        if handle is None:
            raise AudioRefError("missing_audio", f"member {member!r} of {path.name} is not a file")
        try:
            data = handle.read()
        except (tarfile.TarError, OSError) as error:
            raise AudioRefError(
                "truncated_audio", f"member {member!r} of {path.name} cannot be read ({error})"
            ) from error
        if len(data) < info.size:
            raise AudioRefError(
                "truncated_audio",
                f"member {member!r} of {path.name} holds {len(data)} of its {info.size} bytes",
            )
        return data

    def _table_cell(self, path: Path, member: str) -> bytes:
        column, _, row_text = member.rpartition("@")
        if not column or not row_text.isdigit():
            raise AudioRefError("malformed_record", f"bad member reference {member!r}")
        key = (path, column)
        if key not in self._tables:
            if path.suffix == ".parquet":
                table = pq.read_table(path, columns=[column])
            else:
                with pa.memory_map(str(path)) as source:
                    table = ipc.open_stream(source).read_all().select([column])
            self._tables[key] = table.column(column)
        cells = self._tables[key]
        row = int(row_text)
        if row >= len(cells):
            raise AudioRefError("missing_audio", f"row {row} is past the end of {path.name}")
        cell = cells[row].as_py()
        if isinstance(cell, dict):
            cell = cell.get("bytes")
        if not cell:
            raise AudioRefError("missing_audio", f"row {row} of {path.name} holds no audio bytes")
        return bytes(cell)


def is_empty(source: Path | io.BytesIO) -> bool:
    """True for a zero-byte file or member (libsndfile would only say "format not recognised")."""
    if isinstance(source, io.BytesIO):
        return len(source.getbuffer()) == 0
    try:
        return source.stat().st_size == 0
    except OSError:
        return False


def probe_header(source: Path | io.BytesIO, name: str) -> AudioHeader:
    """Read an audio header and prove the end of the stream is readable.

    Reads the header, then seeks to the last few thousand frames and decodes
    them: a truncated file promises frames it does not have, and this is the
    cheapest way to find out without decoding everything.
    """
    suffix = Path(name).suffix.lower()
    if is_empty(source):
        raise AudioRefError("unreadable_audio", f"{name}: the file is empty (0 bytes)")
    with libsndfile_input(source) as target:
        return _probe_libsndfile(target, name, suffix)


def _probe_libsndfile(source: Path | io.BytesIO | int, name: str, suffix: str) -> AudioHeader:
    try:
        handle = sf.SoundFile(source, closefd=False)
    except sf.LibsndfileError as error:
        if suffix in FFMPEG_ONLY_EXTENSIONS:
            raise AudioRefError(
                "unsupported_format",
                f"{name}: {suffix} needs FFmpeg; ingest reads headers with libsndfile only",
            ) from error
        raise AudioRefError(
            "unreadable_audio",
            f"{name}: not a readable audio file ({libsndfile_error_text(error)})",
        ) from error
    with handle:
        header = AudioHeader(
            frames=int(handle.frames),
            sample_rate_hz=int(handle.samplerate),
            channels=int(handle.channels),
            format=f"{handle.format}/{handle.subtype}",
        )
        if header.channels <= 0 or header.sample_rate_hz <= 0:
            raise AudioRefError(
                "unreadable_audio",
                f"{name}: the header states {header.channels} channels at "
                f"{header.sample_rate_hz} Hz",
            )
        if header.frames <= 0:
            raise AudioRefError("empty_audio", f"{name}: the file holds no samples")
        tail_frames = min(header.frames, 4096)
        try:
            handle.seek(header.frames - tail_frames)
            got = handle.read(tail_frames, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, ValueError) as error:
            # ValueError: soundfile's own arithmetic on a nonsensical header.
            raise AudioRefError(
                "truncated_audio",
                f"{name}: header promises {header.frames} frames but the "
                f"end cannot be read ({error})",
            ) from error
        if len(got) < tail_frames:
            raise AudioRefError(
                "truncated_audio",
                f"{name}: header promises {header.frames} frames but the file ends "
                f"{tail_frames - len(got)} frames early",
            )
    return header
