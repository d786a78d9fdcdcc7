"""The joined reader (`pipelines.shards.joined`) over a tiny real lake: audio shards and
aligned code shards of two units and a release over them (the trainer tests' tiny release,
written with the real shard writer).

Checked: a unit's and a release's samples joined by key (FLAC bytes, decoded audio, codes,
both records), nothing extracted, the refusals (misaligned pair, a shard with a sample
more, codes made from other audio, a shard rewritten after the release); and the same join
done explicitly with the `webdataset` library and with Hugging Face `datasets`, which read
each field on its own (reading both fields' shards as one dataset is no join)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from pydantic import BaseModel

from pipelines.shards.joined import (
    iter_joined,
    iter_release_joined,
    iter_unit_joined,
    release_shard_pairs,
    unit_shard_pairs,
)
from pipelines.shards.reader import (
    hf_code_features,
    hf_features,
    read_code_index,
    read_index,
    read_members,
)
from pipelines.shards.writer import ShardSample, encode_meta, write_shards
from schemas.shards import (
    CodeSampleMeta,
    ShardFormatError,
    decode_codes,
)

# The trainer tests' tiny lake builder (pytest's importlib mode puts no test folder on sys.path).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "trainer"))
from tiny_release import (
    CODE_FIELD,
    RATE_HZ,
    SOURCES,
    TOKENIZER_SHA256,
    TinyRelease,
    build_tiny_release,
)

SOURCE = "tiny_en"
UNIT = SOURCES[SOURCE][0]


class _KeyRow(BaseModel):
    """The index row of the hand-made code shards below (only their tars are read)."""

    key: str


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyRelease:
    return build_tiny_release(tmp_path_factory.mktemp("joined"))


def _tree(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*")}


def test_a_unit_joins_audio_and_codes_by_key(tiny: TinyRelease) -> None:
    root = tiny.lake_root
    before = _tree(root)
    pairs = unit_shard_pairs(root, SOURCE, UNIT, TOKENIZER_SHA256)
    assert len(pairs) >= 3
    for audio_shard, code_shard in pairs:  # audio-N ↔ codes-N
        assert Path(audio_shard).name.replace("audio-", "codes-") == Path(code_shard).name
    joined = list(iter_unit_joined(root, SOURCE, UNIT, TOKENIZER_SHA256))

    audio_rows = read_index(root / "shards" / SOURCE / UNIT)
    assert (
        [s.key for s in joined] == [r.key for r in audio_rows] == sorted(r.key for r in audio_rows)
    )
    flacs = list(read_members(root, audio_rows, "flac"))
    by_key = tiny.by_key
    for sample, row, flac in zip(joined, audio_rows, flacs, strict=True):
        expected = by_key[sample.key]
        assert sample.audio_shard == row.shard and sample.flac == flac
        np.testing.assert_array_equal(sample.codes, expected.codes)
        assert sample.codes.dtype == np.uint16
        assert sample.utterance_id == sample.code_meta.utterance_id == expected.utterance_id
        assert sample.audio_meta.text == sample.code_meta.text == expected.text
        assert sample.code_meta.n_codes == len(expected.codes)
        assert sample.code_meta.pcm_sha256 == sample.audio_meta.pcm_sha256 == row.pcm_sha256
        audio = sample.audio()
        assert audio.dtype == np.float32 and len(audio) / RATE_HZ == row.duration_s
    assert _tree(root) == before  # tar headers walked, nothing extracted or written


def test_a_release_joins_its_kept_utterances(tiny: TinyRelease) -> None:
    root = tiny.lake_root
    pairs = release_shard_pairs(root, tiny.name)
    assert {a for a, _ in pairs} == {s.shard for s in tiny.release.shards}
    assert {c for _, c in pairs} == {s.shard for s in tiny.release.code_shards}
    for split in ("train", "dev", "test"):
        keys = [s.key for s in iter_release_joined(root, tiny.name, split)]
        assert sorted(keys) == sorted(tiny.keys(split))  # with or without transcript
    everything = [s.key for s in iter_release_joined(root, tiny.name)]
    kept = {u.key for u in tiny.utterances if u.split is not None}
    assert sorted(everything) == sorted(kept) and tiny.utterances[-1].key not in everything
    with pytest.raises(ValueError, match="split"):
        next(iter_release_joined(root, tiny.name, "validation"))


def test_misaligned_shards_are_refused_naming_both(tiny: TinyRelease, tmp_path: Path) -> None:
    root = tiny.lake_root
    (a0, c0), (_, c1), *_ = unit_shard_pairs(root, SOURCE, UNIT, TOKENIZER_SHA256)
    with pytest.raises(ShardFormatError, match=rf"{a0} and code shard {c1} are not aligned"):
        next(iter_joined(root, a0, c1))
    # Same shard numbers, other keys: a copy of codes-000001 under the name codes-000000.
    renamed = tmp_path / Path(c0).name
    shutil.copyfile(root / c1, renamed)
    with pytest.raises(ShardFormatError, match=r"sample 0 is '.*' in the audio shard and '.*'"):
        next(iter_joined(root, a0, renamed))

    # Code shards holding the audio shard's samples plus one more, one less, and codes of
    # other audio: written with the real writer into a lake of their own.
    code_folder = root / Path(c0).parent
    rows = [r for r in read_code_index(code_folder) if r.shard == c0]
    good = [
        ShardSample(r.key, r.utterance_id, (codes, meta))
        for r, codes, meta in zip(
            rows, read_members(root, rows, "codes"), read_members(root, rows, "json"), strict=True
        )
    ]

    def code_shard(name: str, samples: list[ShardSample]) -> Path:
        folder = tmp_path / name
        write_shards(
            samples,
            folder,
            CODE_FIELD,
            lake_root=tmp_path,
            index_row=lambda placed: _KeyRow(key=placed.sample.key),
            index_schema=pa.schema([("key", pa.string())]),
            sizes=[len(samples)],
        )
        return folder / "codes-000000.tar"

    extra = ShardSample("zzz-extra", "zzz/extra", good[-1].payloads)
    longer = code_shard("longer", [*good, extra])
    with pytest.raises(ShardFormatError, match=r"not aligned: the code shard has more samples"):
        list(iter_joined(root, a0, longer))
    shorter = code_shard("shorter", good[:-1])
    with pytest.raises(ShardFormatError, match=r"not aligned: the audio shard has more samples"):
        list(iter_joined(root, a0, shorter))
    stale_meta = CodeSampleMeta.model_validate_json(good[0].payloads[1]).model_copy(
        update={"pcm_sha256": "0" * 64}
    )
    stale = ShardSample(
        rows[0].key, stale_meta.utterance_id, (good[0].payloads[0], encode_meta(stale_meta))
    )
    other_audio = code_shard("stale", [stale, *good[1:]])
    with pytest.raises(ShardFormatError, match=r"made from other audio.*tokenize the unit again"):
        next(iter_joined(root, a0, other_audio))


def test_a_shard_rewritten_after_the_release_is_refused(tmp_path: Path) -> None:
    tiny = build_tiny_release(tmp_path)
    code_shard = tiny.lake_root / tiny.release.code_shards[0].shard
    data = bytearray(code_shard.read_bytes())
    data[-1] ^= 1  # the end-of-archive padding: still a valid tar, other bytes
    code_shard.write_bytes(bytes(data))
    with pytest.raises(ShardFormatError, match=r"rewritten after the release"):
        list(iter_release_joined(tiny.lake_root, tiny.name))
    assert list(iter_release_joined(tiny.lake_root, tiny.name, verify=False))


def test_webdataset_reads_each_field_and_the_join_is_by_key(tiny: TinyRelease) -> None:
    import webdataset as wds

    root = tiny.lake_root
    pairs = unit_shard_pairs(root, SOURCE, UNIT, TOKENIZER_SHA256)
    joined = {s.key: s for s in iter_unit_joined(root, SOURCE, UNIT, TOKENIZER_SHA256)}

    # Both fields' shards as one dataset are two streams one after the other, not a join:
    # each sample holds the members of one field only.
    mixed = list(wds.WebDataset([str(root / p) for p in pairs[0]], shardshuffle=False))
    assert [sorted(k for k in s if not k.startswith("__")) for s in mixed] == [["flac", "json"]] * (
        len(mixed) // 2
    ) + [["codes.npy", "json"]] * (len(mixed) // 2)

    # The join: walk audio shard N and code shard N side by side, keys equal at every step.
    seen = []
    for audio_shard, code_shard in pairs:
        audio = wds.WebDataset([str(root / audio_shard)], shardshuffle=False)
        codes = wds.WebDataset([str(root / code_shard)], shardshuffle=False)
        for a, c in zip(audio, codes, strict=True):
            assert a["__key__"] == c["__key__"]
            expected = joined[a["__key__"]]
            assert a["flac"] == expected.flac
            np.testing.assert_array_equal(decode_codes(c["codes.npy"]), expected.codes)
            assert CodeSampleMeta.model_validate_json(c["json"]) == expected.code_meta
            seen.append(a["__key__"])
    assert seen == list(joined)


def test_hugging_face_datasets_reads_each_field_and_the_join_is_by_key(
    tiny: TinyRelease, tmp_path: Path
) -> None:
    import datasets

    root = tiny.lake_root
    pairs = unit_shard_pairs(root, SOURCE, UNIT, TOKENIZER_SHA256)
    audio = datasets.load_dataset(
        "webdataset",
        data_files=[str(root / a) for a, _ in pairs],
        split="train",
        features=hf_features(),
        cache_dir=str(tmp_path / "hf-audio"),
    )
    # The code shards' features, as docs/shards.md gives them (without, datasets infers the
    # types from the first samples).
    code_features = hf_code_features()
    codes = datasets.load_dataset(
        "webdataset",
        data_files=[str(root / c) for _, c in pairs],
        split="train",
        features=code_features,
        cache_dir=str(tmp_path / "hf-codes"),
    )
    # Same keys in the same order: row i of one is row i of the other.
    assert audio["__key__"] == codes["__key__"]
    both = datasets.concatenate_datasets(
        [audio, codes.remove_columns(["__key__", "__url__"]).rename_column("json", "code_json")],
        axis=1,
    )
    assert both.column_names == ["flac", "json", "__key__", "__url__", "codes.npy", "code_json"]
    assert both[3]["code_json"]["utterance_id"] == both[3]["json"]["utterance_id"]
    joined = list(iter_unit_joined(root, SOURCE, UNIT, TOKENIZER_SHA256))
    assert audio["__key__"] == [s.key for s in joined]
    for a, c, expected in zip(audio, codes, joined, strict=True):
        assert c["codes.npy"] == expected.codes.tolist()
        assert a["json"] == expected.audio_meta.model_dump(mode="json")
        assert c["json"] == expected.code_meta.model_dump(mode="json")
        decoded = a["flac"].get_all_samples()
        assert decoded.sample_rate == RATE_HZ
        np.testing.assert_array_equal(decoded.data.numpy()[0], expected.audio())
