"""The real Dagster webserver serves the project's asset graph, bound to localhost."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pipelines.demo.project import demo_config
from pipelines.project import init_project


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_webserver_shows_the_asset_graph(tmp_path: Path, corpora: Path) -> None:
    project = init_project(tmp_path / "proj", demo_config(tmp_path / "proj", corpora))
    port = _free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(project.ensure_dagster_home()),
        "VOXLAKE_PROJECT": str(project.directory),
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dagster_webserver",
            "-m",
            "assets.definitions",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env=env,
        cwd=project.directory,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        server.stderr.read().decode() if server.stderr else ""
                    ) from None
                time.sleep(1)
        nodes = _graphql(port, "{ assetNodes { assetKey { path } } }")["data"]["assetNodes"]
        keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
        assert "manifest" in keys
        assert {f"inventory/{s.name}" for s in project.config.sources} <= keys
    finally:
        server.terminate()
        server.wait(timeout=30)
