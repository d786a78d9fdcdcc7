"""Lake writes: the file mode follows the umask, and a failed write names its file."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.lake.atomic import LakeWriteError, atomic_write, write_bytes_atomic


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_lake_files_get_the_mode_open_would_give_under_the_umask(
    tmp_path: Path, umask: int
) -> None:
    # The umask is read once per process, so each one gets its own interpreter.
    code = (
        "import os, sys; from pathlib import Path; os.umask(int(sys.argv[2], 8));\n"
        "from pipelines.lake.atomic import write_bytes_atomic\n"
        "write_bytes_atomic(Path(sys.argv[1]) / 'lake.bin', b'x')\n"
        "open(Path(sys.argv[1]) / 'plain.bin', 'wb').close()"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(tmp_path), oct(umask)],
        check=True,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert _mode(tmp_path / "lake.bin") == 0o666 & ~umask
    assert _mode(tmp_path / "lake.bin") == _mode(tmp_path / "plain.bin")


def test_a_full_disk_names_the_file_being_written_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "shards" / "audio-000000.tar"
    with pytest.raises(LakeWriteError) as caught:
        with atomic_write(target) as handle:
            handle.write(b"half a shard")
            # What the kernel answers a write on a full disk.
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert caught.value.errno == errno.ENOSPC
    assert str(target) in str(caught.value) and "No space left on device" in str(caught.value)
    assert list(target.parent.iterdir()) == []


def test_an_error_of_what_the_writer_reads_is_not_blamed_on_the_lake_file(
    tmp_path: Path,
) -> None:
    with pytest.raises(FileNotFoundError):
        with atomic_write(tmp_path / "out.bin"):
            (tmp_path / "missing-source.flac").read_bytes()
    assert list(tmp_path.iterdir()) == []


def test_a_lake_folder_that_cannot_be_made_names_the_file(tmp_path: Path) -> None:
    blocker = tmp_path / "shards"
    blocker.write_bytes(b"a file where a folder should be")
    with pytest.raises(LakeWriteError) as caught:
        write_bytes_atomic(blocker / "unit" / "index.parquet", b"x")
    assert str(blocker / "unit" / "index.parquet") in str(caught.value)
