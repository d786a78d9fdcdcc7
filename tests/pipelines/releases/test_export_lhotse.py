"""The lhotse bridge, both ways, over the tiny real lake of `test_export.py` (audio and code
shards written by the shard writer, a release with a dropped duplicate, an utterance
without text, one with blank text and one with a chat special token).

Out: `export_lhotse` writes the release as lhotse manifests with FLAC files and as Shar;
lhotse 1.33 itself loads both (`CutSet.from_file`, `RecordingSet.from_file`,
`SupervisionSet.from_file`, `CutSet.from_shar`) and gives back the release's ids, texts,
speakers, languages, durations and, decoded by lhotse, exactly the samples of the audio
shards. Re-exports are byte-identical; relative paths load after
`with_recording_path_prefix`; `voxlake export lhotse` writes the same.

Back: a `lhotse` source pointed at each export (cuts manifests, recordings +
supervisions, Shar) goes through inventory, manifest and quality; every utterance
comes back with the same id, text, speaker, split and duration, and the quality step's
audio shards hold the very PCM the release held (same sha256).
"""

from __future__ import annotations

import sys
from pathlib import Path

import lhotse
import numpy as np
import pytest
from typer.testing import CliRunner

from pipelines.audio.pcm import decode_flac16, pcm_sha256
from pipelines.cli.app import app
from pipelines.project import Project, init_project
from pipelines.releases.export.lhotse import export_lhotse
from pipelines.releases.export.staging import ExportError
from pipelines.shards.reader import read_index, read_members
from pipelines.steps.inventory import inventory_source
from pipelines.steps.manifest import build_manifest, manifest_records
from pipelines.steps.quality import assess_unit
from schemas import ProjectConfig, QualityPolicy, SourceConfig

# The tiny lake is built by the generic export tests' helpers (pytest's importlib mode
# does not put test folders on sys.path).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_export import PLAN, RELEASE, TinyLake, build_tiny_lake

KEPT = [p for p in PLAN if p.split is not None]
SPLITS = ("train", "dev", "test")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyLake:
    return build_tiny_lake(tmp_path_factory.mktemp("project"))


