"""Lineage over a tiny real lake: audio shards and the code shards aligned with them,
written by the shard writer for two units of one source, the units index, two releases
written with the release contract (audio shards and code shards),
two training runs written by hand with `RunRecord` (stage1 from an outside model on
`tiny-v1`, then mtp1 from stage1's checkpoint on `tiny-v2`) and their evaluations.

Checked: `lineage()` finds the checkpoint by path (absolute, lake-relative,
cwd-relative, the run folder, a file inside), by run id and by sha256 prefix; the
chain back to the first stage, each run's release with audio and code shards whose
sha256 are the release's (and the files'), units and sources; the evaluations of that checkpoint
only; the errors (unknown, ambiguous, missing release or base run, old catalogue);
and `voxlake lineage` as a tree and as JSON.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import json
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from rich.console import Console
from typer.testing import CliRunner

from pipelines.audio.pcm import encode_flac16, pcm_sha256
from pipelines.catalogue.build import rebuild_catalogue
from pipelines.catalogue.errors import CatalogueError
from pipelines.cli.app import app
from pipelines.cli.render import lineage_tree
from pipelines.lake.atomic import write_bytes_atomic, write_parquet_atomic
from pipelines.lineage import Lineage, LineageError, lineage
from pipelines.project import Project, load_project
from pipelines.shards.writer import (
    PlacedSample,
    ShardField,
    ShardSample,
    audio_index_row,
    code_index_row,
    encode_meta,
    write_shards,
)
from pipelines.units import write_units_index
from schemas import ProjectConfig, SourceConfig, UnitPlan
from schemas.hashing import file_sha256
from schemas.release import (
    RELEASE_FILE,
    RELEASE_UTTERANCE_ARROW_SCHEMA,
    UTTERANCES_FILE,
    Release,
    ReleaseShard,
)
from schemas.shards import (
    AUDIO_MEMBERS,
    AUDIO_SHARD_PREFIX,
    CODE_INDEX_ARROW_SCHEMA,
    CODE_MEMBERS,
    CODE_SHARD_PREFIX,
    SHARD_INDEX_ARROW_SCHEMA,
    AudioSampleMeta,
    CodeIndexRow,
    CodeSampleMeta,
    ShardIndexRow,
    ShardLimits,
    encode_codes,
    shard_key,
)
from schemas.training import EvalRecord, RunRecord

RATE_HZ = 16000
SOURCE = "synth"
UNITS = ("synth.main.00000", "synth.main.00001")
TOKENIZER_SHA256 = "cd" * 32
POLICY_VERSION = "policy-2025-01"
STAGE1, MTP1 = "stage1-0001", "mtp1-0001"
# Checkpoint hashes chosen so that "abcdef" is ambiguous and "abcdef01" is not.
STAGE1_SHA256 = "abcdef01" + "1" * 56
MTP1_SHA256 = "abcdef02" + "2" * 56
OUTSIDE_BASE = "/models/Qwen2-7B-Instruct"
AUDIO_FIELD = ShardField(prefix=AUDIO_SHARD_PREFIX, members=AUDIO_MEMBERS)
CODE_FIELD = ShardField(prefix=CODE_SHARD_PREFIX, members=CODE_MEMBERS)


@dataclasses.dataclass(frozen=True)
class TinyLake:
    project: Project
    rows: dict[str, list[tuple[ShardIndexRow, CodeIndexRow]]]  # by unit: audio and code rows
    releases: dict[str, Release]


def _planned(index: int, rng: np.random.Generator) -> tuple[str, np.ndarray, np.ndarray]:
    """An utterance id, its 16 kHz audio and its codes (12.5 per second)."""
    utterance_id = f"{SOURCE}/spk{index % 2}/utt-{index:04d}"
    frames = int(RATE_HZ * rng.uniform(0.3, 0.8))
    audio = (0.2 * np.sin(2 * np.pi * (200 + 40 * index) * np.arange(frames) / RATE_HZ)).astype(
        np.float32
    )
    codes = rng.integers(0, 16384, max(1, round(frames / RATE_HZ * 12.5))).astype(np.uint16)
    return utterance_id, audio, codes


def _write_unit(
    project: Project, unit: str, planned: list[tuple[str, np.ndarray, np.ndarray]]
) -> list[tuple[ShardIndexRow, CodeIndexRow]]:
    """One unit's audio shards (two samples each) and the code shards aligned with them."""
    lake = project.lake
    by_key = {shard_key(u): (u, audio, codes) for u, audio, codes in planned}
    metas = {
        key: dict(
            utterance_id=u,
            source=SOURCE,
            text=f"sentence of {u}",
            speaker=u.split("/")[1],
            language="en",
            split="train",
            duration_s=len(audio) / RATE_HZ,
            pcm_sha256=pcm_sha256(audio),
        )
        for key, (u, audio, _) in by_key.items()
    }
    audio_samples = [
        ShardSample(
            key,
            u,
            (
                encode_flac16(audio),
                encode_meta(
                    AudioSampleMeta(
                        **metas[key],
                        snr_db=25.0,
                        stnr_snr_db=None,
                        clipping_ratio=0.0,
                        silence_ratio=0.1,
                        rms_dbfs=-20.0,
                        bandwidth_hz=7900.0,
                        chars_per_s=None,
                    )
                ),
            ),
        )
        for key, (u, audio, _) in by_key.items()
    ]

    def audio_row(placed: PlacedSample) -> ShardIndexRow:
        meta = metas[placed.sample.key]
        return audio_index_row(placed, SOURCE, unit, meta["duration_s"], meta["pcm_sha256"])

    audio_placed = write_shards(
        audio_samples,
        lake.shards_dir(SOURCE, unit),
        AUDIO_FIELD,
        lake_root=lake.root,
        index_row=audio_row,
        index_schema=SHARD_INDEX_ARROW_SCHEMA,
        limits=ShardLimits(max_bytes=1_000_000, max_samples=2),
    )
    audio_rows = {p.sample.key: audio_row(p) for p in audio_placed}
    in_order = [p.shard for p in audio_placed]
    sizes = [in_order.count(shard) for shard in dict.fromkeys(in_order)]
    code_samples = [
        ShardSample(
            key,
            u,
            (
                encode_codes(codes),
                encode_meta(
                    CodeSampleMeta(
                        **metas[key],
                        n_codes=len(codes),
                        tokenizer_sha256=TOKENIZER_SHA256,
                        tokenizer_is_demo=True,
                    )
                ),
            ),
        )
        for key, (u, _, codes) in by_key.items()
    ]

    def code_row(placed: PlacedSample) -> CodeIndexRow:
        key = placed.sample.key
        return code_index_row(
            placed,
            SOURCE,
            unit,
            duration_s=metas[key]["duration_s"],
            n_codes=len(by_key[key][2]),
            audio_shard=audio_rows[key].shard,
            tokenizer_sha256=TOKENIZER_SHA256,
            tokenizer_is_demo=True,
        )

    code_placed = write_shards(
        code_samples,
        lake.codes_dir(TOKENIZER_SHA256, SOURCE, unit),
        CODE_FIELD,
        lake_root=lake.root,
        index_row=code_row,
        index_schema=CODE_INDEX_ARROW_SCHEMA,
        sizes=sizes,
    )
    return [(audio_rows[p.sample.key], code_row(p)) for p in code_placed]


