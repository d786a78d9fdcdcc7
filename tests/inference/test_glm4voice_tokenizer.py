"""The fast path on the demo checkpoint: exact equality with the one-window-at-a-time
reference on the fixture corpora, batch invariance, code counts and rates, batching.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from inference.glm4voice import (
    GLM4VoiceTokenizer,
    expected_code_count,
    load_tokenizer,
    write_demo_checkpoint,
)
from inference.glm4voice.features import window_features
from inference.glm4voice.reference import module_encoder, reference_tokenize
from inference.glm4voice.tokenizer import length_groups, plan_batches
from pipelines.audio.decode import AudioDecodeError
from pipelines.audio.prepare import Segment, prepare_many
from pipelines.audio.ref import AudioOpener

RATE = 16000

# expected file -> folder its audio paths are relative to
CORPUS_ROOTS = {
    "librispeech": "librispeech/LibriSpeech",
    "wenetspeech": "wenetspeech",
    "emilia": "emilia",
    "custom_folder": "custom/folder",
    "custom_table": "custom/table",
    "custom_table_jsonl": "custom/table",
    "custom_vita": "custom/vita",
    "custom_hf_disk": "custom/hf_disk",
    "custom_hf_parquet": "custom/hf_parquet",
}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> GLM4VoiceTokenizer:
    directory = write_demo_checkpoint(tmp_path_factory.mktemp("demo") / "glm4voice-demo")
    # Codes are batch-invariant for any fixed rows_per_call; 512 rather than the CPU default
    # keeps the one-window-at-a-time reference cheap.
    return load_tokenizer(directory, device="cpu", rows_per_call=512)


@pytest.fixture(scope="module")
def corpus_audio(
    corpora: Path, load_expected: Callable[[str], list[dict]]
) -> dict[str, np.ndarray]:
    """Every ok utterance of the fixture corpora, decoded to 16 kHz mono, by corpus/native id."""
    out: dict[str, np.ndarray] = {}
    for name, folder in CORPUS_ROOTS.items():
        rows = [r for r in load_expected(name) if r["status"] == "ok"]
        segments = [
            Segment(
                r["audio_path"],
                r["audio_member"],
                r["offset_s"],
                r["duration_s"] if r["offset_s"] or name == "wenetspeech" else None,
            )
            for r in rows
        ]
        with AudioOpener(corpora / folder) as opener:
            for index, prepared in prepare_many(segments, opener.open):
                assert not isinstance(prepared, AudioDecodeError), prepared.message
                out[f"{name}/{rows[index]['native_id']}"] = prepared.samples
    return out


def _finite(corpus_audio: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v for k, v in corpus_audio.items() if np.isfinite(v).all()}


def _tone(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = round(seconds * RATE)
    t = np.arange(n) / RATE
    f0 = 120 + 60 * np.sin(2 * np.pi * 0.5 * t + seed)
    voiced = np.sin(2 * np.pi * np.cumsum(f0) / RATE) * (np.sin(2 * np.pi * 3 * t) > 0)
    return (0.2 * voiced + 0.02 * rng.standard_normal(n)).astype(np.float32)


# --- exactness -----------------------------------------------------------------------------


def test_fast_path_equals_the_reference_on_the_fixture_corpora(
    tokenizer: GLM4VoiceTokenizer, corpus_audio: dict[str, np.ndarray]
) -> None:
    audio = _finite(corpus_audio)
    assert len(audio) == len(corpus_audio) - 1  # custom_folder/broken/nan holds NaN samples
    assert len(audio) >= 60
    keys = sorted(audio)
    fast = tokenizer.tokenize([audio[k] for k in keys])
    reference = reference_tokenize(
        [audio[k] for k in keys],
        tokenizer.extractor,
        module_encoder(tokenizer.model),
        tokenizer.samples_per_code,
    )
    for key, ours, theirs in zip(keys, fast, reference, strict=True):
        assert ours.dtype == np.uint16
        assert len(ours) == expected_code_count(len(audio[key])), key
        np.testing.assert_array_equal(ours, theirs, err_msg=key)
    stats = tokenizer.last_stats
    assert stats is not None and stats.utterances == len(keys)
    assert stats.batches < stats.windows  # windows did run together
    assert 1.0 <= stats.padding_overhead < 1.3
    # the codes do depend on the audio (the test would be vacuous otherwise)
    assert len(np.unique(np.concatenate(fast))) > 100


def test_codes_do_not_depend_on_the_batch(
    tokenizer: GLM4VoiceTokenizer, corpus_audio: dict[str, np.ndarray]
) -> None:
    audio = _finite(corpus_audio)
    keys = sorted(audio)
    together = dict(zip(keys, tokenizer.tokenize([audio[k] for k in keys]), strict=True))
    order = np.random.default_rng(1).permutation(len(keys))
    shuffled = tokenizer.tokenize([audio[keys[i]] for i in order])
    for position, index in enumerate(order):
        np.testing.assert_array_equal(shuffled[position], together[keys[index]])
    for key in keys[::7]:
        np.testing.assert_array_equal(tokenizer.tokenize([audio[key]])[0], together[key])
    saved = tokenizer.max_batch_frames
    try:
        for frames in (3000, 1_000_000):  # one 30 s window per batch; everything at once
            tokenizer.max_batch_frames = frames
            again = tokenizer.tokenize([audio[k] for k in keys])
            for key, codes in zip(keys, again, strict=True):
                np.testing.assert_array_equal(codes, together[key], err_msg=f"{frames} {key}")
    finally:
        tokenizer.max_batch_frames = saved


def test_frames_past_a_windows_last_code_change_nothing(tokenizer: GLM4VoiceTokenizer) -> None:
    """What the masks guarantee, bit for bit: garbage (or another window's padding) after a
    window's last code cannot reach its codes, however long the padding."""
    features, frame_mask = window_features(tokenizer.extractor, _tone(2.3), 1280)
    frames = features.shape[-1]
    assert frames == 232 and int(frame_mask.sum()) == 230  # ⌈36800 / 1280⌉ · 8, ⌈36800 / 160⌉
    with torch.inference_mode():
        alone = tokenizer.model(features[None], frame_mask[None], return_hidden=True)
        for extra in (8, 168, 900):  # same length class, and two longer ones
            padded = torch.cat([features, torch.randn(128, extra) * 3.0], dim=1)[None]
            mask = torch.cat([frame_mask, torch.zeros(extra, dtype=frame_mask.dtype)])[None]
            out = tokenizer.model(padded, mask, return_hidden=True)
            valid = alone.token_valid[0]
            assert int(valid.sum()) == 29
            assert torch.equal(out.token_valid[0, : valid.shape[0]], valid)
            assert out.hidden is not None and alone.hidden is not None
            torch.testing.assert_close(
                out.hidden[0, :29], alone.hidden[0, :29], rtol=1e-5, atol=1e-5
            )
            assert torch.equal(out.token_ids[0, :29], alone.token_ids[0, :29])
            if extra == 8:  # same class: the same kernels, so the same bits
                assert torch.equal(out.hidden[0, :29], alone.hidden[0, :29])


# --- counts and rates ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "seconds, windows, codes",
    [
        (4.0, 1, 50),
        (10.0, 1, 125),
        (30.0, 1, 375),
        (70.0, 3, 875),
    ],
)
def test_code_counts_follow_the_window_rule(
    tokenizer: GLM4VoiceTokenizer, seconds: float, windows: int, codes: int
) -> None:
    samples = _tone(seconds, seed=int(seconds))
    [out] = tokenizer.tokenize([samples])
    assert len(out) == codes == expected_code_count(len(samples))
    assert tokenizer.last_stats is not None and tokenizer.last_stats.windows == windows
    assert len(out) / seconds == 12.5


