"""`voxlake ui` on a busy port refuses at once, with the port named, instead of hanging on."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from pipelines.project import init_project


def test_ui_on_a_busy_port_exits_2_naming_the_port(tmp_path: Path) -> None:
    project = init_project(tmp_path / "proj")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "assets.cli",
                "ui",
                "--port",
                str(port),
                "--project",
                str(project.directory),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=Path(__file__).resolve().parents[2],
        )
    assert result.returncode == 2, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert f"127.0.0.1:{port}" in output and "--port" in output
    assert "Serving" not in output and "Traceback" not in output
