"""The README's first command: the demo runs end to end and its summary matches the
bundled corpora, utterance for utterance and rejection for rejection; and on an
80-column terminal it keeps the console rules (docs/console.md)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from pipelines.demo.project import DEMO_SOURCES

EXPECTED_NAME = {
    "librispeech": "librispeech",
    "wenetspeech": "wenetspeech",
    "emilia": "emilia",
    "custom_folder": "custom_folder",
    "custom_table": "custom_table",
    "custom_vita": "custom_vita",
    "custom_hf": "custom_hf_disk",
    "custom_parquet": "custom_hf_parquet",
}


# Lines that come from Dagster's, DeepSpeed's or a library's own logging: they belong in
# the run's log files, never on the console.
INTERNALS = [
    re.compile(pattern)
    for pattern in (
        r" - dagster - ",
        r"\[INFO\]",
        r"\[WARNING\]",
        r"\bDeepSpeed\b",
        r"ds_accelerator",
        r"torch\.distributed",
        r"mpg123",
        r"^Note: ",
        r"UserWarning",
        r"PreviewWarning",
        r"Traceback",
    )
]


def _voxlake(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "voxlake"
    return subprocess.run(
        [str(exe), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "80"},
        timeout=1200,
    )


def _assert_console_rules(demo: subprocess.CompletedProcess[str], cwd: Path) -> None:
    """What an 80-column terminal shows of the demo: lines that fit, no cut id, one
    demo-tokenizer warning at the top of the summary, no internals, the logs in files."""
    lines = (demo.stdout + demo.stderr).splitlines()
    assert max(len(line) for line in lines) <= 80, max(lines, key=len)
    assert "…" not in demo.stdout + demo.stderr  # nothing is cut
    flat = " ".join((demo.stdout + demo.stderr).split())
    assert flat.count("random-weight demo tokenizer") == 1, flat
    assert flat.count("carry no meaning") == 1
    for line in lines:
        for pattern in INTERNALS:
            assert not pattern.search(line), line
    out = demo.stdout.splitlines()
    first_table = out.index("per source")
    assert first_table <= 48, "\n".join(out[:first_table])
    warning = next(i for i, line in enumerate(out) if "random-weight demo tokenizer" in line)
    note = next(i for i, line in enumerate(out) if "Why the error rates are near 100 %" in line)
    assert warning < first_table and note < first_table
    # One line per phase, with what the plan knew of the audio.
    units = next(line for line in out if line.startswith("units "))
    assert re.match(r"units +\d+ units, [\d.]+ h of audio, in \d+:\d\d:\d\d", units), units
    assert len(out) <= 130, len(out)
    logs = re.search(r"^logs: (\S+)", demo.stdout, re.MULTILINE)
    assert logs, demo.stdout
    folder = cwd / logs.group(1)
    assert folder.is_dir()
    text = "".join(p.read_text(errors="replace") for p in folder.iterdir() if p.is_file())
    assert " - dagster - " in text  # Dagster's own log lines
    assert "deepspeed.launcher" in text and "[launch.py" in text  # the DeepSpeed launcher


@pytest.mark.slow
def test_demo_summary_matches_the_bundled_corpora(tmp_path: Path, load_expected) -> None:
    demo = _voxlake("demo", "--dir", str(tmp_path / "demo"), cwd=tmp_path)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    # Paths are shown relative to the current folder when inside it (shorter lines).
    assert "demo project: demo\n" in demo.stdout and "catalogue:      demo/" in demo.stdout
    _assert_console_rules(demo, tmp_path)
    flat = " ".join(demo.stdout.split())  # the words of the output, however it wrapped

    query = _voxlake(
        "query",
        "SELECT source, status, reject_stage, reject_rule FROM utterances",
        "--format",
        "json",
        "--project",
        str(tmp_path / "demo"),
        cwd=tmp_path,
    )
    assert query.returncode == 0, query.stderr
    rows = json.loads(query.stdout)
    seen = Counter((r["source"], r["status"], r["reject_stage"], r["reject_rule"]) for r in rows)
    want: Counter[tuple[str, str, str | None, str | None]] = Counter()
    for source, *_ in DEMO_SOURCES:
        for entry in load_expected(EXPECTED_NAME[source]):
            if entry["status"] == "rejected":
                want[(source, "rejected", "ingest", entry["reason"])] += 1
            elif entry["later_reason"] is not None:
                want[(source, "rejected", "policy", entry["later_reason"])] += 1
            else:
                want[(source, "accepted", None, None)] += 1
    assert seen == want
    assert "release demo-v1" in flat and "audit of release demo-v1: passed" in flat
    assert (tmp_path / "demo" / "lake" / "reports" / "quality.html").exists()
    assert (tmp_path / "demo" / "lake" / "reports" / "audit.html").exists()

    # The runs are real Dagster runs in the project's instance.
    runs = list((tmp_path / "demo" / ".dagster").rglob("runs.db"))
    assert runs, "no Dagster run storage in the demo's DAGSTER_HOME"

    # Training: the four tiny stages ran in order on the release, each starting from the
    # previous checkpoint, and the final checkpoint was evaluated; the demo printed the
    # evaluation table and the lineage of the final checkpoint.
    stages = _voxlake(
        "query",
        "SELECT stage, status, release, base_run_id, run_id, checkpoint FROM runs "
        "ORDER BY started_at",
        "--format",
        "json",
        "--project",
        str(tmp_path / "demo"),
        cwd=tmp_path,
    )
    assert stages.returncode == 0, stages.stderr
    runs_rows = json.loads(stages.stdout)
    assert [(r["stage"], r["status"]) for r in runs_rows] == [
        ("stage1", "succeeded"),
        ("mtp1", "succeeded"),
        ("mtp10", "succeeded"),
        ("sft", "succeeded"),
    ]
    assert all(r["release"] == "demo-v1" for r in runs_rows)
    assert [r["base_run_id"] for r in runs_rows[1:]] == [r["run_id"] for r in runs_rows[:-1]]
    evals = _voxlake(
        "query",
        "SELECT checkpoint, split FROM evals",
        "--format",
        "json",
        "--project",
        str(tmp_path / "demo"),
        cwd=tmp_path,
    )
    assert json.loads(evals.stdout) == [
        {"checkpoint": runs_rows[-1]["checkpoint"], "split": "test"}
    ]
    for schedule in ("vanilla", "balance", "boost", "turbo"):
        assert schedule in demo.stdout
    # The compact lineage: the final checkpoint, its stages back to a fresh model, the
    # release, and the command that prints the whole tree.
    assert (
        f"lineage: {runs_rows[-1]['checkpoint']} (sha256 " in flat
        and "sft <- mtp10 <- mtp1 <- stage1 <- a fresh model, on release demo-v1" in flat
    )
    assert f"voxlake lineage {runs_rows[-1]['run_id']} --project" in flat
    for row in runs_rows:
        assert row["run_id"] in demo.stdout.split()  # whole, in the runs table

    # ASR error rates per evaluation set, why they are near 100 %, and the report.
    assert "error rates per evaluation set" in demo.stdout
    assert "wenetspeech/test_net" in demo.stdout and "librispeech/dev-clean-2" in demo.stdout
    assert "Why the error rates are near 100 %" in flat
    report = re.search(r"evalreport:(\S+?\.html)", "".join(demo.stdout.split()))
    assert report and (tmp_path / report.group(1)).is_file()
    by_snr = _voxlake(
        "query",
        "SELECT floor(u.wada_snr_db / 5) * 5 AS snr_db, sum(e.n_errors) / sum(e.n_ref_units) "
        "AS wer FROM eval_utterances e JOIN utterances u USING (utterance_id) "
        "WHERE e.metric = 'wer' GROUP BY ALL",
        "--format",
        "json",
        "--project",
        str(tmp_path / "demo"),
        cwd=tmp_path,
    )
    assert by_snr.returncode == 0 and json.loads(by_snr.stdout), by_snr.stderr