def _release_shards(rows: list[ShardIndexRow] | list[CodeIndexRow]) -> list[ReleaseShard]:
    shards = {
        r.shard: ReleaseShard(
            shard=r.shard, sha256=r.shard_sha256, bytes=r.shard_bytes, source=r.source, unit=r.unit
        )
        for r in rows
    }
    return sorted(shards.values(), key=lambda s: s.shard)


def write_release(
    project: Project, name: str, rows: list[tuple[ShardIndexRow, CodeIndexRow]]
) -> Release:
    """`releases/<name>/` by hand: release.json and utterances.parquet (every 3rd in dev)."""
    rows = sorted(rows, key=lambda r: r[0].utterance_id)
    utterances = [
        {
            "utterance_id": audio.utterance_id,
            "key": audio.key,
            "shard": audio.shard,
            "codes_shard": codes.shard,
            "source": audio.source,
            "language": "en",
            "speaker": audio.utterance_id.split("/")[1],
            "duration_s": audio.duration_s,
            "split": "dev" if i % 3 == 0 else "train",
            "duplicate_of": None,
        }
        for i, (audio, codes) in enumerate(rows)
    ]
    release = Release(
        name=name,
        created_at=dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC),
        where="status = 'accepted'",
        dev_fraction=0.3,
        n_utterances=len(utterances),
        duration_s=sum(u["duration_s"] for u in utterances),
        policy_versions=[POLICY_VERSION],
        tokenizer_sha256=[TOKENIZER_SHA256],
        tokenizer_is_demo=True,
        code_version="0.1.0+gtest",
        shards=_release_shards([audio for audio, _ in rows]),
        code_shards=_release_shards([codes for _, codes in rows]),
    )
    folder = project.lake.release_dir(name)
    write_parquet_atomic(
        folder / UTTERANCES_FILE,
        pa.Table.from_pylist(utterances, schema=RELEASE_UTTERANCE_ARROW_SCHEMA),
    )
    write_bytes_atomic(folder / RELEASE_FILE, release.model_dump_json(indent=1).encode())
    return release


