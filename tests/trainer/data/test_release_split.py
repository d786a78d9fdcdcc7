"""`trainer.data.release_split`: a split of the tiny real release holds its keys and shards,
and the refusals (missing release, unknown split, bad name, shard paths that leave the
lake) name the release file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tiny_release import TinyRelease

from trainer.data.release_split import load_release_split


def test_split_holds_its_keys_and_shards(tiny_release: TinyRelease) -> None:
    total = 0
    for name in ("train", "dev", "test"):
        split = load_release_split(tiny_release.lake_root, tiny_release.name, name)
        assert set(split.source_by_key) == tiny_release.keys(name)
        assert list(split.shards) == sorted(split.shards)
        root = tiny_release.lake_root.resolve()
        assert all(p.is_absolute() and p.is_file() and p.is_relative_to(root) for p in split.shards)
        assert set(split.shards) == set(split.shard_by_key.values())
        total += split.n_utterances
    assert total == tiny_release.release.n_utterances == len(tiny_release.utterances) - 1
    train = load_release_split(tiny_release.lake_root, tiny_release.name, "train")
    assert train.n_by_source() == {"tiny_en": 8, "tiny_zh": 8}
    assert train.keys("tiny_zh") == sorted(
        u.key for u in tiny_release.utterances if u.split == "train" and u.source == "tiny_zh"
    )
    duplicate = tiny_release.utterances[-1]
    assert duplicate.split is None and duplicate.key not in train.source_by_key


def test_split_refusals_name_the_release_file(tiny_release: TinyRelease, tmp_path: Path) -> None:
    root = tiny_release.lake_root
    with pytest.raises(FileNotFoundError, match=r"releases/nope/release\.json"):
        load_release_split(root, "nope", "train")
    with pytest.raises(ValueError, match="split"):
        load_release_split(root, tiny_release.name, "validation")
    with pytest.raises(ValueError, match="release name"):
        load_release_split(root, "../escape", "train")
    # Copies of the release in a lake of their own, each with one shard path that escapes.
    lake = tmp_path / "lake"
    (lake / "shards").mkdir(parents=True)
    (lake / "shards" / "elsewhere").symlink_to(tmp_path)
    escapes = {
        "evil-up": "../outside.tar",
        "evil-abs": "/etc/passwd",
        "evil-link": "shards/elsewhere/outside.tar",
    }
    for name, bad_shard in escapes.items():
        folder = lake / "releases" / name
        shutil.copytree(root / "releases" / tiny_release.name, folder)
        release = json.loads((folder / "release.json").read_text())
        release["shards"][0]["shard"] = bad_shard
        (folder / "release.json").write_text(json.dumps(release))
        with pytest.raises(ValueError, match=rf"{name}/release\.json: shard path .* lake root"):
            load_release_split(lake, name, "train")
