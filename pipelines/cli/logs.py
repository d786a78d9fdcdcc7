"""Where the command line's own log records go, `--verbose`, and unexpected errors.

Libraries log (the tokenizer loader warns about the demo checkpoint, Python warnings
from torch or Dagster); left alone, Python prints those records raw on stderr,
between the tables. While a command runs, `capture` routes every record instead:

- by default each warning is printed once, as `warning: ...`, wrapped to the terminal;
- commands that start Dagster runs (`run`, `demo`) call `keep_in_file` first: their
  records are kept and written to a log file (`write_to`, in the run's log folder)
  beside Dagster's own logs, and the console shows only the warnings the command
  itself prints once at the top of its summary;
- with `--verbose`, every record (from INFO up) is also echoed to stderr.

`LogEcho` is `--verbose`'s echo of the Dagster log files as they grow.
`report_internal_error` is what the user sees of a bug: one line, or the traceback
with `--verbose`. Printing goes through `render`, like every other output.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path

from pipelines.cli import render

_state = {"verbose": False}
_log_path: dict[str, Path | None] = {"path": None}


def verbose() -> bool:
    """True while a command runs with `--verbose`."""
    return _state["verbose"]


def log_path() -> Path | None:
    """The log file of the command running now, once it has one."""
    return _log_path["path"]


class _Sink(logging.Handler):
    """The one handler on the root logger while a command runs."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.in_file = False
        self.path: Path | None = None
        self.kept: list[tuple[int, str, str]] = []  # (level, message, formatted line)
        self.shown: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            line = self.format(record)
        except Exception:  # a record that cannot format must not stop the command
            self.handleError(record)
            return
        if _state["verbose"]:
            render.print_log_line(f"{record.name}: {message}")
        if self.in_file:
            if self.path is None:
                self.kept.append((record.levelno, message, line))
            else:
                self._append([line])
        elif record.levelno >= logging.WARNING and not _state["verbose"]:
            self.show(message)

    def show(self, message: str) -> None:
        """Print a warning once per command (libraries repeat theirs per call)."""
        if message not in self.shown:
            self.shown.add(message)
            render.print_warning(message)

    def _append(self, lines: list[str]) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.writelines(f"{line}\n" for line in lines)


_sink: dict[str, _Sink | None] = {"sink": None}


@contextlib.contextmanager
def capture(*, verbose: bool) -> Iterator[None]:
    """Route log records and Python warnings as the module docstring says, for one command."""
    sink = _Sink()
    root = logging.getLogger()
    level = root.level
    _state["verbose"] = verbose
    _log_path["path"] = None
    _sink["sink"] = sink
    root.addHandler(sink)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        root.removeHandler(sink)
        root.setLevel(level)
        _sink["sink"] = None
        # Records kept for a log file that never came (the command stopped early) are
        # not lost: their warnings are printed now.
        if sink.in_file and sink.path is None:
            for levelno, message, _ in sink.kept:
                if levelno >= logging.WARNING and not verbose:
                    sink.show(message)


def keep_in_file() -> None:
    """From now on keep log records for a log file (`write_to`) instead of printing them."""
    sink = _sink["sink"]
    if sink is not None:
        sink.in_file = True
        logging.getLogger().setLevel(logging.INFO)  # a file can hold the INFO records too
        # Except Alembic's: a dozen lines each time Dagster opens its SQLite storage.
        logging.getLogger("alembic").setLevel(logging.WARNING)


def write_to(path: Path) -> None:
    """Write the kept records, and every later one, to `path` (created on the first record)."""
    _log_path["path"] = path
    sink = _sink["sink"]
    if sink is None or not sink.in_file:
        return
    sink.path = path
    if sink.kept:
        sink._append([line for _, _, line in sink.kept])
        sink.kept.clear()


def report_internal_error(error: BaseException) -> None:
    """What the user sees of a bug: one line (`--verbose`: the traceback), and the log."""
    if _state["verbose"]:
        render.print_traceback("".join(traceback.format_exception(error)))
    path = log_path()
    where = f"; logs in {path.parent}" if path is not None and path.parent.is_dir() else ""
    hint = "" if _state["verbose"] else "; run again with --verbose for the traceback"
    render.print_error(f"internal error: {type(error).__name__}: {error}{hint}{where}")


def print_handled_traceback() -> None:
    """With `--verbose`, the traceback of the exception being handled (a user error's)."""
    if _state["verbose"]:
        text = traceback.format_exc()
        if not text.startswith("NoneType: None"):
            render.print_traceback(text)


class LogEcho:
    """`--verbose`: echo every file of a log folder to stderr as it grows, line by line.

    A background thread polls the folder (Dagster's processes write there, not to us);
    `stop` echoes what is left and waits for the thread.
    """

    POLL_S = 0.5

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._offsets: dict[Path, int] = {}
        self._partial: dict[Path, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="voxlake-log-echo", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.POLL_S):
            self._echo_new()
        self._echo_new(final=True)

    def _echo_new(self, final: bool = False) -> None:
        if not self.folder.is_dir():
            return
        for path in sorted(p for p in self.folder.rglob("*") if p.is_file()):
            offset = self._offsets.get(path, 0)
            try:
                with path.open("rb") as handle:
                    handle.seek(offset)
                    data = handle.read()
            except OSError:
                continue
            if not data:
                continue
            self._offsets[path] = offset + len(data)
            text = self._partial.pop(path, "") + data.decode("utf-8", errors="replace")
            lines = text.split("\n")
            if not final:
                self._partial[path] = lines.pop()  # an unfinished last line waits
            for line in lines:
                if line.strip():
                    render.print_log_line(f"{path.name}: {line.rstrip()}")
        if final:
            for path, line in self._partial.items():
                if line.strip():
                    render.print_log_line(f"{path.name}: {line.rstrip()}")
            self._partial.clear()

    def stop(self) -> None:
        """Echo what is left, then stop."""
        self._stop.set()
        self._thread.join(timeout=10)
