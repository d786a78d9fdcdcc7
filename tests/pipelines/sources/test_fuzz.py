"""A property-based fuzzer per connector: mutate a valid corpus, ingest it, nothing is lost.

For every connector kind, hypothesis takes a valid bundled corpus of that kind,
applies one to three mutations (`corpus_mutations.py`: wrong types, bytes that
are not UTF-8, truncation, duplicated and reordered records, links out of the
corpus, FIFOs, empty files, names that are not UTF-8, unsafe tar members), and
runs the real connector and the real manifest step on it. Whatever the input:

- the inventory either succeeds, or fails as a whole with an OSError/ValueError
  whose message names the file (never a TypeError, a KeyError, a
  UnicodeEncodeError or a validation error from deep inside);
- `inputs == accepted + rejected`: every planned input has exactly one manifest
  row, and the unit's accounting check passes; utterance ids are unique;
- every rejection has a known reason code and a message free of Python internals;
- an accepted row has a transcript where the kind requires one, and its audio
  path resolves inside the corpus (a link out of it is never accepted);
- nothing is written outside the lake (the corpus and its neighbours are unchanged);
- no step blocks (a FIFO is never opened for reading): each example has 30 s.

CI runs a bounded, derandomised number of examples per connector (profile `ci`).
The long run explores for real (see `docs/reliability.md`):

    VOXLAKE_FUZZ_PROFILE=long .venv/bin/python -m pytest tests/pipelines/sources/test_fuzz.py
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from corpus_mutations import (
    FILE_MUTATIONS,
    JSON_MUTATIONS,
    TAR_MUTATIONS,
    TEXT_MUTATIONS,
    Mutation,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pipelines.audio.ref import AudioRefError, resolve_under
from pipelines.lake.paths import Lake
from pipelines.steps.inventory import inventory_source
from pipelines.steps.manifest import build_manifest, check_accounting
from schemas import RejectReason, SourceConfig, UnitLimits

settings.register_profile(
    "ci",
    max_examples=12,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "long",
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
PROFILE = os.environ.get("VOXLAKE_FUZZ_PROFILE", "ci")

EXAMPLE_TIMEOUT_S = 30
REASONS = {reason.value for reason in RejectReason}
PYTHON_INTERNALS = (" object at 0x", "<_io.", "Traceback", "<class '")


@dataclass(frozen=True)
class Connector:
    """One connector under test: its kind, the bundled corpus it starts from, what may break."""

    kind: str
    corpus: str  # under tests/data/corpora
    path: str  # the source path, relative to the copied corpus
    mutations: tuple[Mutation, ...]
    text_required: bool
    keep: tuple[str, ...] = ()  # only these entries of the corpus folder (default: all)


CONNECTORS = {
    "librispeech": Connector(
        "librispeech",
        "librispeech/LibriSpeech",
        ".",
        (*FILE_MUTATIONS, *TEXT_MUTATIONS),
        text_required=True,
    ),
    "wenetspeech": Connector(
        "wenetspeech",
        "wenetspeech",
        ".",
        (*FILE_MUTATIONS, *JSON_MUTATIONS, *TEXT_MUTATIONS),
        text_required=True,
    ),
    "emilia": Connector(
        "emilia",
        "emilia",
        ".",
        (*FILE_MUTATIONS, *TAR_MUTATIONS),
        text_required=True,
    ),
    "audio_folder": Connector(
        "audio_folder",
        "custom/folder",
        ".",
        (*FILE_MUTATIONS, *TEXT_MUTATIONS),
        text_required=False,
        keep=("speaker_a", "speaker_b"),
    ),
    "table_csv": Connector(
        "table",
        "custom/table",
        "manifest.csv",
        (*FILE_MUTATIONS, *TEXT_MUTATIONS),
        text_required=False,
        keep=("audio", "manifest.csv"),
    ),
    "table_jsonl": Connector(
        "table",
        "custom/table",
        "manifest.jsonl",
        (*FILE_MUTATIONS, *TEXT_MUTATIONS, *JSON_MUTATIONS),
        text_required=False,
        keep=("audio", "manifest.jsonl"),
    ),
    "vita_jsonl": Connector(
        "vita_jsonl",
        "custom/vita",
        "data.jsonl",
        (*FILE_MUTATIONS, *TEXT_MUTATIONS, *JSON_MUTATIONS),
        text_required=False,
    ),
    "hf_parquet": Connector(
        "hf_dataset",
        "custom/hf_parquet",
        ".",
        tuple(FILE_MUTATIONS),
        text_required=False,
    ),
}


@contextmanager
def _time_limit(seconds: int) -> Iterator[None]:
    """Fail (instead of hanging the suite) when an example blocks, e.g. on a FIFO."""

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"the example ran past {seconds} s (did something open a FIFO?)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _snapshot(root: Path, skip: Path) -> dict[str, tuple[str, int]]:
    """Every entry under `root` but `skip`: kind and size (links and FIFOs included)."""
    entries: dict[str, tuple[str, int]] = {}
    skip_bytes = os.fsencode(skip)
    for folder, dirs, files in os.walk(os.fsencode(root)):
        dirs[:] = [d for d in dirs if os.path.join(folder, d) != skip_bytes]
        for name in (*dirs, *files):
            path = os.path.join(folder, name)
            info = os.lstat(path)
            kind = "link" if os.path.islink(path) else ("dir" if name in dirs else "file")
            entries[os.fsdecode(os.path.relpath(path, os.fsencode(root)))] = (kind, info.st_size)
    return entries


def _copy_corpus(corpora: Path, connector: Connector, work: Path) -> Path:
    source = corpora / connector.corpus
    target = work / "corpus"
    if connector.keep:
        target.mkdir()
        for name in connector.keep:
            entry = source / name
            if entry.is_dir():
                shutil.copytree(entry, target / name, symlinks=True)
            else:
                shutil.copy2(entry, target / name)
    else:
        shutil.copytree(source, target, symlinks=True)
    return target


def _ingest_and_check(connector: Connector, work: Path, corpus: Path, story: list[str]) -> None:
    lake = Lake(work / "lake")
    source = SourceConfig(name="src", kind=connector.kind, path=str(corpus / connector.path))
    before = _snapshot(work, skip=work / "lake")
    try:
        plans = inventory_source(source, work, lake, UnitLimits(max_utterances=4))
    except (ValidationError, UnicodeError, TimeoutError):
        raise
    except (OSError, ValueError) as error:
        # The source fails as a whole: allowed only with a message that names what broke.
        message = str(error)
        assert "corpus" in message or str(corpus) in message, (story, message)
        assert not any(marker in message for marker in PYTHON_INTERNALS), (story, message)
        return
    for plan in plans:
        summary = build_manifest(source, work, lake, plan.unit, plan.n_inputs)
        manifest = pl.read_parquet(lake.manifest("src", plan.unit))
        outcome = check_accounting(plan.n_inputs, summary, manifest)
        assert outcome.passed, (story, plan.unit, outcome.description)
        for row in manifest.iter_rows(named=True):
            where = (story, row["utterance_id"], row["reject_message"])
            if row["status"] == "rejected":
                assert row["reject_reason"] in REASONS, where
                assert row["reject_message"], where
                assert not any(m in row["reject_message"] for m in PYTHON_INTERNALS), where
                continue
            assert row["status"] == "ok" and row["reject_reason"] is None, where
            if connector.text_required:
                assert (row["text"] or "").strip(), where
            try:
                resolve_under(corpus, row["audio_path"])
            except AudioRefError as escape:
                raise AssertionError(
                    (story, "accepted audio outside the corpus", escape.message)
                ) from None
    ids = [
        u
        for plan in plans
        for u in pl.read_parquet(lake.manifest("src", plan.unit))["utterance_id"].to_list()
    ]
    assert len(ids) == len(set(ids)), (story, "an utterance id is in two units")
    assert _snapshot(work, skip=work / "lake") == before, (story, "something outside the lake")


@pytest.mark.parametrize("name", sorted(CONNECTORS))
def test_a_mutated_corpus_loses_nothing_and_accepts_nothing_bad(name: str, corpora: Path) -> None:
    connector = CONNECTORS[name]

    @settings(settings.get_profile(PROFILE))
    @given(data=st.data())
    def example(data: st.DataObject) -> None:
        with tempfile.TemporaryDirectory(prefix=f"fuzz-{name}-") as folder:
            work = Path(folder)
            corpus = _copy_corpus(corpora, connector, work)
            n_mutations = data.draw(st.integers(1, 3), label="mutations")
            story = []
            for _ in range(n_mutations):
                mutation = data.draw(st.sampled_from(connector.mutations), label="mutation")
                story.append(mutation(corpus, data))
            with _time_limit(EXAMPLE_TIMEOUT_S):
                _ingest_and_check(connector, work, corpus, story)

    example()


def test_the_unmutated_corpora_ingest_cleanly(corpora: Path, tmp_path: Path) -> None:
    """The fuzzer's starting points are themselves valid: every connector plans inputs."""
    for name, connector in sorted(CONNECTORS.items()):
        work = tmp_path / name
        work.mkdir()
        corpus = _copy_corpus(corpora, connector, work)
        source = SourceConfig(name="src", kind=connector.kind, path=str(corpus / connector.path))
        plans = inventory_source(source, work, Lake(work / "lake"), UnitLimits())
        assert sum(p.n_inputs for p in plans) > 0, name
