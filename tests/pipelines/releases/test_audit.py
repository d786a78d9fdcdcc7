"""Releases and their audit over a small real lake: audio shards from the quality step,
code shards from the tokens step (demo tokenizer), the catalogue, one release.

Checked: a release lists its audio shards and its code shards with the sha256 and size
the catalogue has (and the files have), each utterance with its code shard; the audit
of a release, a source and the lake passes and counts both kinds of shards, re-measuring
and re-tokenizing a sample; a code shard changed after the release is reported by
`verify_release_shards` (and the `release` asset's check) and by the audit, whose
re-tokenization compares against the codes in the code shard; a code shard that lost a
sample, a missing code shard and an audio sample whose JSON disagrees are reported;
`voxlake release show | list` and `voxlake audit` show both kinds of shards.
"""

from __future__ import annotations

import io
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from pipelines.catalogue.read import query_catalogue
from pipelines.cli.app import app
from pipelines.project import Project, load_project
from pipelines.releases.audit import audit, verify_release_shards
from pipelines.releases.create import load_release
from pipelines.shards.reader import read_code_index
from pipelines.steps.release import check_shards_intact
from pipelines.tokenizer import configured_tokenizer_sha256
from schemas.hashing import file_sha256

KEPT = {"librispeech", "wenetspeech"}


@pytest.fixture(scope="module")
def lake(
    tmp_path_factory: pytest.TempPathFactory,
    corpora: Path,
    released_project: Callable[[Path, Path], Project],
) -> Project:
    """Two corpora through inventory, manifest, quality and tokens; the catalogue; release r1."""
    project = released_project(tmp_path_factory.mktemp("audit") / "proj", corpora)
    return project


@pytest.fixture
def copied(lake: Project, tmp_path: Path) -> Project:
    """A copy of the lake's project, free to tamper with."""
    target = tmp_path / "proj"
    shutil.copytree(lake.directory, target, symlinks=True)
    return load_project(target)


def _catalogue(project: Project, sql: str) -> pl.DataFrame:
    frame = pl.from_arrow(query_catalogue(project.catalogue_path, sql))
    assert isinstance(frame, pl.DataFrame)
    return frame


def _rewrite_tar(path: Path, change: Callable[[list[tuple[str, bytes]]], list[tuple[str, bytes]]]):
    """Write `path` again with its members (name, data) passed through `change`."""
    with tarfile.open(path, mode="r:") as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar]  # type: ignore[union-attr]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:", format=tarfile.PAX_FORMAT) as tar:
        for name, data in change(members):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())


def test_a_release_lists_both_kinds_of_shards_with_the_catalogues_checksums(
    lake: Project,
) -> None:
    release, utterances = load_release(lake, "r1")
    root = lake.lake.root
    sha256 = configured_tokenizer_sha256(lake.directory, lake.config.tokenizer)
    assert release.tokenizer_sha256 == [sha256] and release.tokenizer_is_demo
    # Every accepted utterance was tokenized: all of them are in the release.
    accepted = _catalogue(lake, "SELECT * FROM utterances WHERE status = 'accepted'")
    assert utterances.height == accepted.height == release.n_utterances > 5
    joined = utterances.join(accepted, on="utterance_id", suffix="_catalogue")
    for column in ("key", "shard", "codes_shard"):
        assert (joined[column] == joined[f"{column}_catalogue"]).all(), column
    for kind, table, listed, column in (
        ("audio", "shards", release.shards, "shard"),
        ("codes", "code_shards", release.code_shards, "codes_shard"),
    ):
        assert [s.shard for s in listed] == sorted(utterances[column].unique()), kind
        catalogued = _catalogue(
            lake, f"SELECT shard, sha256, bytes, source, unit FROM {table} ORDER BY shard"
        )
        assert [s.model_dump() for s in listed] == catalogued.to_dicts(), kind
        for shard in listed:
            assert file_sha256(root / shard.shard) == shard.sha256
            assert (root / shard.shard).stat().st_size == shard.bytes
    assert all(s.shard.startswith(f"codes/{sha256[:16]}/") for s in release.code_shards)
    registered = _catalogue(
        lake, "SELECT kind, count(*) AS n FROM release_shards GROUP BY kind ORDER BY kind"
    )
    assert registered.rows() == [
        ("audio", len(release.shards)),
        ("codes", len(release.code_shards)),
    ]


def test_the_audit_checks_audio_and_code_shards(lake: Project, tmp_path: Path) -> None:
    release, _ = load_release(lake, "r1")
    report = tmp_path / "audit.html"
    result = audit(lake, release="r1", sample=4, report=report)
    assert result.passed, result.problems
    assert (result.shards, result.code_shards) == (len(release.shards), len(release.code_shards))
    assert result.samples == result.code_samples == release.n_utterances
    # Four per source, and the release holds two sources.
    assert result.remeasured == result.retokenized == 4 * len(KEPT)
    page = report.read_text()
    assert "PASSED" in page and "code shards checked" in page

    everything = audit(lake, sample=2)
    n_shards = _catalogue(lake, "SELECT count(*) AS n FROM shards")["n"][0]
    n_code_shards = _catalogue(lake, "SELECT count(*) AS n FROM code_shards")["n"][0]
    assert everything.passed, everything.problems
    assert (everything.shards, everything.code_shards) == (n_shards, n_code_shards)
    assert everything.samples == everything.code_samples == release.n_utterances
    one_source = audit(lake, source="wenetspeech", sample=1)
    assert one_source.passed and 0 < one_source.samples < everything.samples


