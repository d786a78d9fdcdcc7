"""The audit report an auditor reads and listens to, over a small real lake (two corpora
through inventory, manifest, quality and tokens with the demo tokenizer; the catalogue;
release r1).

Checked: the report holds the verdict, a row for every audio and code shard with its
sha256 match, members, samples and duration, a plot of the re-measured − stored
differences per measure, the re-tokenized codes' agreement, and a player per sampled
utterance whose FLAC is byte for byte the one in the audio shard, with its transcript,
speaker and code count; the sample is N per source and the same for the same seed; a
tampered shard shows as "differs" in its row; `voxlake audit --sample --seed` passes
both on; the `release` step audits each release it creates and writes its report;
headless Chromium renders the report from a file:// URL, decodes every plot and loads
every audio element.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
import soundfile as sf
from typer.testing import CliRunner

from pipelines.audio.pcm import pcm_sha256
from pipelines.catalogue.read import query_catalogue
from pipelines.cli.app import app
from pipelines.project import Project
from pipelines.releases.audit import audit
from pipelines.releases.audit_report import MEASURE_LABELS
from pipelines.releases.audit_sample import REMEASURE_TOLERANCE, code_agreement, draw_sample
from pipelines.releases.create import load_release
from pipelines.shards.reader import iter_shard_samples
from pipelines.steps.quality_report import write_report
from pipelines.steps.release import create_configured_releases
from schemas import ReleaseSpec

# The quality report's browser test owns the Chromium helper and the load probe.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "quality"))
from test_report_browser import CHROMIUM, PROBE, PROBE_RESULT, _chromium

KEPT = {"librispeech", "wenetspeech"}
AUDIO_URI = re.compile(r'<audio controls preload="metadata" src="data:audio/flac;base64,([^"]+)"')
PLAYER_ROW = re.compile(r"<tr><td><audio[^>]*></audio></td><td><code>([^<]+)</code></td>")


@pytest.fixture(scope="module")
def lake(
    tmp_path_factory: pytest.TempPathFactory,
    corpora: Path,
    released_project: Callable[[Path, Path], Project],
) -> Project:
    """Two corpora through every per-unit step, the catalogue, release r1, a quality report."""
    project = released_project(tmp_path_factory.mktemp("audit-report") / "proj", corpora)
    write_report(project)
    return project


def _catalogue(project: Project, sql: str) -> pl.DataFrame:
    frame = pl.from_arrow(query_catalogue(project.catalogue_path, sql))
    assert isinstance(frame, pl.DataFrame)
    return frame


def _flac_members(project: Project) -> dict[str, bytes]:
    """Every audio sample's FLAC in the lake's audio shards, by `<shard>:<key>`."""
    shards = _catalogue(project, "SELECT shard FROM shards")["shard"].to_list()
    return {
        f"{shard}:{key}": members["flac"]
        for shard in shards
        for key, members in iter_shard_samples(project.lake.root / shard)
    }


@pytest.fixture(scope="module")
def report(lake: Project, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The audit of release r1 with 3 utterances per source, seed 11: its file and HTML."""
    path = tmp_path_factory.mktemp("audit-page") / "audit.html"
    result = audit(lake, release="r1", sample=3, seed=11, report=path)
    assert result.passed, result.problems
    return path, path.read_text(encoding="utf-8")


def test_the_report_tables_every_shard(lake: Project, report: tuple[Path, str]) -> None:
    _, page = report
    assert '<p class="verdict ok">PASSED</p>' in page
    release, utterances = load_release(lake, "r1")
    for listed in (release.shards, release.code_shards):
        for shard in listed:
            row = re.search(rf"<tr><td><code>{re.escape(shard.shard)}</code></td>(.*?)</tr>", page)
            assert row is not None, shard.shard
            cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))
            n = int((utterances["shard"] == shard.shard).sum()) or int(
                (utterances["codes_shard"] == shard.shard).sum()
            )
            seconds = utterances.filter(
                (pl.col("shard") == shard.shard) | (pl.col("codes_shard") == shard.shard)
            )["duration_s"].sum()
            assert "match" in cells[0] and "ok" in cells[1]
            assert cells[2] == f"{n} / {n}" and cells[3] == f"{seconds:.2f}" and cells[4] == "0"
    assert f"<th>{len(release.shards)} shards</th>" in page
    assert f"<th>{len(release.code_shards)} shards</th>" in page


