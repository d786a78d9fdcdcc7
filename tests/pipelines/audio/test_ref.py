"""Audio references: paths cannot escape their root, tars are read without extraction,
headers are probed and broken files are named with the right reason."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipelines.audio.ref import AudioOpener, AudioRefError, probe_header, resolve_under


def _tone(path: Path, rate_hz: int = 16000, seconds: float = 1.0, fmt: str | None = None) -> None:
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype("float32"), rate_hz, format=fmt)


@pytest.mark.parametrize("relative", ["../outside.wav", "a/../../outside.wav", "/etc/hostname"])
def test_paths_outside_the_root_are_refused(tmp_path: Path, relative: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(AudioRefError) as caught:
        resolve_under(root, relative)
    assert caught.value.reason == "path_escape"


def test_symlink_escape_is_refused_but_inner_symlink_is_fine(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    _tone(tmp_path / "outside.wav")
    _tone(root / "a" / "inside.wav")
    os.symlink("../../outside.wav", root / "a" / "escape.wav")
    os.symlink("inside.wav", root / "a" / "alias.wav")
    with pytest.raises(AudioRefError, match="outside"):
        resolve_under(root, "a/escape.wav")
    assert resolve_under(root, "a/alias.wav") == (root / "a" / "inside.wav").resolve()


def test_allowed_roots_admit_paths_outside(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "other").mkdir()
    path = resolve_under(tmp_path / "root", "../other/x.wav", (tmp_path / "other",))
    assert path == (tmp_path / "other" / "x.wav").resolve()


def test_probe_reads_rate_frames_and_channels(tmp_path: Path) -> None:
    _tone(tmp_path / "a.flac", rate_hz=22050, seconds=1.5)
    header = probe_header(tmp_path / "a.flac", "a.flac")
    assert (header.sample_rate_hz, header.frames, header.channels) == (22050, 33075, 1)
    assert header.duration_s == pytest.approx(1.5)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: sf.write(p, np.zeros(0, "float32"), 16000, format="WAV"), "empty_audio"),
        (lambda p: p.write_bytes(os.urandom(4096)), "unreadable_audio"),
    ],
)
def test_broken_files_are_named(tmp_path: Path, make: object, reason: str) -> None:
    path = tmp_path / "x.wav"
    make(path)  # type: ignore[operator]
    with pytest.raises(AudioRefError) as caught:
        probe_header(path, "x.wav")
    assert caught.value.reason == reason
    assert "x.wav" in caught.value.message


def test_truncated_flac_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "t.flac"
    _tone(path, seconds=3.0)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(AudioRefError) as caught:
        probe_header(path, "t.flac")
    assert caught.value.reason == "truncated_audio"


def test_tar_members_are_read_in_memory_and_unsafe_names_refused(tmp_path: Path) -> None:
    _tone(tmp_path / "s.wav")
    payload = (tmp_path / "s.wav").read_bytes()
    with tarfile.open(tmp_path / "shard.tar", "w") as tar:
        for name in ["k1.wav", "../evil.wav"]:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    with AudioOpener(tmp_path) as opener:
        member = opener.open("shard.tar", "k1.wav")
        assert probe_header(member, "k1.wav").frames == 16000
        with pytest.raises(AudioRefError) as caught:
            opener.open("shard.tar", "../evil.wav")
        assert caught.value.reason == "path_escape"
        with pytest.raises(AudioRefError) as missing:
            opener.open("shard.tar", "k2.wav")
        assert missing.value.reason == "missing_audio"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.wav", "shard.tar"]


def test_the_opener_resolves_every_path_as_resolve_under_does(tmp_path: Path) -> None:
    """`AudioOpener.path` caches folders' real paths; it must refuse and accept exactly
    what `resolve_under` (plus the regular-file check) does, twice in a row."""
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    _tone(tmp_path / "outside.wav")
    _tone(tmp_path / "other" / "o.wav")
    _tone(root / "a" / "inside.wav")
    _tone(root / "a" / "b" / "deep.wav")
    os.symlink("../../outside.wav", root / "a" / "escape.wav")
    os.symlink("inside.wav", root / "a" / "alias.wav")
    os.symlink(tmp_path, root / "a" / "up")  # a folder link that leaves the root
    os.symlink("b", root / "a" / "c")  # one that stays inside
    paths = [
        "a/inside.wav", "a/b/deep.wav", "a/./b/../inside.wav", "a/escape.wav", "a/alias.wav",
        "a/up/outside.wav", "a/c/deep.wav", "a/missing.wav", "a/b", "a/b/..", "../outside.wav",
        str(root / "a" / "inside.wav"), str(tmp_path / "outside.wav"), "../other/o.wav",
    ]  # fmt: skip

    def reference(relative: str) -> Path | str:
        try:
            resolved = resolve_under(root, relative, (tmp_path / "other",))
        except AudioRefError as error:
            return error.reason
        if not resolved.exists():
            return "missing_audio"
        return resolved if resolved.is_file() else "unreadable_audio"

    opener = AudioOpener(root, (tmp_path / "other",))
    for _ in range(2):
        for relative in paths:
            try:
                got: Path | str = opener.path(relative)
            except AudioRefError as error:
                got = error.reason
            assert got == reference(relative), relative
