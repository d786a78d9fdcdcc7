"""Evaluation sets kept out of training: a release puts a source's test split into `test`
(whatever its speakers' buckets say) and holds back, from every split, any utterance with
the same PCM as an evaluation-set utterance, from any source and whatever its status; it
counts what it held back."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipelines.catalogue.tables import create_tables
from pipelines.project import Project, init_project
from pipelines.releases.create import create_release, is_eval_split
from schemas import ProjectConfig, ReleaseSpec

TOKENIZER = "t" * 64


def _utterance(uid: str, source: str, split: str | None, pcm: str, **extra: object) -> dict:
    unit = f"{source}.u0"
    return {
        "utterance_id": uid,
        "source": source,
        "unit": unit,
        "split": split,
        "speaker": extra.get("speaker", uid),
        "language": "en",
        "status": extra.get("status", "accepted"),
        "duration_s": 2.0,
        "pcm_sha256": pcm,
        "policy_version": "p1",
        "tokenizer_sha256": TOKENIZER,
        "tokenizer_is_demo": True,
        "key": uid.replace("/", "__"),
        "shard": f"shards/{source}/{unit}/audio-000000.tar",
        "codes_shard": f"codes/{TOKENIZER[:16]}/{source}/{unit}/codes-000000.tar",
    }


UTTERANCES = [
    # LibriSpeech's own test set: two accepted utterances and one the policy rejected.
    _utterance("ls/test-1", "librispeech", "test-clean", "h-test-1"),
    _utterance("ls/test-2", "librispeech", "test-clean", "h-test-2"),
    _utterance("ls/test-3", "librispeech", "test-clean", "h-test-3", status="rejected"),
    *[_utterance(f"ls/train-{i}", "librispeech", "train-clean-100", f"h-{i}") for i in range(8)],
    # The same PCM under another source: a copy of a test utterance in a custom folder,
    # and a copy of the rejected one.
    _utterance("custom/copy-of-test-1", "custom", None, "h-test-1"),
    _utterance("custom/copy-of-test-3", "custom", None, "h-test-3"),
    _utterance("custom/own", "custom", None, "h-own"),
]


def _project(folder: Path) -> Project:
    """A project whose catalogue holds `UTTERANCES` (with their shards), nothing else."""
    project = init_project(folder, ProjectConfig())
    with duckdb.connect(str(project.catalogue_path)) as con:
        create_tables(con)
        frame = pl.DataFrame(UTTERANCES)
        con.register("rows", frame.to_arrow())
        con.execute("INSERT INTO utterances BY NAME SELECT * FROM rows")
        for table, column in (("shards", "shard"), ("code_shards", "codes_shard")):
            con.execute(
                f"INSERT INTO {table} (shard, source, unit, sha256, bytes) "
                f"SELECT DISTINCT {column}, source, unit, 'x', 1 FROM rows"
            )
    return project


def _rows(project: Project, name: str) -> dict[str, dict]:
    frame = pl.read_parquet(project.lake.release_utterances(name))
    return {r["utterance_id"]: r for r in frame.to_dicts()}


def test_test_splits_never_train_and_their_copies_are_held_back(tmp_path: Path) -> None:
    project = _project(tmp_path / "p")
    # No dev or test share: by speaker, every utterance would go to train.
    made = create_release(project, ReleaseSpec(name="r1", where="TRUE", dedup=True))
    rows = _rows(project, "r1")

    # By id: the test-clean utterances the release selects are in `test`, named as a set.
    for uid in ("ls/test-1", "ls/test-2"):
        assert (rows[uid]["split"], rows[uid]["eval_set"]) == ("test", "librispeech/test-clean")
    # By PCM: the copies from another source are in no split and say what they copy,
    # the copy of the rejected test utterance too (the rejected one is not selected).
    assert rows["custom/copy-of-test-1"]["split"] is None
    assert rows["custom/copy-of-test-1"]["held_back_for"] == "ls/test-1"
    assert rows["custom/copy-of-test-3"]["held_back_for"] == "ls/test-3"
    assert "ls/test-3" not in rows
    # Nothing of an evaluation set, by id or by PCM hash, is in train.
    eval_hashes = {u["pcm_sha256"] for u in UTTERANCES if u["split"] == "test-clean"}
    pcm = {u["utterance_id"]: u["pcm_sha256"] for u in UTTERANCES}
    train = [uid for uid, r in rows.items() if r["split"] == "train"]
    assert len(train) == 9 and not {pcm[uid] for uid in train} & eval_hashes

    release = made.release
    assert release.n_held_back == 2
    assert release.eval_sets == {"librispeech/test-clean": 2}
    assert release.n_utterances == 11 and release.n_duplicates_dropped == 0
    assert release.eval_splits == ["test-clean", "test-other", "test_net", "test_meeting"]


def test_a_selection_without_the_test_set_still_holds_its_copies_back(tmp_path: Path) -> None:
    project = _project(tmp_path / "p")
    spec = ReleaseSpec(name="custom-only", where="source = 'custom'")
    release = create_release(project, spec).release
    rows = _rows(project, "custom-only")
    assert release.n_held_back == 2 and release.eval_sets == {}
    assert [uid for uid, r in rows.items() if r["split"] == "train"] == ["custom/own"]


def test_a_user_marked_split_is_an_evaluation_set_and_none_can_be_marked(tmp_path: Path) -> None:
    project = _project(tmp_path / "p")
    marked = ReleaseSpec(name="marked", eval_splits=["librispeech/train-clean-100"])
    release = create_release(project, marked).release
    assert release.eval_sets == {"librispeech/train-clean-100": 8}
    rows = _rows(project, "marked")
    assert rows["ls/test-1"]["split"] == "train"  # test-clean is no longer marked
    none = create_release(project, ReleaseSpec(name="none", eval_splits=[])).release
    assert none.n_held_back == 0 and none.eval_sets == {}
    assert {r["split"] for r in _rows(project, "none").values()} == {"train"}


@pytest.mark.parametrize(
    ("source", "split", "marks", "expected"),
    [
        ("librispeech", "test-clean", ["test-clean"], True),
        ("wenetspeech", "test_net", ["librispeech/test_net"], False),
        ("wenetspeech", "test_net", ["wenetspeech/test_net"], True),
        ("custom", None, ["test-clean"], False),
    ],
)
def test_eval_split_marks(source: str, split: str | None, marks: list[str], expected: bool) -> None:
    assert is_eval_split(source, split, marks) is expected


def test_module_doctests() -> None:
    import doctest

    import pipelines.releases.create
    import schemas.release

    for module in (pipelines.releases.create, schemas.release):
        failed, tried = doctest.testmod(module)
        assert tried > 0 and failed == 0, module.__name__