def test_a_code_shard_changed_after_the_release_is_reported(copied: Project) -> None:
    release, _ = load_release(copied, "r1")
    target = release.code_shards[0]
    path = copied.lake.root / target.shard
    # One byte of the last code of the shard's first sample, inside the codes data.
    row = read_code_index(path.parent)[0]
    assert row.shard == target.shard
    data = bytearray(path.read_bytes())
    data[row.codes_offset + row.codes_size - 1] ^= 0x01
    path.write_bytes(bytes(data))

    problems = verify_release_shards(copied, "r1")
    assert problems == [f"release r1: code shard {target.shard} changed since release"]
    assert not check_shards_intact(problems).passed

    result = audit(copied, release="r1", sample=release.n_utterances)
    assert not result.passed
    assert f"release r1: code shard {target.shard} changed since release" in result.problems
    assert f"code shard {target.shard}: sha256 differs from the catalogue" in result.problems
    # The stored codes are no longer those of the audio: re-tokenizing tells.
    assert f"{row.utterance_id}: re-tokenized codes differ from those in the code shard" in (
        result.problems
    )
    assert result.retokenized == release.n_utterances
    assert not [p for p in result.problems if "audio shard" in p]


def test_a_code_shard_out_of_step_and_a_missing_one_are_reported(copied: Project) -> None:
    code_shards = _catalogue(copied, "SELECT * FROM code_shards ORDER BY shard")
    several = code_shards.filter(pl.col("n_samples") >= 2).row(0, named=True)
    gone = code_shards.filter(pl.col("shard") != several["shard"])["shard"][0]
    in_shard = [
        r
        for r in read_code_index((copied.lake.root / several["shard"]).parent)
        if r.shard == several["shard"]
    ]
    last_key = in_shard[-1].key
    # The code shard loses its last sample: it no longer holds its audio shard's keys.
    _rewrite_tar(
        copied.lake.root / several["shard"],
        lambda members: [(n, d) for n, d in members if not n.startswith(f"{last_key}.")],
    )
    (copied.lake.root / gone).unlink()

    assert set(verify_release_shards(copied, "r1")) == {
        f"release r1: code shard {several['shard']} changed since release",
        f"release r1: code shard {gone} is missing",
    }
    result = audit(copied, sample=0)
    assert not result.passed
    expected = [
        f"code shard {several['shard']}: sha256 differs from the catalogue",
        f"{several['shard']}: catalogue row {last_key} has no sample in the shard",
        f"code shard {several['shard']} holds {len(in_shard) - 1} keys, its audio shard "
        f"{several['audio_shard']} {len(in_shard)}: not the same keys in the same order",
    ]
    for problem in expected:
        assert problem in result.problems
    assert any(p.startswith(f"code shard {gone} is missing") for p in result.problems)


def test_an_audio_sample_whose_json_disagrees_is_reported(copied: Project) -> None:
    shard = _catalogue(copied, "SELECT shard FROM shards WHERE n_samples >= 1 ORDER BY shard")[
        "shard"
    ][0]

    def retitle(members: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        name, data = next((n, d) for n, d in members if n.endswith(".json"))
        changed = data.replace(b'"text":"', b'"text":"not ', 1)
        assert changed != data
        return [(n, changed if n == name else d) for n, d in members]

    _rewrite_tar(copied.lake.root / shard, retitle)
    result = audit(copied, sample=0)
    assert not result.passed
    assert f"audio shard {shard}: sha256 differs from the catalogue" in result.problems
    assert any(p.startswith(f"{shard}:") and "json text is 'not " in p for p in result.problems)


runner = CliRunner()


def _words(output: str) -> str:
    """The output with every run of whitespace one space (rich wraps long lines)."""
    return " ".join(output.split())


def test_the_commands_show_both_kinds_of_shards(lake: Project, tmp_path: Path) -> None:
    release, _ = load_release(lake, "r1")
    project = ["--project", str(lake.directory)]
    shown = runner.invoke(app, ["release", "show", "r1", *project])
    assert shown.exit_code == 0, shown.output
    counts = f"shards: {len(release.shards)} audio, {len(release.code_shards)} codes"
    assert counts in _words(shown.output)
    listed = runner.invoke(app, ["release", "list", *project])
    assert listed.exit_code == 0 and "code shards" in listed.output
    report = str(tmp_path / "a.html")
    audited = runner.invoke(
        app, ["audit", "--release", "r1", "--sample", "1", "--out", report, *project]
    )
    assert audited.exit_code == 0, audited.output
    n = release.n_utterances
    assert (
        f"{len(release.shards)} audio shards ({n} samples), "
        f"{len(release.code_shards)} code shards ({n} samples)" in _words(audited.output)
    )
    assert "audit passed" in audited.output
