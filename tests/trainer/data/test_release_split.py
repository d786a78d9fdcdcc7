"""`trainer.data.release_split`: a split of the tiny real release holds its keys and its code
shards (never an audio shard), and the refusals (missing release, unknown split, bad name,
code shard paths that leave the lake, a release made before code shards) name the release
file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from tiny_release import TOKENIZER_SHA256, TinyRelease

from schemas.shards import tokenizer_dir_name
from trainer.data.release_split import load_release_split


def test_split_holds_its_keys_and_code_shards(tiny_release: TinyRelease) -> None:
    root = tiny_release.lake_root.resolve()
    codes_root = root / "codes" / tokenizer_dir_name(TOKENIZER_SHA256)
    total = 0
    for name in ("train", "dev", "test"):
        split = load_release_split(tiny_release.lake_root, tiny_release.name, name)
        assert set(split.source_by_key) == tiny_release.keys(name)
        assert list(split.code_shards) == sorted(split.code_shards)
        assert all(p.is_absolute() and p.is_file() for p in split.code_shards)
        # code shards of the release's tokenizer, named codes-NNNNNN.tar; no audio shard
        assert all(p.is_relative_to(codes_root) for p in split.code_shards)
        assert all(p.name.startswith("codes-") for p in split.code_shards)
        assert set(split.code_shards) <= {p.resolve() for p in tiny_release.code_shards()}
        assert set(split.code_shards) == set(split.code_shard_by_key.values())
        total += split.n_utterances
    assert total == tiny_release.release.n_utterances == len(tiny_release.utterances) - 1
    train = load_release_split(tiny_release.lake_root, tiny_release.name, "train")
    assert train.n_by_source() == {"tiny_en": 8, "tiny_zh": 8}
    assert train.keys("tiny_zh") == sorted(
        u.key for u in tiny_release.utterances if u.split == "train" and u.source == "tiny_zh"
    )
    duplicate = tiny_release.utterances[-1]
    assert duplicate.split is None and duplicate.key not in train.source_by_key


def _copy_release(tiny_release: TinyRelease, lake: Path, name: str) -> Path:
    folder = lake / "releases" / name
    shutil.copytree(tiny_release.lake_root / "releases" / tiny_release.name, folder)
    return folder


def test_split_refusals_name_the_release_file(tiny_release: TinyRelease, tmp_path: Path) -> None:
    root = tiny_release.lake_root
    with pytest.raises(FileNotFoundError, match=r"releases/nope/release\.json"):
        load_release_split(root, "nope", "train")
    with pytest.raises(ValueError, match="split"):
        load_release_split(root, tiny_release.name, "validation")
    with pytest.raises(ValueError, match="release name"):
        load_release_split(root, "../escape", "train")
    # Copies of the release in a lake of their own, each with one code shard path that escapes.
    lake = tmp_path / "lake"
    (lake / "codes").mkdir(parents=True)
    (lake / "codes" / "elsewhere").symlink_to(tmp_path)
    escapes = {
        "evil-up": "../outside.tar",
        "evil-abs": "/etc/passwd",
        "evil-link": "codes/elsewhere/outside.tar",
    }
    for name, bad_shard in escapes.items():
        folder = _copy_release(tiny_release, lake, name)
        release = json.loads((folder / "release.json").read_text())
        release["code_shards"][0]["shard"] = bad_shard
        (folder / "release.json").write_text(json.dumps(release))
        with pytest.raises(ValueError, match=rf"{name}/release\.json: shard path .* lake root"):
            load_release_split(lake, name, "train")


def test_an_utterance_outside_the_listed_code_shards_is_refused(
    tiny_release: TinyRelease, tmp_path: Path
) -> None:
    folder = _copy_release(tiny_release, tmp_path / "lake", "unlisted")
    release = json.loads((folder / "release.json").read_text())
    dropped = release["code_shards"].pop(0)["shard"]
    (folder / "release.json").write_text(json.dumps(release))
    with pytest.raises(ValueError, match=rf"in code shard '{dropped}', not in the code_shards"):
        for split in ("train", "dev", "test"):
            load_release_split(tmp_path / "lake", "unlisted", split)


def test_a_release_made_before_code_shards_is_refused_with_what_to_do(
    tiny_release: TinyRelease, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    old = _copy_release(tiny_release, lake, "old-layout")
    release = json.loads((old / "release.json").read_text())
    del release["code_shards"]
    (old / "release.json").write_text(json.dumps(release))
    with pytest.raises(ValueError, match=r"no code_shards.*create a new release"):
        load_release_split(lake, "old-layout", "train")

    no_column = _copy_release(tiny_release, lake, "old-utterances")
    table = pq.read_table(no_column / "utterances.parquet")
    pq.write_table(table.drop_columns(["codes_shard"]), no_column / "utterances.parquet")
    with pytest.raises(ValueError, match=r"no codes_shard column.*create a new release"):
        load_release_split(lake, "old-utterances", "train")
