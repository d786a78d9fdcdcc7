"""The README's first command: the demo runs end to end and its summary matches the
bundled corpora, utterance for utterance and rejection for rejection."""

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


def _voxlake(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "voxlake"
    return subprocess.run(
        [str(exe), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=1200,
    )


@pytest.mark.slow
def test_demo_summary_matches_the_bundled_corpora(tmp_path: Path, load_expected) -> None:
    demo = _voxlake("demo", "--dir", str(tmp_path / "demo"), cwd=tmp_path)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "catalogue:" in demo.stdout and str(tmp_path / "demo") in demo.stdout

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
    assert "release demo-v1" in demo.stdout and "audit of release demo-v1: passed" in demo.stdout
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
    assert f"checkpoint {runs_rows[-1]['checkpoint']}" in demo.stdout  # the lineage tree
    assert "release demo-v1" in demo.stdout and "base: freshly initialised model" in demo.stdout

    # ASR error rates per evaluation set, why they are near 100 %, and the report.
    assert "error rates per evaluation set" in demo.stdout
    assert "wenetspeech/test_net" in demo.stdout and "librispeech/dev-clean-2" in demo.stdout
    assert "Why the error rates are near 100 %" in demo.stdout
    report = re.search(r"evaluation report: (\S+\.html)", demo.stdout)
    assert report and Path(report.group(1)).is_file()
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
