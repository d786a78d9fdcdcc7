"""The quality report renders self-contained, escaped HTML with the right counts and clips."""

from __future__ import annotations

import base64
import datetime as dt
import io
import math
import re
from pathlib import Path

import matplotlib.image
import numpy as np
import polars as pl
import pyarrow as pa
import pytest
import soundfile as sf

from pipelines.lake.atomic import write_parquet_atomic
from pipelines.project import Project, init_project
from pipelines.steps.quality_report import MAX_CLIP_S, load_report_rows, write_report
from quality.report.html import render_report
from quality.report.plots import PLOT_HEIGHT_PX, PLOT_WIDTH_PX
from quality.report.rows import Clip, select_clips
from quality.report.summary import markdown_summary
from schemas import (
    MANIFEST_ARROW_SCHEMA,
    QUALITY_ARROW_SCHEMA,
    ManifestRecord,
    QualityRecord,
    SourceConfig,
)

NAN = math.nan
EVIL_TEXT = "<script>alert(\"x\")</script> 你好，世界 & 'quotes'"
COLUMNS = (
    "utterance_id source language status reject_stage reject_rule reject_value "
    "reject_threshold reject_message wada_snr_db duration_s clipping_ratio bandwidth_hz text"
).split()


def _row(*values: object) -> dict[str, object]:
    return dict(zip(COLUMNS, values, strict=True))


def synthetic_rows() -> pl.DataFrame:
    """Three sources; known counts, margins and SNRs; NaN/None measures; hostile text.

    - libri (en): 3 accepted, 3 rejected (policy ×2, ingest ×1); every measure present.
    - wenet (zh): 2 accepted (one SNR NaN), 3 rejected (decode, policy ×2); no clipping data.
    - emilia (en / none): 2 rejected at ingest, nothing measured: every plot is "no data".
    """
    rows = [
        _row("libri/a1", "libri", "en", "accepted", None, None, None, None, None,
             25.0, 4.0, 0.0, 7800.0, "a clean one"),
        _row("libri/a2", "libri", "en", "accepted", None, None, None, None, None,
             12.0, 6.0, 0.0002, 7600.0, "a fair one"),
        _row("libri/a3", "libri", "en", "accepted", None, None, None, None, None,
             8.5, 5.0, 0.0, 7700.0, "a noisy one"),
        _row("libri/r1", "libri", "en", "rejected", "policy", "min_snr_db", 4.8, 5.0,
             "WADA SNR 4.8 dB < 5.0 dB", 4.8, 3.0, 0.0, 7000.0, "just too noisy"),
        _row("libri/r2", "libri", "en", "rejected", "ingest", "missing_audio", None, None,
             "audio file 'x.flac' does not exist", None, None, None, None, "no audio"),
        _row("libri/r3", "libri", "en", "rejected", "policy", "max_clipping_ratio", 0.0011,
             0.001, "clipping 0.0011 > 0.001", 20.0, 4.0, 0.0011, 7900.0, "clipped"),
        _row("wenet/a1", "wenet", "zh", "accepted", None, None, None, None, None,
             30.0, 2.0, None, 7500.0, EVIL_TEXT),
        _row("wenet/a2", "wenet", "zh", "accepted", None, None, None, None, None,
             NAN, 3.0, None, 7400.0, "没有测量"),
        _row("wenet/r1", "wenet", "zh", "rejected", "decode", "unreadable_audio", None, None,
             "not a readable audio file", None, None, None, None, "坏文件"),
        _row("wenet/r2", "wenet", "zh", "rejected", "policy", "min_duration_s", 0.3, 0.5,
             "duration 0.3 s < 0.5 s", 18.0, 0.3, None, 7000.0, "短"),
        _row("wenet/r3", "wenet", "zh", "rejected", "policy", "chars_per_s", 14.0, 12.0,
             "14 chars/s > 12", 16.0, 1.0, None, NAN, "太快了太快了"),
        _row("emilia/r1", "emilia", "en", "rejected", "ingest", "path_escape", None, None,
             "'../x' resolves outside the root", None, None, None, None, "escaped"),
        _row("emilia/r2", "emilia", None, "rejected", "ingest", "missing_metadata", None, None,
             "no json for this mp3", None, None, None, None, None),
    ]  # fmt: skip
    frame = pl.DataFrame(rows, schema_overrides={c: pl.Float64 for c in COLUMNS[6:8]})
    return frame.with_columns(
        pl.lit("abc123def456").alias("policy_version"),
        pl.lit(None, dtype=pl.String).alias("speaker"),
        pl.col("utterance_id").str.split("/").list.first().alias("unit"),
        pl.when(pl.col("reject_rule").is_not_null() & (pl.col("reject_stage") == "policy"))
        .then(pl.concat_list(pl.col("reject_rule")))
        .otherwise(pl.lit([], dtype=pl.List(pl.String)))
        .alias("failed_rules"),
    )