def test_a_long_utterance_is_its_windows_concatenated(tokenizer: GLM4VoiceTokenizer) -> None:
    samples = _tone(70.0, seed=3)
    [whole] = tokenizer.tokenize([samples])
    parts = tokenizer.tokenize([samples[:480_000], samples[480_000:960_000], samples[960_000:]])
    assert [len(p) for p in parts] == [375, 375, 125]
    np.testing.assert_array_equal(whole, np.concatenate(parts))


def test_counts_at_window_and_code_boundaries(tokenizer: GLM4VoiceTokenizer) -> None:
    lengths = [0, 1, 1279, 1280, 1281, 479_999, 480_000, 480_001, 961_280]
    out = tokenizer.tokenize([_tone(n / RATE)[:n] for n in lengths])
    assert [len(c) for c in out] == [0, 1, 1, 1, 2, 375, 375, 376, 751]
    assert [expected_code_count(n) for n in lengths] == [len(c) for c in out]
    assert tokenizer.expected_code_count(961_280) == 751
    assert out[0].dtype == np.uint16 and tokenizer.tokenize([]) == []


def test_bad_audio_is_refused_with_its_index(
    tokenizer: GLM4VoiceTokenizer, corpus_audio: dict[str, np.ndarray]
) -> None:
    nan = corpus_audio["custom_folder/broken/nan"]
    with pytest.raises(ValueError, match="utterance 1: holds NaN"):
        tokenizer.tokenize([_tone(1.0), nan])
    with pytest.raises(ValueError, match="utterance 0: expected mono"):
        tokenizer.tokenize([np.zeros((16000, 2), dtype=np.float32)])
    with pytest.raises(ValueError, match="expected float samples"):
        tokenizer.tokenize([np.zeros(16000, dtype=np.int16)])


# --- batching ------------------------------------------------------------------------------


def test_batches_are_sorted_and_bounded_and_groups_hold_one_length_class() -> None:
    # log-mel frames of windows; padded lengths are multiples of 40 frames (0.4 s):
    # 3000, 80, 80, 40, 3000, 80, 40, 3000, 160
    frames = [3000, 80, 48, 40, 3000, 72, 8, 3000, 160]
    batches = plan_batches(frames, max_batch_frames=6000, length_quantum_frames=20)
    assert batches == [[0, 4], [7, 8, 1, 5, 2, 3, 6]]  # 6000 and 3000+160+3·80+2·40 frames
    assert sorted(i for b in batches for i in b) == list(range(len(frames)))
    assert length_groups(frames, batches[1], 20) == [[7], [8], [1, 5, 2], [3, 6]]
    assert plan_batches(frames, 300, 20) == [[0], [4], [7], [8, 1], [5, 2, 3, 6]]
    # a budget below one window still runs it, alone
    assert plan_batches([3000, 3000], max_batch_frames=100, length_quantum_frames=20) == [[0], [1]]


def test_demo_preprocessor_is_the_released_one(tokenizer: GLM4VoiceTokenizer) -> None:
    values = json.loads((tokenizer.directory / "preprocessor_config.json").read_text())
    assert (
        values["feature_size"],
        values["hop_length"],
        values["n_fft"],
        values["sampling_rate"],
        values["chunk_length"],
        values["n_samples"],
        values["nb_max_frames"],
    ) == (128, 160, 400, 16000, 30, 480000, 3000)
    assert tokenizer.window_samples == 480_000
