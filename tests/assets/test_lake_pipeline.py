"""The whole lake pipeline through Dagster on two small sources: shards read back with
webdataset equal the prepared audio and the tokens, the catalogue equals a rebuild,
releases are immutable and split by speaker, and the audit catches tampering. One
release made the way `voxlake release create` makes it is registered at once."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import polars as pl
import pytest
import soundfile as sf
import webdataset as wds

from assets.runner import run_assets
from inference.glm4voice import expected_code_count
from pipelines.catalogue.build import rebuild_catalogue
from pipelines.catalogue.read import open_catalogue_readonly, query_catalogue
from pipelines.demo.project import demo_config
from pipelines.project import Project, init_project
from pipelines.releases.audit import audit
from pipelines.releases.create import ReleaseError, create_release, load_release
from pipelines.steps.release import create_and_register
from pipelines.tokenizer import configured_tokenizer_sha256
from schemas import ProjectConfig, ReleaseSpec
from schemas.shards import decode_codes

pytestmark = pytest.mark.slow

TABLES = [
    "utterances",
    "shards",
    "code_shards",
    "units",
    "sources",
    "releases",
    "release_shards",
    "release_utterances",
]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, corpora: Path) -> Project:
    folder = tmp_path_factory.mktemp("lake") / "proj"
    config = demo_config(folder, corpora).model_dump(mode="json")
    config["sources"] = [
        s for s in config["sources"] if s["name"] in {"librispeech", "wenetspeech"}
    ]
    config["releases"] = [{"name": "r1", "where": "TRUE", "dev": 0.3, "test": 0.3}]
    config["quality"]["sources"].pop("emilia")
    project = init_project(folder, ProjectConfig.model_validate(config))
    report = run_assets(project)
    assert report.success, report.failures
    return project


def _table(con, name: str) -> pl.DataFrame:  # type: ignore[no-untyped-def]
    frame = pl.from_arrow(con.sql(f"SELECT * FROM {name}").to_arrow_table())
    return frame.sort(frame.columns)


def test_audio_and_code_shards_read_back_with_webdataset(project: Project) -> None:
    lake = project.lake
    tokenizer = configured_tokenizer_sha256(project.directory, project.config.tokenizer)
    assert tokenizer is not None
    indexes = sorted(lake.shards_root().glob("*/*/index.parquet"))
    assert indexes
    for index_path in indexes:
        index = pl.read_parquet(index_path)
        unit = index_path.parent.name
        source = index_path.parent.parent.name
        code_folder = lake.codes_dir(tokenizer, source, unit)
        code_index = pl.read_parquet(code_folder / "index.parquet")
        audio_urls = sorted(str(p) for p in index_path.parent.glob("audio-*.tar"))
        code_urls = sorted(str(p) for p in code_folder.glob("codes-*.tar"))
        assert len(audio_urls) == len(code_urls)
        if not audio_urls:  # a unit with nothing accepted has empty indexes and no shard
            assert index.height == 0 and code_index.height == 0
            continue
        audio = list(wds.WebDataset(audio_urls, shardshuffle=False, empty_check=False))
        codes = list(wds.WebDataset(code_urls, shardshuffle=False, empty_check=False))
        assert [s["__key__"] for s in audio] == [s["__key__"] for s in codes]
        assert [s["__key__"] for s in audio] == index["key"].to_list()
        for audio_sample, code_sample in zip(audio, codes, strict=True):
            samples, rate = sf.read(io.BytesIO(audio_sample["flac"]), dtype="int16")
            meta = json.loads(audio_sample["json"])
            code_meta = json.loads(code_sample["json"])
            assert rate == 16000 and samples.ndim == 1
            assert len(samples) == round(meta["duration_s"] * 16000)
            values = decode_codes(code_sample["codes.npy"])
            assert len(values) == code_meta["n_codes"] == expected_code_count(len(samples))
            assert code_meta["utterance_id"] == meta["utterance_id"]
            assert code_meta["text"] == meta["text"]


def test_catalogue_equals_a_rebuild(project: Project, tmp_path: Path) -> None:
    rebuilt = tmp_path / "rebuilt.duckdb"
    rebuild_catalogue(project, path=rebuilt)
    with (
        open_catalogue_readonly(project.catalogue_path) as a,
        open_catalogue_readonly(rebuilt) as b,
    ):
        for table in TABLES:
            assert _table(a, table).equals(_table(b, table)), table
        counts = a.sql("SELECT status, count(*) FROM utterances GROUP BY 1 ORDER BY 1").fetchall()
    assert dict(counts)["accepted"] > 0 and dict(counts)["rejected"] > 0


def test_release_is_immutable_and_splits_speakers(project: Project) -> None:
    release, utterances = load_release(project, "r1")
    assert release.n_utterances == utterances.filter(pl.col("split").is_not_null()).height
    speakers = (
        utterances.filter(pl.col("speaker").is_not_null())
        .group_by("source", "speaker")
        .agg(pl.col("split").n_unique().alias("splits"))
    )
    assert speakers["splits"].max() == 1
    with pytest.raises(ReleaseError, match="immutable"):
        create_release(project, ReleaseSpec(name="r1"))


def test_audit_passes_then_catches_tampering(project: Project, tmp_path: Path) -> None:
    clean = audit(project, release="r1", sample=4)
    assert clean.passed, clean.problems
    assert clean.samples == load_release(project, "r1")[0].n_utterances

    copy = tmp_path / "proj"
    shutil.copytree(project.directory, copy, symlinks=True)
    tampered = Project(copy, project.config)
    shard = sorted((tampered.lake.root / "shards").glob("*/*/audio-*.tar"))[0]
    data = bytearray(shard.read_bytes())
    data[1000] ^= 0xFF  # one flipped byte inside the first member's data
    shard.write_bytes(bytes(data))
    flipped = audit(tampered, sample=0)
    assert not flipped.passed
    assert any("sha256" in p for p in flipped.problems)

    shard.unlink()
    missing = audit(tampered, sample=0)
    assert any("missing" in p for p in missing.problems)


def test_catalogue_row_without_a_shard_is_caught(project: Project, tmp_path: Path) -> None:
    copy = tmp_path / "proj"
    shutil.copytree(project.directory, copy, symlinks=True)
    tampered = Project(copy, project.config)
    index_path = sorted((tampered.lake.root / "shards").glob("*/*/index.parquet"))[0]
    index = pl.read_parquet(index_path)
    ghost_shard = str(Path(index["shard"][0]).with_name("audio-999999.tar"))
    moved = index.with_columns(
        pl.when(pl.int_range(pl.len()) == 0)
        .then(pl.lit(ghost_shard))
        .otherwise(pl.col("shard"))
        .alias("shard")
    )
    moved.write_parquet(index_path)  # the catalogue will place one utterance in no real shard
    rebuild_catalogue(tampered)
    result = audit(tampered, sample=0)
    assert not result.passed
    assert any("audio-999999" in p for p in result.problems)
    assert any(index["key"][0] in p for p in result.problems)


def test_one_release_is_created_and_registered_on_its_own(project: Project) -> None:
    made = create_and_register(project, ReleaseSpec(name="r2", where="source = 'librispeech'"))
    assert made.folder == project.lake.release_dir("r2")
    rows = query_catalogue(
        project.catalogue_path, "SELECT name, n_utterances, where_sql FROM releases ORDER BY name"
    ).to_pylist()
    assert [r["name"] for r in rows] == ["r1", "r2"]
    assert rows[1]["n_utterances"] == made.release.n_utterances > 0
    assert rows[1]["where_sql"] == "source = 'librispeech'"
    with pytest.raises(ReleaseError, match="immutable"):
        create_and_register(project, ReleaseSpec(name="r2"))