def run_record(run_id: str, **changes: object) -> dict:
    """A `RunRecord` as a training run writes it (JSON), with its checkpoint folder."""
    record = {
        "run_id": run_id,
        "stage": "stage1",
        "profile": "tiny",
        "release": "tiny-v1",
        "base_checkpoint": OUTSIDE_BASE,
        "base_run_id": None,
        "checkpoint": f"checkpoints/{run_id}/hf",
        "checkpoint_sha256": STAGE1_SHA256,
        "config_path": "configs/stage1.yaml",
        "config_sha256": "5" * 64,
        "tokenizer_sha256": "7" * 64,
        "code_version": "0.1.0+gtest",
        "deepspeed_config": {"zero_optimization": {"stage": 2}, "bf16": {"enabled": True}},
        "world_size": 2,
        "status": "succeeded",
        "started_at": "2025-03-02T08:00:00+00:00",
        "finished_at": "2025-03-02T09:15:00+00:00",
        "resumed_from_step": None,
        "dagster_run_id": "dagster-aaaa",
        "metrics": {"final_loss": 3.25, "steps": 40},
    }
    record.update(changes)
    RunRecord.model_validate(record)  # the contract, exactly
    return record


def write_run(project: Project, record: dict) -> None:
    root = project.lake.root
    if record["checkpoint"]:
        folder = root / record["checkpoint"]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
        (folder / "model.safetensors").write_bytes(b"\0" * 64)
    write_bytes_atomic(root / "runs" / f"{record['run_id']}.json", json.dumps(record).encode())


def write_eval(project: Project, eval_id: str, run_id: str, sha256: str, loss: float) -> None:
    record = EvalRecord(
        eval_id=eval_id,
        run_id=run_id,
        checkpoint=f"checkpoints/{run_id}/hf",
        checkpoint_sha256=sha256,
        release="tiny-v1",
        split="dev",
        code_version="0.1.0+gtest",
        created_at=dt.datetime(2025, 3, 2, 10, 0, tzinfo=dt.UTC),
        metrics={"loss": loss},
    )
    path = project.lake.root / "evals" / f"{eval_id}.json"
    write_bytes_atomic(path, record.model_dump_json().encode())


def build_tiny_lake(folder: Path) -> TinyLake:
    """Shards of two units, their units index, releases tiny-v1 (both units) and tiny-v2
    (the first only), runs stage1 -> mtp1, two evaluations; then the catalogue."""
    source = SourceConfig(name=SOURCE, kind="audio_folder", path="corpora/synth")
    folder.mkdir(parents=True)
    project = Project(folder.resolve(), ProjectConfig(sources=[source]))
    project.save()
    rng = np.random.default_rng(3)
    rows: dict[str, list[tuple[ShardIndexRow, CodeIndexRow]]] = {}
    plans = []
    for u, unit in enumerate(UNITS):
        rows[unit] = _write_unit(project, unit, [_planned(3 * u + i, rng) for i in range(3)])
        plans.append(
            UnitPlan(
                unit=unit,
                source=SOURCE,
                n_inputs=4,
                declared_duration_s=2.0,
                items_sha256=hashlib.sha256(unit.encode()).hexdigest(),
            )
        )
    write_units_index(project.lake, SOURCE, plans)
    releases = {
        "tiny-v1": write_release(project, "tiny-v1", [r for rs in rows.values() for r in rs]),
        "tiny-v2": write_release(project, "tiny-v2", rows[UNITS[0]]),
    }
    write_run(project, run_record(STAGE1))
    write_run(
        project,
        run_record(
            MTP1,
            stage="mtp1",
            release="tiny-v2",
            base_checkpoint=f"checkpoints/{STAGE1}/hf",
            base_run_id=STAGE1,
            checkpoint_sha256=MTP1_SHA256,
            config_path="configs/mtp1.yaml",
            deepspeed_config={"zero_optimization": {"stage": 3}},
            started_at="2025-03-02T10:00:00+00:00",
            finished_at="2025-03-02T10:30:00",
            resumed_from_step=20,
            metrics={"final_loss": 2.5, "steps": 60},
        ),
    )
    write_eval(project, "eval-mtp1-dev", MTP1, MTP1_SHA256, 2.75)
    write_eval(project, "eval-stage1-dev", STAGE1, STAGE1_SHA256, 3.5)
    rebuild_catalogue(project)
    return TinyLake(project, rows, releases)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyLake:
    return build_tiny_lake(tmp_path_factory.mktemp("lineage") / "proj")