def test_the_report_plots_differences_and_code_agreement(report: tuple[Path, str]) -> None:
    _, page = report
    plots = re.findall(r'<img alt="([^"]+) differences"[^>]*src="data:image/png;base64,', page)
    assert plots == [MEASURE_LABELS[n][0] for n in REMEASURE_TOLERANCE]
    n = 3 * len(KEPT)
    assert f"{n} of {n} re-tokenized utterances give exactly the stored codes" in page
    assert page.count('<td class="num ok">100.00%</td>') == n
    assert "Stored → re-measured, per utterance" in page
    assert '<a href="quality.html">' not in page  # the report is not in the reports folder
    assert "the quality report</a>" in page


def test_players_hold_the_shards_flac_per_source(lake: Project, report: tuple[Path, str]) -> None:
    _, page = report
    played = PLAYER_ROW.findall(page)
    rows = _catalogue(
        lake,
        "SELECT utterance_id, source, shard, key, text, speaker, n_codes, pcm_sha256 "
        "FROM utterances WHERE shard IS NOT NULL",
    )
    _, utterances = load_release(lake, "r1")
    in_release = rows.filter(pl.col("utterance_id").is_in(utterances["utterance_id"].implode()))
    # Three per source, drawn with the seed: what `draw_sample` draws over the release.
    assert sorted(played) == sorted(draw_sample(in_release, 3, 11))
    by_source = in_release.filter(pl.col("utterance_id").is_in(played))["source"].value_counts()
    assert sorted(by_source.rows()) == [(s, 3) for s in sorted(KEPT)]
    flac_of = _flac_members(lake)
    by_id = {r["utterance_id"]: r for r in in_release.to_dicts()}
    encoded = AUDIO_URI.findall(page)
    assert len(encoded) == len(played)
    for utterance_id, data in zip(played, encoded, strict=True):
        row = by_id[utterance_id]
        flac = base64.b64decode(data)
        # Byte for byte what the audio shard stores, and what the catalogue describes.
        assert flac == flac_of[f"{row['shard']}:{row['key']}"]
        audio, rate = sf.read(io.BytesIO(flac), dtype="float32")
        assert rate == 16_000 and pcm_sha256(audio) == row["pcm_sha256"]
        card = page[page.index(f"</audio></td><td><code>{utterance_id}</code>") :]
        card = card.split("</tr>", 1)[0]
        assert card.endswith(f'<td class="num">{row["n_codes"]}</td>')
        for value in (row["text"], row["speaker"]):
            if value:
                assert html.escape(value, quote=True) in card


def test_the_same_seed_draws_the_same_sample_and_another_seed_another(lake: Project) -> None:
    rows = _catalogue(lake, "SELECT utterance_id, source FROM utterances WHERE shard IS NOT NULL")
    first, again = draw_sample(rows, 4, 5), draw_sample(rows.reverse(), 4, 5)
    assert first == again and len(first) == 4 * len(KEPT)
    assert any(draw_sample(rows, 4, seed) != first for seed in range(6, 12))
    sizes = rows["source"].value_counts().rows()
    assert draw_sample(rows, 10_000, 0) == set(rows["utterance_id"])  # all when N is larger
    assert all(n >= 4 for _, n in sizes)


def test_code_agreement_counts_missing_codes_as_disagreement() -> None:
    import numpy as np

    assert code_agreement(np.array([1, 2, 3]), np.array([1, 2, 3])) == 1.0
    assert code_agreement(np.array([1, 2, 3, 4]), np.array([1, 9, 3])) == 0.5
    assert code_agreement(np.array([], dtype=int), np.array([], dtype=int)) == 1.0