@pytest.fixture(scope="module")
def exported(tiny: TinyLake, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("exports") / "lhotse"
    export_lhotse(tiny.project, RELEASE, out)
    return out


@pytest.fixture(scope="module")
def exported_shar(tiny: TinyLake, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("exports") / "shar"
    export_lhotse(tiny.project, RELEASE, out, shar=True, shard_size=2)
    return out


def _expected(tiny: TinyLake, split: str) -> dict[str, dict]:
    """What lhotse should give back for one split, by key (= cut id)."""
    expected = {}
    for key, u in tiny.utterances.items():
        if u.planned.split == split:
            expected[key] = {
                "text": u.planned.text,
                "speaker": u.planned.speaker,
                "utterance_id": u.planned.utterance_id,
                "duration_s": u.duration_s,
                "samples": decode_flac16(u.flac),
                "flac": u.flac,
            }
    return expected


def _assert_cuts_match(
    cuts: lhotse.CutSet, expected: dict[str, dict], by_recording: bool = False
) -> None:
    """Same keys in key order, texts, speakers, durations and lhotse-decoded samples.

    `by_recording`: cuts lhotse made itself carry ids of their own; match their recording.
    """
    cut_list = list(cuts)
    keys = [c.recording_id if by_recording else c.id for c in cut_list]
    assert keys == sorted(expected)  # ordered by key, nothing more
    for key, cut in zip(keys, cut_list, strict=True):
        want = expected[key]
        (supervision,) = cut.supervisions
        assert supervision.text == want["text"]
        assert supervision.speaker == want["speaker"]
        assert supervision.language == "en"
        assert supervision.custom["utterance_id"] == want["utterance_id"]
        assert cut.duration == pytest.approx(want["duration_s"], abs=1e-9)
        assert supervision.duration == pytest.approx(want["duration_s"], abs=1e-9)
        assert cut.sampling_rate == 16000
        audio = cut.load_audio()  # decoded by lhotse, not by voxlake
        assert audio.shape == (1, len(want["samples"]))
        np.testing.assert_array_equal(audio[0], want["samples"])


def test_lhotse_loads_the_manifests_unchanged_from_any_folder(
    tiny: TinyLake, exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # absolute paths: no need to run from the export folder
    names = sorted(p.name for p in exported.iterdir())
    assert names == sorted(
        ["audio", "export.json"]
        + [f"{m}_{s}.jsonl.gz" for m in ("recordings", "supervisions", "cuts") for s in SPLITS]
    )
    for split in SPLITS:
        expected = _expected(tiny, split)
        _assert_cuts_match(lhotse.CutSet.from_file(exported / f"cuts_{split}.jsonl.gz"), expected)
        recordings = lhotse.RecordingSet.from_file(exported / f"recordings_{split}.jsonl.gz")
        supervisions = lhotse.SupervisionSet.from_file(exported / f"supervisions_{split}.jsonl.gz")
        assert sorted(recordings.ids) == sorted(expected)
        assert sorted(s.id for s in supervisions) == sorted(expected)
        # The same cuts, as a lhotse user would build them from the two manifests.
        _assert_cuts_match(
            lhotse.CutSet.from_manifests(
                recordings=recordings, supervisions=supervisions
            ).sort_by_recording_id(),
            expected,
            by_recording=True,
        )
        for key, want in expected.items():
            assert (exported / "audio" / f"{key}.flac").read_bytes() == want["flac"]
    # Not exported: the duplicate the release dropped; exported: texts null or blank too.
    assert len(list((exported / "audio").iterdir())) == len(KEPT)


def test_lhotse_loads_the_shar_unchanged(tiny: TinyLake, exported_shar: Path) -> None:
    assert sorted(p.name for p in exported_shar.iterdir()) == [
        "dev",
        "export.json",
        "test",
        "train",
    ]
    assert sorted(p.name for p in (exported_shar / "train").iterdir()) == [
        "cuts.000000.jsonl.gz",
        "cuts.000001.jsonl.gz",
        "recording.000000.tar",
        "recording.000001.tar",
    ]
    for split in SPLITS:
        expected = _expected(tiny, split)
        _assert_cuts_match(lhotse.CutSet.from_shar(in_dir=exported_shar / split), expected)


def test_a_re_export_is_byte_identical(tiny: TinyLake, tmp_path: Path) -> None:
    def tree(folder: Path) -> dict[str, bytes]:
        return {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }

    for shar in (False, True):
        out = tmp_path / f"out-{shar}"
        export_lhotse(tiny.project, RELEASE, out, shar=shar)
        first = tree(out)
        export_lhotse(tiny.project, RELEASE, out, shar=shar, overwrite=True)
        assert tree(out) == first
    with pytest.raises(ExportError, match="not empty"):
        export_lhotse(tiny.project, RELEASE, tmp_path / "out-False")


def test_relative_paths_load_after_a_path_prefix(tiny: TinyLake, tmp_path: Path) -> None:
    out = tmp_path / "relative"
    export_lhotse(tiny.project, RELEASE, out, absolute_paths=False)
    cuts = lhotse.CutSet.from_file(out / "cuts_dev.jsonl.gz")
    assert {c.recording.sources[0].source for c in cuts} == {
        f"audio/{key}.flac" for key in _expected(tiny, "dev")
    }
    _assert_cuts_match(cuts.with_recording_path_prefix(str(out)), _expected(tiny, "dev"))


def test_voxlake_export_lhotse_command(tmp_path: Path) -> None:
    folder = tmp_path / "proj"
    init_project(folder, ProjectConfig())
    tiny = build_tiny_lake(folder)
    runner = CliRunner()
    out = tmp_path / "shar"
    result = runner.invoke(
        app,
        ["export", "lhotse", str(out), "--release", RELEASE, "--shar", "--project", str(folder)],
    )
    assert result.exit_code == 0, result.output
    assert '"n_exported": 7' in result.output
    _assert_cuts_match(lhotse.CutSet.from_shar(in_dir=out / "test"), _expected(tiny, "test"))
    missing = runner.invoke(
        app, ["export", "lhotse", str(tmp_path / "x"), "--release", "nope", "-p", str(folder)]
    )
    assert missing.exit_code != 0
    assert "nope" in missing.output


def _permissive_policy() -> QualityPolicy:
    # The tiny lake's tones are short and carry arbitrary text: the round trip is about
    # the audio and the metadata coming back, not about judging them.
    return QualityPolicy.model_validate(
        {
            "min_duration_s": 0.1,
            "min_snr_db": None,
            "max_silence_ratio": 1.0,
            "max_clipping_ratio": 1.0,
            "chars_per_s": {"default": {"min": 0.0, "max": 1000.0}},
        }
    )


@pytest.mark.parametrize(
    ("layout", "options"),
    [
        ("cuts", {}),
        ("recordings+supervisions", None),
        ("shar", {}),
    ],
)
def test_a_release_comes_back_through_a_lhotse_source(
    tiny: TinyLake,
    exported: Path,
    exported_shar: Path,
    tmp_path: Path,
    layout: str,
    options: dict | None,
) -> None:
    path = exported_shar if layout == "shar" else exported
    sources = []
    if options is None:  # one source per split, named by the options
        for split in SPLITS:
            sources.append(
                SourceConfig(
                    name=f"back_{split}",
                    kind="lhotse",
                    path=str(path),
                    options={
                        "recordings": f"recordings_{split}.jsonl.gz",
                        "supervisions": f"supervisions_{split}.jsonl.gz",
                        "split": split,
                    },
                )
            )
    else:
        sources.append(SourceConfig(name="back", kind="lhotse", path=str(path), options=options))
    project = Project(
        tmp_path / "again", ProjectConfig(sources=sources, quality=_permissive_policy())
    )
    records = {}
    pcm = {}
    for source in sources:
        for plan in inventory_source(source, project.directory, project.lake, project.config.units):
            records.update(
                (r.utterance_id.split("/", 1)[1], r)
                for r in manifest_records(source, project.directory, project.lake, plan.unit)
            )
            build_manifest(source, project.directory, project.lake, plan.unit, plan.n_inputs)
            summary = assess_unit(project, source, plan.unit)
            assert summary.n_rejected == 0, summary.frame.filter(
                summary.frame["status"] == "rejected"
            ).to_dicts()
            rows = list(read_index(project.lake.shards_dir(source.name, plan.unit)))
            for row, flac in zip(rows, read_members(project.lake.root, rows, "flac"), strict=True):
                pcm[row.utterance_id.split("/", 1)[1]] = decode_flac16(flac)

    kept = {key: u for key, u in tiny.utterances.items() if u.planned.split is not None}
    assert sorted(records) == sorted(kept)
    for key, u in kept.items():
        record = records[key]
        assert record.status == "ok", record.reject_message
        assert record.text == ((u.planned.text or "").strip() or None)  # blank: none
        assert record.speaker == u.planned.speaker
        assert record.language == "en"
        assert record.split == u.planned.split
        assert record.duration_s == pytest.approx(u.duration_s, abs=1e-6)
        assert record.offset_s == 0.0 and not record.is_segment
        if layout == "shar":
            assert record.audio_member == f"{key}.flac"
        else:
            assert record.audio_path == f"audio/{key}.flac"  # made relative to the root
    # The quality step decoded what lhotse manifests pointed at: the release's very PCM.
    assert sorted(pcm) == sorted(kept)
    for key, u in kept.items():
        assert pcm_sha256(pcm[key]) == u.pcm_sha256
