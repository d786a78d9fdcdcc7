"""The console rules (docs/console.md), pinned.

User errors: each is at most two lines on stderr (the problem, then `try:` a correct
example), exit status 2 and no traceback, except with `--verbose`, which may come
anywhere on the command line. A bug is one line and exit status 1. Tables fit 80
columns and never cut an id; a library's warning is printed once.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from rich.console import Console
from typer.testing import CliRunner

from assets.cli import app
from pipelines.cli import render, render_tables
from pipelines.cli.releases import release_rows
from pipelines.cli.render_fit import fit_table
from pipelines.cli.training import eval_set_rows, print_comparison, print_eval_sets
from pipelines.project import init_project
from schemas import ProjectConfig, SourceConfig

REPO = Path(__file__).resolve().parents[3]
LONG_SOURCE = "custom_parquet_very_long_name"
LONG_RUN = "stage1-demo-v1-8998c323396e"
LONG_SET = "librispeech_very_long_corpus_name/dev-clean-2"
SHARD = "codes/056e607b37c3426e/custom_folder/custom_folder.speaker_a.00000/codes-000000.tar"
HASH = "ec39fcfafde4" + "0" * 52

runner = CliRunner()


def _invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, corpora: Path) -> Path:
    """A project with one source and no lake yet (cheap: nothing runs, and its tokenizer
    is not the demo one, so no checkpoint is written)."""
    folder = tmp_path_factory.mktemp("console") / "proj"
    config = ProjectConfig(
        sources=[
            SourceConfig(
                name=LONG_SOURCE, kind="audio_folder", path=str(corpora / "custom" / "folder")
            )
        ],
        tokenizer={"checkpoint": "models/not-written"},  # type: ignore[arg-type]
    )
    init_project(folder, config)
    return folder


def _assert_user_error(code: int, stdout: str, stderr: str, *named: str) -> None:
    assert code == 2, (code, stdout, stderr)
    assert "Traceback" not in stdout + stderr
    lines = stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2, lines
    assert lines[0].startswith("error: "), lines
    assert lines[-1].startswith("try: voxlake "), lines
    for name in named:
        assert name in lines[0], (name, lines[0])


def _python_m_voxlake(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # The real entry point, as a user runs it (no terminal: rich prints plain text).
    env = {**os.environ, "COLUMNS": "80", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "assets.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


# ---------------------------------------------------------------------------
# User errors


def test_a_bad_selection_is_two_lines_through_the_real_entry_point(project: Path) -> None:
    result = _python_m_voxlake(
        "run", "--select", "inventory*,manifest*", "--project", str(project), cwd=project
    )
    _assert_user_error(result.returncode, result.stdout, result.stderr, "inventory*,manifest*")
    assert "--select 'key:inventory/* or key:manifest'" in result.stderr


def test_a_selection_that_matches_nothing(project: Path) -> None:
    code, out, err = _invoke("run", "--select", "key:no_such_asset", "--project", str(project))
    _assert_user_error(code, out, err, "matches no asset")


def test_an_unknown_source_lists_the_known_ones(project: Path) -> None:
    code, out, err = _invoke("run", "--source", "nope", "--project", str(project))
    _assert_user_error(code, out, err, "'nope'", LONG_SOURCE)
    assert f"voxlake run --source {LONG_SOURCE}" in err
    code, out, err = _invoke("report", "--source", "nope", "--project", str(project))
    _assert_user_error(code, out, err, "'nope'")


@pytest.mark.parametrize(
    "args",
    [
        ["release", "show", "nope"],
        ["audit", "--release", "nope"],
        ["export", "vita-jsonl", "out", "--release", "nope"],
        ["export", "lhotse", "out", "--release", "nope"],
    ],
)
def test_a_missing_release_is_named(project: Path, args: list[str]) -> None:
    code, out, err = _invoke(*args, "--project", str(project))
    _assert_user_error(code, out, err, "no release named 'nope'")


@pytest.mark.parametrize(
    ("sql", "problem"),
    [("SELEC 1", "syntax error"), ("SELECT * FROM nope", "nope")],
)
def test_bad_sql_names_the_problem_and_the_tables(project: Path, sql: str, problem: str) -> None:
    code, out, err = _invoke("query", sql, "--project", str(project))
    _assert_user_error(code, out, err, problem)
    # Before a catalogue exists the lake views answer: the example uses one of them.
    assert 'try: voxlake query "SELECT' in err and "manifest_rows" in err


@pytest.mark.parametrize("args", [["eval", "report", "nope"], ["eval", "compare", "nope", "nope"]])
def test_an_unknown_evaluation_is_named(project: Path, args: list[str]) -> None:
    code, out, err = _invoke(*args, "--project", str(project))
    _assert_user_error(code, out, err, "'nope'")


def test_a_missing_evaluation_argument_is_two_lines(project: Path) -> None:
    code, out, err = _invoke("eval", "report", "--project", str(project))
    _assert_user_error(code, out, err, "Missing argument")


def test_no_project_says_how_to_make_one(tmp_path: Path) -> None:
    result = _python_m_voxlake("source", "list", cwd=tmp_path)
    _assert_user_error(result.returncode, result.stdout, result.stderr, "no voxlake project")
    assert f"try: voxlake init {tmp_path.resolve()}" in result.stderr


def test_export_into_a_non_empty_folder_names_overwrite(project: Path, tmp_path: Path) -> None:
    from pipelines.project import load_project
    from schemas.release import RELEASE_FILE

    # The exporters refuse the folder before they read the release: a release's file is
    # enough to get there.
    marker = load_project(project).lake.release_dir("r1") / RELEASE_FILE
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("{}")
    out = tmp_path / "export"
    out.mkdir()
    (out / "something").write_text("x")
    try:
        for kind in ("lhotse", "hf"):
            code, stdout, err = _invoke(
                "export", kind, str(out), "--release", "r1", "--project", str(project)
            )
            _assert_user_error(code, stdout, err, "is not empty")
            assert "overwrite=True" not in err and "--overwrite" in err
    finally:
        marker.unlink()
        marker.parent.rmdir()


def test_verbose_anywhere_shows_the_traceback(project: Path) -> None:
    for args in (
        ["--verbose", "query", "SELEC 1", "--project", str(project)],
        ["query", "SELEC 1", "--project", str(project), "-v"],
    ):
        code, _, err = _invoke(*args)
        assert code == 2
        assert "Traceback" in err and "QueryError" in err
        assert "error: cannot parse SQL" in err


def test_a_bug_is_one_line_and_exit_1(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipelines.cli.catalogue as catalogue

    def broken(*_args: object) -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(catalogue, "run_sql", broken)
    code, out, err = _invoke("query", "SELECT 1", "--project", str(project))
    assert code == 1 and "Traceback" not in out + err
    assert err.strip().splitlines() == [
        "error: internal error: ZeroDivisionError: division by zero; run again with "
        "--verbose for the traceback"
    ]
    code, out, err = _invoke("-v", "query", "SELECT 1", "--project", str(project))
    assert code == 1 and "Traceback" in err and "ZeroDivisionError" in err


def test_a_library_warning_is_printed_once(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    import pipelines.cli.catalogue as catalogue

    log = logging.getLogger("some.library")
    original = catalogue.run_sql

    def noisy(*args: object) -> object:
        for _ in range(3):
            log.warning("the same warning, three times")
        return original(*args)

    monkeypatch.setattr(catalogue, "run_sql", noisy)
    code, _, err = _invoke("query", "SELECT 1 AS one", "--project", str(project))
    assert code == 0, err
    assert err.count("the same warning, three times") == 1
    assert err.startswith("warning: ")


# ---------------------------------------------------------------------------
# Tables at 80 columns


@pytest.fixture
def screen(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """What `render` prints, on an 80-column console without colour."""
    buffer = io.StringIO()
    monkeypatch.setattr(render, "console", Console(file=buffer, width=80, color_system=None))
    return buffer


def _assert_fits(text: str, *ids: str) -> None:
    lines = text.splitlines()
    assert lines, "nothing printed"
    assert max(len(line) for line in lines) <= 80, max(lines, key=len)
    assert "…" not in text
    for name in ids:
        assert any(name in line for line in lines), f"{name} is cut or wrapped"


def test_fit_table_keeps_ids_whole_or_falls_back_to_blocks() -> None:
    console = Console(width=80, color_system=None, file=io.StringIO())
    headers = ["source", "accepted", "rejected", "accepted_hours", "median_snr_db", "policy"]
    rows = [[LONG_SOURCE, "6", "14", "0.0047", "27.7", HASH[:12]]]
    with console.capture() as captured:
        console.print(fit_table(headers, rows, 80))
    _assert_fits(captured.get(), LONG_SOURCE, HASH[:12])
    # Eleven wide ids cannot sit side by side in 80 columns: one block per row.
    wide = [f"column_{i}" for i in range(11)]
    with console.capture() as captured:
        console.print(fit_table(wide, [[f"{LONG_RUN}-{i}" for i in range(11)]], 80))
    _assert_fits(captured.get(), *(f"{LONG_RUN}-{i}" for i in range(11)))


def test_failures_longer_than_the_terminal_keep_their_paths_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    buffer = io.StringIO()
    monkeypatch.setattr(render, "err_console", Console(file=buffer, width=80, color_system=None))
    path = "/tmp/pytest-of-root/pytest-114/popen-gw1/test_run_fails_loudly_on_a_mis0/proj/nowhere"
    render.print_run_failures([f"inventory of source 'gone': path {path} does not exist"])
    render.print_mismatches([f"shard {path}/shard-000000.tar: sha256 differs"])
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("FAILED ") and f"{path} does not exist" in lines[0]
    assert lines[1].startswith("MISMATCH ") and f"{path}/shard-000000.tar" in lines[1]


def test_query_results_shorten_hashes_and_say_so(screen: io.StringIO) -> None:
    table = pa.table(
        {
            "source": [LONG_SOURCE, "emilia"],
            "run_id": [LONG_RUN, "sft-demo-v1-d8c3c6bdf193"],
            "policy_version": [HASH, HASH],
            "accepted_hours": [0.0047, 12.5],
            "median_snr_db": [27.7, 30.1],
        }
    )
    render_tables.print_arrow(table, "table")
    out = screen.getvalue()
    _assert_fits(out, LONG_SOURCE, LONG_RUN, HASH[:12])
    assert HASH not in out and "first 12 hex digits" in out


def test_summary_tables_fit(screen: io.StringIO) -> None:
    per_source = pa.table(
        {
            "source": [LONG_SOURCE, "librispeech"],
            "inputs": [20, 17],
            "ok": [12, 11],
            "rejected": [8, 6],
            "ok_hours": [0.0094, 0.0061],
            "languages": ["en,zh", "en"],
        }
    )
    rejections = pa.table(
        {
            "source": [LONG_SOURCE, "librispeech", LONG_SOURCE],
            "reject_reason": ["missing_audio", "missing_audio", "invalid_text_encoding"],
            "n": [1, 2, 1],
        }
    )
    quality = pa.table(
        {
            "source": [LONG_SOURCE, "librispeech"],
            "accepted": [6, 11],
            "rejected": [14, 6],
            "accepted_hours": [0.0047, 0.0061],
            "median_snr_db": [27.7, 20.1],
            "policy": [HASH, HASH],
        }
    )
    later = pa.table(
        {"source": [LONG_SOURCE], "stage": ["policy"], "rule": ["max_non_finite_samples"], "n": [1]}
    )
    render_tables.print_summary(per_source, rejections, quality, later)
    _assert_fits(screen.getvalue(), LONG_SOURCE, "max_non_finite_samples", HASH[:12])


def test_release_tables_fit(screen: io.StringIO) -> None:
    import datetime as dt

    import polars as pl

    from schemas import Release

    utterances = pl.DataFrame(
        {
            "split": ["train", "dev", "test", "train"],
            "source": [LONG_SOURCE, LONG_SOURCE, "wenetspeech", "wenetspeech"],
            "language": ["en", "en", "zh", None],
            "duration_s": [3.0, 2.0, 4.0, 1.0],
            "speaker": ["a", "b", "c", "c"],
        }
    )
    headers, rows = release_rows(utterances)
    assert headers == ["source", "language", "train", "dev", "test", "hours", "speakers"]
    assert rows[0][:5] == [LONG_SOURCE, "en", "1", "1", "0"]
    render_tables.print_rows(headers, rows)
    fields = dict.fromkeys(Release.model_fields)
    release = Release.model_construct(
        **{
            **fields,
            "name": "release-with-a-rather-long-name-v12",
            "created_at": dt.datetime(2026, 1, 2, tzinfo=dt.UTC),
            "n_utterances": 55,
            "duration_s": 143.6,
            "shards": [],
            "code_shards": [],
        }
    )
    render_tables.print_release_list([release])
    _assert_fits(screen.getvalue(), LONG_SOURCE, "release-with-a-rather-long-name-v12")


def test_training_and_evaluation_tables_fit(screen: io.StringIO) -> None:
    runs = pa.table(
        {
            "stage": ["stage1", "sft"],
            "run_id": [LONG_RUN, "sft-demo-v1-with-a-long-release-name-d8c3c6bdf193"],
            "status": ["succeeded", "succeeded"],
            "steps": ["10", "8"],
            "final_loss": [8.827, 16.476],
            "tokens_per_s": [1311.0, 143.0],
        }
    )
    render_tables.print_training_runs(runs)
    metrics = {
        "main_loss": 8.953,
        "text_loss": 9.577,
        "text_ppl": 14427.0,
        "audio_loss": 8.274,
        "audio_ppl": 3918.7,
        "main_top1": 0.095,
        "mctp_top1": [0.14] * 10,
        "schedules": [],
        "eval_sets": [
            {
                "eval_set": LONG_SET,
                "task": task,
                "metric": metric,
                "n_utterances": 1234,
                "n_ref_units": 123456,
                "error_rate": 0.854,
                "ci_low": 0.83,
                "ci_high": 0.88,
                "substitutions": 19300,
                "deletions": 10000,
                "insertions": 1000,
            }
            for task, metric in (("asr", "wer"), ("tts", "audio_token_error"))
        ],
    }
    render_tables.print_eval_table(metrics, "evaluation eval-0378cc1af36e-demo-v1-test")
    print_eval_sets(metrics)
    assert eval_set_rows(metrics)[1][1] == "tts ATE"
    _assert_fits(screen.getvalue(), LONG_RUN, LONG_SET, "19300/10000/1000", "85.4 [83.0, 88.0]")


def test_comparison_tables_fit(screen: io.StringIO) -> None:
    from pipelines.evaluation.compare import ComparedGroup
    from pipelines.evaluation.stats import PairedDifference

    fields = dict.fromkeys(PairedDifference.__dataclass_fields__)
    difference = PairedDifference(
        **{
            **fields,
            "rate_a": 0.5,
            "rate_b": 0.25,
            "difference": -0.25,
            "low": -0.3,
            "high": -0.2,
            "n_utterances": 1234,
            "n_ref_units": 23456,
        }
    )
    groups = [
        ComparedGroup("eval_set", "librispeech/dev-clean-2", "asr", "wer", difference),
        ComparedGroup("eval_set", "wenetspeech/test_net", "tts", "audio_token_error", difference),
    ]
    print_comparison(groups, "evaluation set")
    _assert_fits(screen.getvalue(), "librispeech/dev-clean-2", "tts ATE", "50.0 %")
    # A set name too long for the columns beside it: one block per set, still whole.
    print_comparison([ComparedGroup("eval_set", LONG_SET, "asr", "wer", difference)], "set")
    _assert_fits(screen.getvalue(), LONG_SET)


def test_results_and_lineage_lines_fit(screen: io.StringIO) -> None:
    render.print_fields("results", [("audit report", f"/a/long/project/lake/{SHARD}")])
    out = screen.getvalue()
    _assert_fits(out)
    assert SHARD in "".join(line.strip() for line in out.splitlines())  # folded, not cut


# ---------------------------------------------------------------------------
# Progress


def test_each_phase_ends_with_one_line_of_units_hours_and_time(screen: io.StringIO) -> None:
    times = iter([100.0, 130.0, 131.0, 136.0])
    with render.stage_progress(clock=lambda: next(times)) as on_progress:
        on_progress("units", 0, 22, 0, 4, 0.0, 0.06)
        on_progress("units", 22, 22, 4, 4, 0.06, 0.06)
        on_progress("lake", 0, 3, 0, 1)
        on_progress("lake", 3, 3, 1, 1)
    lines = screen.getvalue().splitlines()
    assert lines == [
        "units      22 units, 0.06 h of audio, in 0:00:30 (0.7 units/s, 7.2 h/h; 4 runs)",
        "lake       3 assets in 0:00:05",
    ]