EXPECTED_LOWEST = ["libri/a3", "libri/a2", "libri/a1", "wenet/a1"]
EXPECTED_BORDERLINE = ["libri/r1", "libri/r3", "wenet/r3", "wenet/r2"]
# libri 4 plots, wenet 3 (no clipping data), emilia 0 (nothing measured).
EXPECTED_PLOTS = 7
EXPECTED_NO_DATA = 5


def fake_clips() -> list[Clip]:
    """A clip for every lowest-SNR row and every borderline row but wenet/r2 (no audio)."""
    clips = [Clip(u, "lowest_snr", b"RIFF-fake-" + u.encode()) for u in EXPECTED_LOWEST]
    clips += [Clip(u, "borderline", b"RIFF-fake-" + u.encode()) for u in EXPECTED_BORDERLINE[:3]]
    return clips


@pytest.fixture(scope="module")
def report_html() -> str:
    return render_report(
        synthetic_rows(),
        fake_clips(),
        title="Test <report> & co",
        generated_by="voxlake tests",
        generated_at=dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
    )


def test_select_clips_on_synthetic_rows() -> None:
    assert select_clips(synthetic_rows()) == {
        "lowest_snr": EXPECTED_LOWEST,
        "borderline": EXPECTED_BORDERLINE,
    }


def test_select_clips_hand_built_frame() -> None:
    frame = pl.DataFrame(
        {
            "utterance_id": ["s/1", "s/2", "s/3", "s/4", "s/5", "s/6", "s/7", "s/8", "s/9"],
            "source": ["s"] * 9,
            "status": ["accepted"] * 4 + ["rejected"] * 5,
            "wada_snr_db": [7.0, -3.0, 7.0, None, 1.0, 2.0, 3.0, 4.0, 5.0],
            "reject_stage": [None] * 4 + ["policy", "policy", "policy", "ingest", "policy"],
            # s/5: 1.0 vs 0 → margin 1e9 (the 1e-9 floor); s/6: 9 vs 10 → 0.1;
            # s/7: 10.5 vs 10 → 0.05; s/8: ingest, excluded; s/9: NaN value, excluded.
            "reject_value": [None] * 4 + [1.0, 9.0, 10.5, 10.0, NAN],
            "reject_threshold": [None] * 4 + [0.0, 10.0, 10.0, 10.0, 10.0],
            "policy_version": ["v"] * 9,
        }
    )
    assert select_clips(frame) == {
        "lowest_snr": ["s/2", "s/1", "s/3"],  # ties (7.0) by id; s/4 has no SNR
        "borderline": ["s/7", "s/6", "s/5"],
    }
    assert select_clips(frame, n=1) == {"lowest_snr": ["s/2"], "borderline": ["s/7"]}
    html = render_report(frame, [], "t", "tests")
    row = re.search(r'<tr data-utterance="s/5">.*?</tr>', html, re.S)
    assert row is not None and "1 vs 0 (threshold 0: no relative margin)" in row.group(0)
    row = re.search(r'<tr data-utterance="s/7">.*?</tr>', html, re.S)
    assert row is not None and "10.5 vs 10 (margin 5 %)" in row.group(0)


