#!/usr/bin/env python3
"""The two entry points of the README, runnable with nothing but Python 3.11.

    python3 dev.py demo    # build the environment, run the main job on bundled data
    python3 dev.py test    # build the environment, run the whole test suite

Both create (or update) the virtual environment `.venv/` first. It is rebuilt
only when `pyproject.toml` changes, so the second call is fast. System
packages that the tests need (espeak-ng to regenerate the test corpora, FFmpeg
for `datasets`' audio decoding) are installed with apt-get when we are root
and they are missing; otherwise the tests that need them skip and say why.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".voxlake-installed"
# executable -> Debian package: espeak-ng regenerates the test corpora, ffmpeg decodes
# m4a/aac (and lets torchcodec load), chromium renders the HTML report in a browser test,
# PostgreSQL and Redis back the cluster test (tests/assets/test_cluster.py). Debian keeps
# PostgreSQL's server binaries off PATH: that key is a glob over its versioned folders.
SYSTEM_PACKAGES = {
    "espeak-ng": "espeak-ng",
    "ffmpeg": "ffmpeg",
    "sox": "sox",
    "chromium": "chromium",
    "redis-server": "redis-server",
    "/usr/lib/postgresql/*/bin/initdb": "postgresql",
}


def _say(message: str) -> None:
    print(f"[dev] {message}", flush=True)


def _venv_python() -> Path:
    return VENV / "bin" / "python"


def _requirements_digest() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()


def ensure_venv() -> Path:
    """Create `.venv` and install voxlake into it (editable, with dev extras) when stale."""
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"voxlake needs Python 3.11; this is {sys.version.split()[0]}")
    python = _venv_python()
    if not python.exists():
        _say(f"creating virtual environment {VENV}")
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    digest = _requirements_digest()
    if STAMP.exists() and STAMP.read_text().strip() == digest:
        return python
    _say("installing voxlake and its pinned dependencies (first run takes a few minutes)")
    # Plain pip on purpose: the torch/torchaudio wheels this project pins are found by
    # pip's configured local indexes; uv and poetry would download gigabytes instead.
    log_path = VENV / "pip-install.log"
    with log_path.open("w") as log:
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "-e", f"{ROOT}[dev]"], stdout=log, stderr=log
        )
    if done.returncode != 0:
        lines = [ln for ln in log_path.read_text().splitlines() if "is ignored" not in ln]
        print("\n".join(lines[-40:]), file=sys.stderr)
        sys.exit(f"pip install failed (exit {done.returncode}); full log: {log_path}")
    STAMP.write_text(digest + "\n")
    return python


def ensure_system_packages() -> None:
    """Install missing Debian packages the tests use, when we can (root + apt-get)."""
    missing = [
        pkg
        for exe, pkg in SYSTEM_PACKAGES.items()
        if not (glob.glob(exe) if "*" in exe else shutil.which(exe))
    ]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        _say(f"missing system packages {missing}; tests that need them will be skipped")
        return
    _say(f"installing system packages: {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test", "env"}:
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    python = ensure_venv()
    bin_dir = python.parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    if command == "env":
        return 0
    if command == "demo":
        return subprocess.call([str(bin_dir / "voxlake"), "demo", *rest], cwd=ROOT, env=env)
    ensure_system_packages()
    _say("ruff check")
    if subprocess.call([str(bin_dir / "ruff"), "check", "."], cwd=ROOT, env=env) != 0:
        return 1
    return subprocess.call(
        [str(python), "-m", "pytest", *_worker_args(rest), *rest], cwd=ROOT, env=env
    )


def _worker_args(rest: list[str]) -> list[str]:
    """pytest-xdist options for the whole suite: one worker per core, at most 4, each test
    file on one worker (module fixtures are built once; a file's tests share its order).

    Most of the suite's wall time is waiting (daemon ticks, queued runs, launchers and
    servers starting), so two workers on two cores finish well ahead of one. None when the
    caller chose (`-n ...`, `-p no:xdist`) or runs a single test.
    """
    if any(a == "-n" or a.startswith(("-n", "--numprocesses", "--dist")) for a in rest):
        return []
    if "no:xdist" in rest or any("::" in a for a in rest):
        return []
    workers = max(1, min(4, os.cpu_count() or 1))
    return ["-n", str(workers), "--dist", "loadfile"] if workers > 1 else []


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
