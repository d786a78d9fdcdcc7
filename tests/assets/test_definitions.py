"""The rule "asset X → `pipelines/steps/X.py`" holds for every asset in the definitions, the
UI links each asset to that step module and to the file that declares it, and every pool
an asset names is one of the pools whose limit `assets.pools` sets."""

from __future__ import annotations

import doctest
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

import assets.code_references as code_references
from assets.code_references import CODE_REFERENCES_KEY, step_module
from assets.definitions import build_definitions
from assets.pools import GPU_POOL, pool_limits
from pipelines.demo.project import demo_config
from pipelines.project import init_project

ROOT = Path(__file__).resolve().parents[2]
STEPS = ROOT / "pipelines" / "steps"


def _expected_step_file(key: dg.AssetKey) -> Path:
    """ARCHITECTURE.md's rule, written out again: `inventory/<source>` is the inventory
    step, the four `train_*` stages share `train.py`, every other asset is its own name."""
    name = key.path[0]
    return STEPS / ("train.py" if name.startswith("train_") else f"{name}.py")


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("defs") / "proj"
    project = init_project(folder, demo_config(folder))
    return build_definitions(project.directory).resolve_asset_graph()


def _keys(graph) -> list[dg.AssetKey]:  # type: ignore[no-untyped-def]
    return sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string())


def test_every_asset_has_its_step_module(graph) -> None:  # type: ignore[no-untyped-def]
    keys = _keys(graph)
    assert len(keys) >= 12
    missing = [k.to_user_string() for k in keys if not _expected_step_file(k).is_file()]
    assert not missing, f"assets without pipelines/steps/<name>.py: {missing}"
    for key in keys:
        assert step_module(key) == ".".join(
            _expected_step_file(key).relative_to(ROOT).with_suffix("").parts
        )


def test_every_asset_links_to_its_step_module_and_its_declaration(graph) -> None:  # type: ignore[no-untyped-def]
    for key in _keys(graph):
        value = graph.get(key).metadata.get(CODE_REFERENCES_KEY)
        assert value is not None, f"{key.to_user_string()} carries no code references"
        references = value.code_references
        files = [Path(r.file_path).resolve() for r in references]
        assert files[0] == _expected_step_file(key).resolve(), key.to_user_string()
        assert references[0].label == f"step: {files[0].relative_to(ROOT).as_posix()}"
        declared = [f for f in files[1:] if f.parent == ROOT / "assets"]
        assert declared, f"{key.to_user_string()} does not link to its declaration"
        assert all(r.line_number for r in references[1:])


def test_pools_named_by_assets_have_their_limit_in_one_place(graph) -> None:  # type: ignore[no-untyped-def]
    pools = {pool for key in _keys(graph) for pool in graph.get(key).pools or ()}
    assert pools == set(pool_limits())


def test_gpu_pool_is_the_devices_or_else_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a CPU-only machine tokenization is bounded by the cores, not serialised to one."""
    import os

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert pool_limits()[GPU_POOL] == len(os.sched_getaffinity(0))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    assert pool_limits()[GPU_POOL] == 3
    monkeypatch.setenv("VOXLAKE_GPU_SLOTS", "8")
    assert pool_limits()[GPU_POOL] == 8


def test_code_references_doctests() -> None:
    result = doctest.testmod(code_references)
    assert result.attempted > 0 and result.failed == 0


def test_loading_the_definitions_loads_no_torch(tmp_path: Path) -> None:
    """Every Dagster step process loads the definitions: torch, transformers and the trainer
    wait until a step needs them (the tokens check, training, evaluation)."""
    folder = tmp_path / "proj"
    init_project(folder, demo_config(folder))
    script = (
        "import sys\nfrom pathlib import Path\n"
        "from assets.definitions import build_definitions\n"
        f"build_definitions(Path({str(folder)!r}))\n"
        "heavy = ('torch', 'torchaudio', 'transformers', 'deepspeed', 'trainer')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == ""
