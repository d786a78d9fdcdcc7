"""The evaluation step on a demo-sized lake: LibriSpeech and WenetSpeech test corpora run
through the real steps into a catalogue, a release with evaluation sets, and a (random
weight) checkpoint evaluated on its held-out split. The evaluation fills `eval_utterances`
(one scored row per transcribed utterance, joinable to `utterances`), the breakdown views
answer WER/CER by SNR bucket, the record carries per-set error rates with intervals,
`voxlake eval compare` pairs two checkpoints' rows, and `voxlake eval report` writes a
self-contained page with the worst utterances' audio."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipelines.catalogue.build import update_catalogue
from pipelines.catalogue.read import query_catalogue
from pipelines.cli.app import app
from pipelines.project import Project
from pipelines.releases.create import create_release
from pipelines.steps.evaluation import run_evaluation, utterance_rows
from pipelines.steps.inventory import inventory_source
from pipelines.steps.manifest import build_manifest
from schemas import ReleaseSpec
from schemas.release import DEFAULT_EVAL_SPLITS
from schemas.training import (
    EVAL_UTTERANCE_ARROW_SCHEMA,
    EvalSettings,
    MixtureItem,
    StageConfig,
    TinyModelShape,
)
from trainer.checkpoints import export_checkpoint, prepare_model
from trainer.text_tokenizer import load_text_tokenizer, train_demo_text_tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "catalogue"))
from catalogue_lake import assess, new_project, tokenize, units_of

SOURCES = ("librispeech", "wenetspeech")
RELEASE = "eval-v1"
SETTINGS = EvalSettings(
    split="test",
    max_examples=4,
    decode_prompts=1,
    max_new_tokens=8,
    schedules=["vanilla"],
    asr_max_new_tokens=24,
    bootstrap_samples=200,
    report_worst=3,
)


def _checkpoint(folder: Path, texts: list[str], seed: int) -> Path:
    """A randomly initialised tiny Qwen2 + 1 MCTP module with a demo BPE, exported."""
    tokenizer_dir = train_demo_text_tokenizer(texts, folder / "tokenizer", vocab_size=400)
    tokenizer, vocab = load_text_tokenizer(tokenizer_dir)
    stage = StageConfig(
        stage="stage1",
        mctp_modules=1,
        trainable="all",
        max_steps=1,
        lr=1e-3,
        seq_len=256,
        mixture=[MixtureItem(task="asr")],
        init_model=TinyModelShape(hidden_size=32, intermediate_size=64, seed=seed),
    )
    model = prepare_model(stage, None, vocab.vocab_size, vocab.pad)
    out = folder / f"seed{seed}" / "hf"
    export_checkpoint(model, tokenizer, out, {"stage": "test"})
    return out


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory, corpora: Path) -> tuple:
    folder = tmp_path_factory.mktemp("evaluation")
    project = new_project(folder / "proj", corpora)
    config = project.config.model_copy(
        update={"sources": [s for s in project.config.sources if s.name in SOURCES]}
    )
    project = Project(project.directory, config)
    for source in project.config.sources:
        for plan in inventory_source(source, project.directory, project.lake, project.config.units):
            build_manifest(source, project.directory, project.lake, plan.unit, plan.n_inputs)
    assess(project, list(SOURCES))
    for source in SOURCES:
        for unit in units_of(project, source):
            tokenize(project, source, unit)
    update_catalogue(project)
    # The demo LibriSpeech has no test split: its dev-clean-2 is marked as an evaluation
    # set, next to the default test splits (WenetSpeech's test_net is one).
    spec = ReleaseSpec(
        name=RELEASE,
        test=0.2,
        dedup=True,
        eval_splits=[*DEFAULT_EVAL_SPLITS, "librispeech/dev-clean-2"],
    )
    create_release(project, spec)
    update_catalogue(project)
    texts = [
        row["text"]
        for row in query_catalogue(
            project.catalogue_path, "SELECT text FROM utterances WHERE text IS NOT NULL"
        ).to_pylist()
    ]
    first = _checkpoint(folder / "ckpt", texts, seed=0)
    record, result = run_evaluation(project, first, RELEASE, SETTINGS)
    return project, record, result, folder, texts


def test_the_evaluation_fills_eval_utterances_joinable_to_utterances(evaluated: tuple) -> None:
    project, record, result, _, _ = evaluated
    rows = query_catalogue(
        project.catalogue_path,
        f"SELECT * FROM eval_utterances WHERE eval_id = '{record.eval_id}' AND task = 'asr'",
    ).to_pylist()
    test_ids = query_catalogue(
        project.catalogue_path,
        f"SELECT utterance_id FROM release_utterances WHERE release = '{RELEASE}' "
        "AND split = 'test'",
    ).to_pylist()
    # Every held-out utterance with a transcript was transcribed and scored, once.
    assert len(rows) == len(result.transcriptions) > 0
    assert {r["utterance_id"] for r in rows} <= {r["utterance_id"] for r in test_ids}
    assert len({r["utterance_id"] for r in rows}) == len(rows)
    for row in rows:
        assert row["n_errors"] == row["substitutions"] + row["deletions"] + row["insertions"]
        if row["n_ref_units"]:
            assert row["error_rate"] == pytest.approx(row["n_errors"] / row["n_ref_units"])
        assert row["loss"] is not None and row["loss"] > 0
        assert row["metric"] == ("cer" if row["language"] == "zh" else "wer")
    sets = {r["eval_set"] for r in rows}
    assert {"librispeech/dev-clean-2", "wenetspeech/test_net"} <= sets
    # TTS rows: the teacher-forced audio-token error, all substitutions.
    tts = query_catalogue(
        project.catalogue_path,
        "SELECT metric, substitutions, n_errors FROM eval_utterances WHERE task = 'tts'",
    ).to_pylist()
    assert tts and all(
        r["metric"] == "audio_token_error" and r["substitutions"] == r["n_errors"] for r in tts
    )


def test_a_wer_by_snr_query_returns_rows(evaluated: tuple) -> None:
    project, record, _, _, _ = evaluated
    by_snr = query_catalogue(
        project.catalogue_path,
        "SELECT floor(u.wada_snr_db / 5) * 5 AS snr_db, e.metric, "
        "sum(e.n_errors) / sum(e.n_ref_units) AS error_rate, count(*) AS n "
        "FROM eval_utterances e JOIN utterances u USING (utterance_id) "
        f"WHERE e.eval_id = '{record.eval_id}' AND e.task = 'asr' GROUP BY ALL",
    ).to_pylist()
    assert by_snr and all(r["error_rate"] is not None for r in by_snr)
    view = query_catalogue(
        project.catalogue_path,
        f"SELECT * FROM eval_by_snr WHERE eval_id = '{record.eval_id}' AND task = 'asr'",
    ).to_pylist()
    assert sum(r["n_utterances"] for r in view) == sum(r["n"] for r in by_snr)
    assert all(r["snr_db_to"] - r["snr_db_from"] == 5 for r in view)
    for name in ("eval_by_source", "eval_by_language", "eval_by_duration", "eval_by_speaker"):
        assert query_catalogue(project.catalogue_path, f"SELECT * FROM {name}").num_rows > 0


def test_the_record_has_per_set_rates_with_intervals(evaluated: tuple) -> None:
    project, record, result, _, _ = evaluated
    sets = {(s["eval_set"], s["task"]): s for s in record.metrics["eval_sets"]}
    english = sets[("librispeech/dev-clean-2", "asr")]
    in_set = {
        r["utterance_id"]
        for r in pq.read_table(project.lake.release_utterances(RELEASE)).to_pylist()
        if r["eval_set"] == "librispeech/dev-clean-2"
    }
    mine = [t for t in result.transcriptions if t.utterance_id in in_set]
    assert english["metric"] == "wer" and english["n_utterances"] == len(mine) > 0
    assert english["error_rate"] == pytest.approx(
        sum(t.score.n_errors for t in mine) / sum(t.score.n_ref_units for t in mine)
    )
    # The release's own held-out speakers are a set of their own.
    assert (f"{RELEASE}/test", "asr") in sets
    assert english["ci_low"] <= english["error_rate"] <= english["ci_high"]
    assert sets[("wenetspeech/test_net", "asr")]["metric"] == "cer"
    assert record.metrics["tokenizer_is_demo"] is True
    # The lake file and the catalogue hold the same rows.
    lake_rows = pq.read_table(project.lake.eval_utterances(record.eval_id))
    assert lake_rows.schema.names == EVAL_UTTERANCE_ARROW_SCHEMA.names
    rebuilt = utterance_rows(project, record.eval_id, RELEASE, "test", result)
    assert lake_rows.num_rows == len(rebuilt)


def test_compare_and_report(evaluated: tuple) -> None:
    project, first, _, folder, texts = evaluated
    second_ckpt = _checkpoint(folder / "ckpt2", texts, seed=1)
    second, _ = run_evaluation(project, second_ckpt, RELEASE, SETTINGS)
    # The retrained checkpoint's own report compares it with the previous evaluation.
    assert "<h2>Comparison</h2>" not in project.lake.eval_report(first.eval_id).read_text()
    assert first.eval_id in project.lake.eval_report(second.eval_id).read_text()
    runner = CliRunner(env={"COLUMNS": "250"})  # rich tables unwrapped
    args = ["--project", str(project.directory)]
    compared = runner.invoke(app, ["eval", "compare", first.eval_id, second.eval_id, *args])
    assert compared.exit_code == 0, compared.output
    out = " ".join(compared.output.split())
    assert "librispeech/dev-clean-2" in out and "wenetspeech/test_net" in out
    assert "B − A [95 % CI]" in out and "by snr_db" in out
    as_json = runner.invoke(
        app, ["eval", "compare", first.eval_id, str(second_ckpt), "--json", *args]
    )
    assert as_json.exit_code == 0, as_json.output
    assert '"verdict"' in as_json.output and first.eval_id in as_json.output

    same = runner.invoke(app, ["eval", "compare", first.eval_id, first.eval_id, *args])
    assert same.exit_code != 0 and "same evaluation" in " ".join(same.output.split())

    report = runner.invoke(
        app, ["eval", "report", second.eval_id, "--compare", first.eval_id, *args]
    )
    assert report.exit_code == 0, report.output
    page = project.lake.eval_report(second.eval_id).read_text(encoding="utf-8")
    assert "<audio controls" in page and "data:audio/flac;base64," in page
    assert re.search(r'class="(substitute|delete|insert)"', page)
    assert "Comparison" in page and "No speech decoder" in page
    assert 'src="http' not in page  # self-contained: nothing fetched
    assert "random-weight DEMO GLM-4-Voice tokenizer" in page