def test_a_tampered_shard_shows_in_its_row(lake: Project, tmp_path: Path) -> None:
    import shutil

    from pipelines.project import load_project

    target = tmp_path / "proj"
    shutil.copytree(lake.directory, target, symlinks=True)
    copied = load_project(target)
    release, _ = load_release(copied, "r1")
    shard = release.shards[0].shard
    path = copied.lake.root / shard
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # tar padding: the samples still read, the sha256 does not match
    path.write_bytes(bytes(data))
    out = tmp_path / "audit.html"
    result = audit(copied, release="r1", sample=1, report=out)
    assert not result.passed
    page = out.read_text()
    assert '<p class="verdict bad">FAILED: ' in page
    row = re.search(rf"<tr><td><code>{re.escape(shard)}</code></td>(.*?)</tr>", page)
    assert row is not None and '<span class="bad">differs</span>' in row.group(1)
    # Rows with problems come first.
    assert page.index(shard) < min(page.index(s.shard) for s in release.shards[1:])


def test_the_audit_command_passes_sample_and_seed(lake: Project, tmp_path: Path) -> None:
    out = tmp_path / "cli.html"
    invoked = CliRunner().invoke(
        app,
        ["audit", "--source", "wenetspeech", "--sample", "2", "--seed", "7", "--out", str(out),
         "--project", str(lake.directory)],
    )  # fmt: skip
    assert invoked.exit_code == 0, invoked.output
    rows = _catalogue(
        lake,
        "SELECT utterance_id, source FROM utterances "
        "WHERE shard IS NOT NULL AND source = 'wenetspeech'",
    )
    assert sorted(PLAYER_ROW.findall(out.read_text())) == sorted(draw_sample(rows, 2, 7))
    assert "2 re-measured, 2 re-tokenized" in " ".join(invoked.output.split())


def test_the_release_step_audits_each_release_it_creates(lake: Project, tmp_path: Path) -> None:
    import shutil

    from pipelines.project import load_project

    target = tmp_path / "proj"
    shutil.copytree(lake.directory, target, symlinks=True)
    config = load_project(target).config.model_copy(deep=True)
    config.releases = [ReleaseSpec(name="nightly", where="source = 'librispeech'")]
    project = Project(directory=target, config=config)
    said: list[str] = []
    outcome = create_configured_releases(project, info=said.append, warn=said.append)
    report = project.lake.reports_dir() / "audit-nightly.html"
    assert outcome.created == ["nightly"] and outcome.audit_reports == {"nightly": str(report)}
    assert outcome.audit_problems == {"nightly": []}
    assert f"release nightly: audit passed, report {report}" in said
    page = report.read_text()
    assert "voxlake audit: release nightly" in page and "PASSED" in page
    # Next to the quality report: the link finds it.
    assert '<a href="quality.html">the quality report</a>' in page
    assert len(PLAYER_ROW.findall(page)) > 0
    assert json.dumps(outcome.audit_reports)  # metadata the asset records


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"headless Chromium not installed at {CHROMIUM}")
def test_chromium_renders_the_report_and_loads_every_player(report: tuple[Path, str]) -> None:
    path, page = report
    workdir = path.parent
    relaxed = page.replace("script-src 'none'", "script-src 'unsafe-inline'")
    assert relaxed != page, "the report's CSP no longer says script-src 'none'"
    probe = workdir / "probe.html"
    probe.write_text(relaxed.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    shown = _chromium(workdir, "audit", "--virtual-time-budget=15000", "--dump-dom", probe.as_uri())
    found = PROBE_RESULT.search(shown.stdout)
    assert found is not None, "the probe script did not report (page not loaded?)"
    counts = json.loads(found.group(1))
    n_players = len(PLAYER_ROW.findall(page))
    assert n_players == 3 * len(KEPT)
    assert counts == {
        "images": len(REMEASURE_TOLERANCE),
        "decoded_images": len(REMEASURE_TOLERANCE),
        "audio": n_players,
        "audio_with_metadata": n_players,
    }