def test_report_is_self_contained(report_html: str) -> None:
    assert report_html.startswith("<!DOCTYPE html>")
    assert "http://" not in report_html and "https://" not in report_html
    references = re.findall(r"""\b(?:src|href)\s*=\s*["']([^"']*)["']""", report_html)
    assert references, "expected embedded images and audio"
    assert all(ref.startswith("data:") for ref in references), [
        r[:40] for r in references if not r.startswith("data:")
    ]
    assert "<link" not in report_html and "@import" not in report_html
    assert "Content-Security-Policy" in report_html


def test_one_png_per_plot_and_no_data_for_the_rest(report_html: str) -> None:
    uris = re.findall(r'<img src="(data:image/png;base64,[^"]+)"', report_html)
    assert len(uris) == EXPECTED_PLOTS
    assert report_html.count("<img ") == EXPECTED_PLOTS
    assert report_html.count(">no data<") == EXPECTED_NO_DATA
    emilia = re.search(r'data-source="emilia">.*?</div></div>', report_html, re.S)
    assert emilia is not None and emilia.group(0).count("no data") == 4
    # Every PNG decodes to the declared size.
    for uri in uris:
        png = base64.b64decode(uri.split(",", 1)[1])
        image = matplotlib.image.imread(io.BytesIO(png), format="png")
        assert image.shape[:2] == (PLOT_HEIGHT_PX, PLOT_WIDTH_PX)


def test_audio_players_match_clips(report_html: str) -> None:
    assert report_html.count("<audio") == len(fake_clips()) == 7
    encoded = base64.b64encode(b"RIFF-fake-libri/r1").decode()
    assert f'src="data:audio/wav;base64,{encoded}"' in report_html
    # wenet/r2 has no clip: its row says so instead of holding a broken player.
    row = re.search(r'<tr data-utterance="wenet/r2">.*?</tr>', report_html, re.S)
    assert row is not None and "audio unavailable" in row.group(0) and "<audio" not in row.group(0)


def test_tables_list_the_selected_rows_in_order(report_html: str) -> None:
    for section, expected in (("lowest_snr", EXPECTED_LOWEST), ("borderline", EXPECTED_BORDERLINE)):
        block = re.search(rf'<section id="{section}">.*?</section>', report_html, re.S)
        assert block is not None
        assert re.findall(r'<tr data-utterance="([^"]+)">', block.group(0)) == expected
    borderline = re.search(r'<tr data-utterance="libri/r1">.*?</tr>', report_html, re.S)
    assert borderline is not None
    assert "min_snr_db" in borderline.group(0) and "4.8 vs 5 (margin 4 %)" in borderline.group(0)


def test_text_from_data_is_escaped(report_html: str) -> None:
    assert "<script" not in report_html
    assert (
        "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; 你好，世界 &amp; &#x27;quotes&#x27;"
        in (report_html)
    )
    assert "<title>Test &lt;report&gt; &amp; co</title>" in report_html


def _cell(html: str, row_attrs: str, css: str) -> str:
    row = re.search(rf"<tr {re.escape(row_attrs)}>.*?</tr>", html, re.S)
    assert row is not None, row_attrs
    cell = re.search(rf'<td class="num {css}">([^<]*)</td>', row.group(0))
    assert cell is not None, (row_attrs, css)
    return cell.group(1)