@pytest.fixture
def copied(tiny: TinyLake, tmp_path: Path) -> Project:
    target = tmp_path / "proj"
    shutil.copytree(tiny.project.directory, target)
    project = load_project(target)
    rebuild_catalogue(project)
    return project


# ---------------------------------------------------------------------------
# Finding a checkpoint


def test_the_chain_back_to_the_first_stage(tiny: TinyLake) -> None:
    result = lineage(tiny.project, MTP1)
    assert result.matched_by == "run_id"
    assert result.checkpoint == f"checkpoints/{MTP1}/hf"
    assert result.checkpoint_sha256 == MTP1_SHA256
    assert [r.run_id for r in result.runs] == [MTP1, STAGE1]
    assert [r.stage for r in result.runs] == ["mtp1", "stage1"]
    assert result.run.base_checkpoint == result.runs[1].checkpoint
    assert result.base_checkpoint == OUTSIDE_BASE
    mtp1 = result.run
    written = RunRecord.model_validate_json(
        (tiny.project.lake.root / "runs" / f"{MTP1}.json").read_text()
    )
    assert mtp1.model_dump(exclude={"finished_at"}) == written.model_dump(exclude={"finished_at"})
    assert mtp1.finished_at == dt.datetime(2025, 3, 2, 10, 30, tzinfo=dt.UTC)  # UTC if no zone
    assert mtp1.deepspeed_config == {"zero_optimization": {"stage": 3}}
    assert mtp1.metrics == {"final_loss": 2.5, "steps": 60}
    assert (mtp1.config_sha256, mtp1.tokenizer_sha256, mtp1.code_version) == (
        "5" * 64,
        "7" * 64,
        "0.1.0+gtest",
    )
    # Each run with its own release, in the runs' order.
    assert [r.name for r in result.releases] == ["tiny-v2", "tiny-v1"]
    assert [e.eval_id for e in result.evals] == ["eval-mtp1-dev"]
    assert result.evals[0].metrics == {"loss": 2.75}


def test_releases_shards_units_and_sources(tiny: TinyLake) -> None:
    result = lineage(tiny.project, MTP1)
    root = tiny.project.lake.root
    for name, expected in tiny.releases.items():
        got = result.release(name)
        assert [s.model_dump() for s in got.shards] == [s.model_dump() for s in expected.shards]
        assert [s.model_dump() for s in got.code_shards] == [
            s.model_dump() for s in expected.code_shards
        ]
        assert len(got.code_shards) == len(got.shards) > 0
        assert all(s.shard.startswith("shards/") for s in got.shards)
        assert all(s.shard.startswith(f"codes/{TOKENIZER_SHA256[:16]}/") for s in got.code_shards)
        for shard in [*got.shards, *got.code_shards]:
            assert file_sha256(root / shard.shard) == shard.sha256
            assert (root / shard.shard).stat().st_size == shard.bytes
        assert (got.created_at, got.where, got.code_version) == (
            expected.created_at,
            expected.where,
            expected.code_version,
        )
        assert got.policy_versions == [POLICY_VERSION]
        assert got.tokenizer_sha256 == [TOKENIZER_SHA256] and got.tokenizer_is_demo
        assert got.n_utterances == expected.n_utterances
        assert sum(u.n_utterances for u in got.units) == expected.n_utterances
        assert sum(u.duration_s for u in got.units) == pytest.approx(expected.duration_s)
        assert sum(u.n_shards for u in got.units) == len(expected.shards)
        assert sum(u.n_code_shards for u in got.units) == len(expected.code_shards)
        for unit in got.units:
            assert (unit.source, unit.n_inputs, unit.declared_duration_s) == (SOURCE, 4, 2.0)
            assert unit.items_sha256 == hashlib.sha256(unit.unit.encode()).hexdigest()
        (source,) = got.sources
        assert (source.name, source.kind, source.path, source.configured) == (
            SOURCE,
            "audio_folder",
            "corpora/synth",
            True,
        )
        assert source.n_units == len(got.units)
    assert [u.unit for u in result.release("tiny-v1").units] == list(UNITS)
    assert [u.unit for u in result.release("tiny-v2").units] == [UNITS[0]]
    assert [u.n_shards for u in result.release("tiny-v1").units] == [2, 2]
    assert [u.n_code_shards for u in result.release("tiny-v1").units] == [2, 2]
    with pytest.raises(KeyError):
        result.release("tiny-v3")