def test_per_source_and_language_counts(report_html: str) -> None:
    expected = {"libri": (6, 3, 3), "wenet": (5, 2, 3), "emilia": (2, 0, 2)}
    for source, (inputs, accepted, rejected) in expected.items():
        attrs = f'data-source="{source}"'
        assert _cell(report_html, attrs, "n-inputs") == str(inputs)
        assert _cell(report_html, attrs, "n-accepted") == str(accepted)
        assert _cell(report_html, attrs, "n-rejected") == str(rejected)
    by_language = {
        ("emilia", "en"): ("0", "1"),
        ("emilia", "und"): ("0", "1"),
        ("libri", "en"): ("3", "3"),
        ("wenet", "zh"): ("2", "3"),
    }
    for (source, language), (accepted, rejected) in by_language.items():
        attrs = f'data-source="{source}" data-language="{language}"'
        assert _cell(report_html, attrs, "n-accepted") == accepted
        assert _cell(report_html, attrs, "n-rejected") == rejected
    assert '<span id="total-accepted">5</span>' in report_html
    assert '<span id="total-rejected">8</span>' in report_html
    assert "<code>abc123def456</code>" in report_html
    assert "2025-01-02 03:04:05 UTC" in report_html


def test_rejections_by_stage_and_rule(report_html: str) -> None:
    section = re.search(r'<section id="rejections">.*?</section>', report_html, re.S)
    assert section is not None
    rows = re.findall(r'<tr data-stage="([^"]+)" data-rule="([^"]+)">', section.group(0))
    # Pipeline order (ingest, decode, policy), then by count, then by rule name.
    assert rows == [
        ("ingest", "missing_audio"),
        ("ingest", "missing_metadata"),
        ("ingest", "path_escape"),
        ("decode", "unreadable_audio"),
        ("policy", "chars_per_s"),
        ("policy", "max_clipping_ratio"),
        ("policy", "min_duration_s"),
        ("policy", "min_snr_db"),
    ]
    assert "audio file &#x27;x.flac&#x27; does not exist" in section.group(0)
    assert _cell(report_html, 'data-stage="policy" data-rule="min_snr_db"', "n-rejected") == "1"


def test_clip_outside_its_section_is_an_error() -> None:
    with pytest.raises(ValueError, match="libri/r1"):
        render_report(synthetic_rows(), [Clip("libri/r1", "lowest_snr", b"x")], "t", "tests")
    with pytest.raises(ValueError, match="section"):
        Clip("libri/r1", "worst", b"x")  # type: ignore[arg-type]


def test_empty_rows_render() -> None:
    html = render_report(pl.DataFrame(), [], "empty", "tests")
    assert "No quality records" in html and "<img" not in html


def test_partial_clip_is_labelled() -> None:
    clips = [Clip("libri/a3", "lowest_snr", b"RIFF", duration_s=2.0)]
    html = render_report(synthetic_rows(), clips, "t", "tests")
    row = re.search(r'<tr data-utterance="libri/a3">.*?</tr>', html, re.S)
    assert row is not None and "first 2.0 s" in row.group(0)


def test_markdown_summary() -> None:
    lines = markdown_summary(synthetic_rows()).splitlines()
    assert lines[0].startswith("| source | accepted | rejected | accepted h |")
    assert lines[2:] == [
        "| emilia | 0 | 2 | 0.000 | — | ingest/missing_metadata (1) |",
        # accepted 4 + 6 + 5 s; median of 8.5, 12, 25 dB; three rules tie at 1: first by name.
        "| libri | 3 | 3 | 0.004 | 12.0 | ingest/missing_audio (1) |",
        # wenet/a2 has no SNR: median of the one finite value.
        "| wenet | 2 | 3 | 0.001 | 30.0 | decode/unreadable_audio (1) |",
        "| **all** | 5 | 8 | 0.006 | 18.5 | decode/unreadable_audio (1) |",
    ]


# ---------------------------------------------------- pipelines.steps.quality_report over a lake

SAMPLE_RATE_HZ = 16_000


def _noise_pcm(seconds: float, seed: int) -> np.ndarray:
    """Random 16-bit PCM (so that a wrong offset or a wrong file cannot compare equal)."""
    rng = np.random.default_rng(seed)
    return rng.integers(-8000, 8000, int(seconds * SAMPLE_RATE_HZ), dtype=np.int16)


def _manifest(utterance_id: str, unit: str, audio_path: str | None, **fields: object) -> dict:
    return ManifestRecord(
        utterance_id=utterance_id,
        source="folder",
        corpus_kind="audio_folder",
        unit=unit,
        audio_path=audio_path,
        language="en",
        text=f"text of {utterance_id}",
        speaker="spk1",
        **fields,  # type: ignore[arg-type]
    ).model_dump(mode="json")


def _decision(utterance_id: str, unit: str, **fields: object) -> dict:
    return QualityRecord(
        utterance_id=utterance_id,
        source="folder",
        unit=unit,
        language="en",
        policy_version="feedfacecafe",
        **fields,  # type: ignore[arg-type]
    ).model_dump(mode="json")


@pytest.fixture()
def lake_project(tmp_path: Path) -> tuple[Project, dict[str, np.ndarray]]:
    """A project whose lake holds two units of one audio-folder source.

    folder/a: accepted, whole 3 s file, SNR 10 dB.     folder/b: accepted, 2 s at 1 s of long.wav.
    folder/c: accepted, its file is gone (SNR 5 dB).  folder/d: accepted, whole 30 s file.
    folder/e: rejected at ingest.                      folder/f: policy rejection, 4.5 vs 5 dB.
    """
    project = init_project(tmp_path / "proj").with_source(
        SourceConfig(name="folder", kind="audio_folder", path="corpus")
    )
    corpus = project.directory / "corpus"
    corpus.mkdir()
    audio = {"a": _noise_pcm(3.0, 1), "long": _noise_pcm(30.0, 2), "f": _noise_pcm(2.0, 3)}
    for name, pcm in audio.items():
        sf.write(corpus / f"{name}.wav", pcm, SAMPLE_RATE_HZ, subtype="PCM_16")
    u0, u1 = "folder.all.00000", "folder.all.00001"
    manifests = {
        u0: [
            _manifest("folder/a", u0, "a.wav", duration_s=3.0),
            _manifest("folder/b", u0, "long.wav", offset_s=1.0, duration_s=2.0),
            _manifest("folder/c", u0, "gone.wav", duration_s=2.0),
        ],
        u1: [
            _manifest("folder/d", u1, "long.wav", duration_s=30.0),
            _manifest("folder/e", u1, None, status="rejected", reject_reason="missing_audio",
                      reject_message="no audio is named"),
            _manifest("folder/f", u1, "f.wav", duration_s=2.0),
        ],
    }  # fmt: skip
    decisions = {
        u0: [
            _decision("folder/a", u0, status="accepted", wada_snr_db=10.0, duration_s=3.0),
            _decision("folder/b", u0, status="accepted", wada_snr_db=12.0, duration_s=2.0),
            _decision("folder/c", u0, status="accepted", wada_snr_db=5.0, duration_s=2.0),
        ],
        u1: [
            _decision("folder/d", u1, status="accepted", wada_snr_db=20.0, duration_s=30.0),
            _decision("folder/e", u1, status="rejected", reject_stage="ingest",
                      reject_rule="missing_audio", reject_message="no audio is named",
                      declared_duration_s=None),
            _decision("folder/f", u1, status="rejected", reject_stage="policy",
                      reject_rule="min_snr_db", reject_value=4.5, reject_threshold=5.0,
                      reject_message="WADA SNR 4.5 dB < 5 dB", failed_rules=["min_snr_db"],
                      wada_snr_db=4.5, duration_s=2.0),
        ],
    }  # fmt: skip
    for unit in (u0, u1):
        write_parquet_atomic(
            project.lake.manifest("folder", unit),
            pa.Table.from_pylist(manifests[unit], schema=MANIFEST_ARROW_SCHEMA),
        )
        write_parquet_atomic(
            project.lake.root / "quality" / "folder" / f"{unit}.parquet",
            pa.Table.from_pylist(decisions[unit], schema=QUALITY_ARROW_SCHEMA),
        )
    return project, audio