def test_found_by_path_run_id_and_sha256(tiny: TinyLake, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tiny.project
    checkpoint = project.lake.root / "checkpoints" / MTP1 / "hf"
    monkeypatch.chdir(project.directory)
    by_path = {
        str(checkpoint): "path",
        f"checkpoints/{MTP1}/hf": "path",  # relative to the lake root
        f"lake/checkpoints/{MTP1}/hf/": "path",  # relative to the current folder
        f"checkpoints/{MTP1}": "path",  # the run's folder (hf/ and deepspeed/)
        str(checkpoint / "model.safetensors"): "path",  # a file inside
        MTP1: "run_id",
        MTP1_SHA256[:8]: "sha256",
        MTP1_SHA256.upper(): "sha256",
    }
    for query, how in by_path.items():
        result = lineage(project, query)
        assert (result.run.run_id, result.matched_by, result.query) == (MTP1, how, query)
    assert lineage(project, f"checkpoints/{STAGE1}/hf").run.run_id == STAGE1
    stage1 = lineage(project, STAGE1_SHA256[:8])
    assert [r.run_id for r in stage1.runs] == [STAGE1]
    assert [r.name for r in stage1.releases] == ["tiny-v1"]
    assert [e.eval_id for e in stage1.evals] == ["eval-stage1-dev"]


def test_unknown_and_ambiguous_checkpoints(tiny: TinyLake) -> None:
    project = tiny.project
    with pytest.raises(LineageError) as error:
        lineage(project, "checkpoints/nope/hf")
    message = str(error.value)
    assert "no training run" in message and "'checkpoints/nope/hf'" in message
    assert str(project.lake.root / "checkpoints" / "nope" / "hf") in message
    assert "run ids" in message and "2 runs" in message and "sha256" in message
    with pytest.raises(LineageError, match="starting with 'fedcba'"):
        lineage(project, "fedcba")
    with pytest.raises(LineageError, match="needs 6 to 64 hex digits"):
        lineage(project, "abc")
    with pytest.raises(LineageError, match=rf"prefix 'abcdef' is ambiguous.*{MTP1}.*{STAGE1}"):
        lineage(project, "abcdef")
    # The outside base model is not a checkpoint of ours.
    with pytest.raises(LineageError, match="no training run"):
        lineage(project, OUTSIDE_BASE)


def test_a_run_whose_release_is_missing(copied: Project) -> None:
    shutil.rmtree(copied.lake.release_dir("tiny-v1"))
    rebuild_catalogue(copied)
    with pytest.raises(
        LineageError,
        match=rf"run {STAGE1} \(stage1\) trained on release 'tiny-v1', which is not in "
        r"catalogue .*releases there: tiny-v2",
    ):
        lineage(copied, MTP1)


def test_a_base_run_missing_from_the_catalogue(copied: Project) -> None:
    (copied.lake.root / "runs" / f"{STAGE1}.json").unlink()
    rebuild_catalogue(copied)
    with pytest.raises(LineageError, match=rf"run {MTP1} starts from run {STAGE1}.*not in"):
        lineage(copied, MTP1)


def test_a_base_found_by_checkpoint_path_and_a_fresh_model(copied: Project) -> None:
    record = json.loads((copied.lake.root / "runs" / f"{MTP1}.json").read_text())
    write_run(copied, {**record, "base_run_id": None})
    write_run(copied, run_record(STAGE1, base_checkpoint=None))
    rebuild_catalogue(copied)
    result = lineage(copied, MTP1)
    assert [r.run_id for r in result.runs] == [MTP1, STAGE1]
    assert result.base_checkpoint is None
    assert "freshly initialised" in _render(result)


def test_a_running_run_without_a_checkpoint_yet(copied: Project) -> None:
    running = run_record(
        "mtp1-0002",
        stage="mtp1",
        base_checkpoint=f"checkpoints/{STAGE1}/hf",
        base_run_id=STAGE1,
        checkpoint=None,
        checkpoint_sha256=None,
        status="running",
        finished_at=None,
        metrics={},
    )
    write_run(copied, running)
    rebuild_catalogue(copied)
    result = lineage(copied, "mtp1-0002")
    assert [r.run_id for r in result.runs] == ["mtp1-0002", STAGE1]
    assert result.checkpoint is None and result.evals == []
    assert "checkpoint (none yet)" in _render(result)


def test_catalogue_errors(copied: Project) -> None:
    con = duckdb.connect(str(copied.catalogue_path))
    con.execute("UPDATE catalogue_info SET value = '1' WHERE name = 'schema_version'")
    con.close()
    with pytest.raises(LineageError, match=r"schema version 1.*catalogue rebuild"):
        lineage(copied, MTP1)
    copied.catalogue_path.unlink()
    with pytest.raises(CatalogueError, match="no catalogue"):
        lineage(copied, MTP1)


# ---------------------------------------------------------------------------
# The command


def _render(result: Lineage) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(lineage_tree(result))
    return console.export_text()


runner = CliRunner()


def test_cli_tree(tiny: TinyLake) -> None:
    project = str(tiny.project.directory)
    result = runner.invoke(app, ["lineage", f"checkpoints/{MTP1}/hf", "--project", project])
    assert result.exit_code == 0, result.output
    out = result.output
    for expected in (
        f"checkpoints/{MTP1}/hf",
        MTP1_SHA256[:12],
        f"run {MTP1}",
        f"run {STAGE1}",
        "trained on release tiny-v2",
        "trained on release tiny-v1",
        "release tiny-v1 (created",
        "release tiny-v2 (created",
        "eval-mtp1-dev",
        f"{SOURCE} (audio_folder)",
        UNITS[0],
        UNITS[1],
        TOKENIZER_SHA256[:12],
        "DEMO",
    ):
        assert expected in out, expected
    assert MTP1_SHA256 not in out  # short sha256s only
    release = tiny.releases["tiny-v1"]
    for shard in [*release.shards, *release.code_shards]:
        assert shard.shard in out and shard.sha256[:12] in out
    assert f"audio shards ({len(release.shards)})" in out
    assert f"code shards ({len(release.code_shards)})" in out
    assert "2 audio + 2 code shards" in out
    assert (
        out.index(f"run {MTP1}")
        < out.index(f"run {STAGE1}")
        < out.index("release tiny-v2 (created")
    )
    assert "eval-stage1-dev" not in out


def test_cli_json(tiny: TinyLake) -> None:
    project = str(tiny.project.directory)
    result = runner.invoke(app, ["lineage", MTP1_SHA256[:10], "--project", project, "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload == json.loads(lineage(tiny.project, MTP1_SHA256[:10]).model_dump_json())
    assert Lineage.model_validate(payload).run.run_id == MTP1
    assert [r["run_id"] for r in payload["runs"]] == [MTP1, STAGE1]
    shards = payload["releases"][1]["shards"]
    assert [s["sha256"] for s in shards] == [s.sha256 for s in tiny.releases["tiny-v1"].shards]
    code_shards = payload["releases"][1]["code_shards"]
    assert [s["sha256"] for s in code_shards] == [
        s.sha256 for s in tiny.releases["tiny-v1"].code_shards
    ]
    assert payload["evals"][0]["eval_id"] == "eval-mtp1-dev"


def test_cli_errors(tiny: TinyLake, tmp_path: Path) -> None:
    project = str(tiny.project.directory)
    result = runner.invoke(app, ["lineage", "abcdef", "--project", project])
    assert result.exit_code == 2 and "ambiguous" in result.output
    result = runner.invoke(app, ["lineage", "no-such-run", "--project", project])
    assert result.exit_code == 2 and "no training run" in result.output
    result = runner.invoke(app, ["lineage", MTP1, "--project", str(tmp_path)])
    assert result.exit_code == 2 and "voxlake.yaml" in result.output