def _clips_in(html: str, utterance_id: str) -> list[np.ndarray]:
    """The int16 samples of every player in `utterance_id`'s table rows."""
    clips = []
    for row in re.findall(rf'<tr data-utterance="{re.escape(utterance_id)}">.*?</tr>', html, re.S):
        for encoded in re.findall(r'src="data:audio/wav;base64,([^"]+)"', row):
            samples, rate = sf.read(io.BytesIO(base64.b64decode(encoded)), dtype="int16")
            assert rate == SAMPLE_RATE_HZ
            clips.append(samples)
    return clips


def test_load_report_rows_joins_manifest(lake_project: tuple[Project, dict]) -> None:
    project, _ = lake_project
    rows = load_report_rows(project).sort("utterance_id")
    assert rows["utterance_id"].to_list() == [f"folder/{x}" for x in "abcdef"]
    assert rows["text"][1] == "text of folder/b" and rows["speaker"][1] == "spk1"
    assert rows["offset_s"][1] == 1.0 and rows["audio_path"][1] == "long.wav"
    # folder/e was never measured and its decision declares no duration: the manifest's (None).
    assert rows["duration_s"].to_list() == [3.0, 2.0, 2.0, 30.0, None, 2.0]


def test_write_report_embeds_the_measured_audio(lake_project: tuple[Project, dict]) -> None:
    project, audio = lake_project
    path = write_report(project)
    assert path == project.lake.root / "reports" / "quality.html"
    html = path.read_text(encoding="utf-8")
    # Lowest SNR accepted: c (5 dB, file gone), a, b, d; borderline: f.
    assert re.findall(r'<tr data-utterance="([^"]+)">', html) == [
        "folder/c", "folder/a", "folder/b", "folder/d", "folder/f",
    ]  # fmt: skip
    assert html.count("<audio") == 4
    assert "audio unavailable" in re.search(r'data-utterance="folder/c">.*?</tr>', html, re.S)[0]
    (clip_a,) = _clips_in(html, "folder/a")
    np.testing.assert_array_equal(clip_a, audio["a"])
    (clip_b,) = _clips_in(html, "folder/b")  # the segment, not the start of the file
    np.testing.assert_array_equal(clip_b, audio["long"][SAMPLE_RATE_HZ : 3 * SAMPLE_RATE_HZ])
    (clip_d,) = _clips_in(html, "folder/d")  # capped, and the page says so
    np.testing.assert_array_equal(clip_d, audio["long"][: int(MAX_CLIP_S * SAMPLE_RATE_HZ)])
    assert f"first {MAX_CLIP_S:.1f} s" in html
    (clip_f,) = _clips_in(html, "folder/f")
    np.testing.assert_array_equal(clip_f, audio["f"])
    assert "text of folder/b" in html and "<code>feedfacecafe</code>" in html


def test_write_report_for_one_source(lake_project: tuple[Project, dict], tmp_path: Path) -> None:
    project, _ = lake_project
    path = write_report(project, source="folder")
    assert path.name == "quality-folder.html" and '<tr data-source="folder">' in path.read_text()
    custom = write_report(project, out=tmp_path / "elsewhere" / "r.html")
    assert custom.is_file()
    with pytest.raises(KeyError, match="nope"):
        write_report(project, source="nope")


def test_write_report_refuses_an_inconsistent_lake(lake_project: tuple[Project, dict]) -> None:
    project, _ = lake_project
    project.lake.manifest("folder", "folder.all.00001").unlink()
    with pytest.raises(FileNotFoundError, match=re.escape("folder.all.00001.parquet")):
        write_report(project)


def test_write_report_without_quality_files(tmp_path: Path) -> None:
    project = init_project(tmp_path / "empty")
    html = write_report(project).read_text(encoding="utf-8")
    assert "No quality records" in html
