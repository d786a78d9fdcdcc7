"""The released key set at the real dimensions (d_model 1280, 16 layers, 16384×1280 codebook).

A module fixture writes a 1.46 GB `model.safetensors` with exactly the
released 249 tensors and random weights, streaming one tensor at a time (so
memory holds one tensor, not the checkpoint), once per test session. The
loader must take it as is, and the real-size encoder must give the same
codes to a short clip alone or in any batch.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from inference.glm4voice import (
    RELEASED_CONFIG,
    RELEASED_PREPROCESSOR,
    GLM4VoiceTokenizer,
    GLM4VoiceTokenizerConfig,
    load_tokenizer,
    tokenizer_checkpoint_sha256,
)
from inference.glm4voice.demo import calibrate_codebook
from inference.glm4voice.features import window_features
from inference.glm4voice.model import WhisperVQEncoder, sinusoids
from inference.glm4voice.reference import reference_forward

RATE = 16000
pytestmark = pytest.mark.slow


def _released_shapes() -> dict[str, tuple[int, ...]]:
    """The design note's table, written out (not derived from voxlake's model)."""
    d, ffn, vocab = 1280, 5120, 16384
    shapes: dict[str, tuple[int, ...]] = {
        "conv1.weight": (d, 128, 3),
        "conv1.bias": (d,),
        "conv2.weight": (d, d, 3),
        "conv2.bias": (d,),
        "embed_positions.weight": (1500, d),
        "codebook.weight": (vocab, d),
        "embed_positions2.weight": (375, d),
        "ema_count": (vocab,),
        "ema_weight": (vocab, d),
    }
    for layer in range(16):
        p = f"layers.{layer}."
        shapes[p + "self_attn.k_proj.weight"] = (d, d)
        for proj in ("q_proj", "v_proj", "out_proj"):
            shapes[p + f"self_attn.{proj}.weight"] = (d, d)
            shapes[p + f"self_attn.{proj}.bias"] = (d,)
        for norm in ("self_attn_layer_norm", "final_layer_norm"):
            shapes[p + f"{norm}.weight"] = (d,)
            shapes[p + f"{norm}.bias"] = (d,)
        shapes[p + "fc1.weight"], shapes[p + "fc1.bias"] = (ffn, d), (ffn,)
        shapes[p + "fc2.weight"], shapes[p + "fc2.bias"] = (d, ffn), (d,)
    return shapes


def _values(
    name: str, shape: tuple[int, ...], generator: torch.Generator, codebook: list[torch.Tensor]
) -> torch.Tensor:
    if name.endswith("layer_norm.weight") or name == "ema_count":
        return torch.ones(shape)
    if name.endswith("layer_norm.bias"):
        return torch.zeros(shape)
    if name in ("embed_positions.weight", "embed_positions2.weight"):
        return sinusoids(*shape)
    if name == "ema_weight":
        return codebook[0]
    if name == "codebook.weight":
        codebook.append(torch.empty(shape).normal_(generator=generator))
        return codebook[0]
    std = 0.02 if name.endswith(".bias") else 1.0 / math.sqrt(math.prod(shape[1:]))
    return torch.empty(shape).normal_(0.0, std, generator=generator)


def write_safetensors_streaming(path: Path, shapes: dict[str, tuple[int, ...]], seed: int) -> None:
    """A float32 safetensors file of random weights, written tensor by tensor."""
    names = sorted(shapes)
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name in names:
        size = 4 * math.prod(shapes[name])
        header[name] = {
            "dtype": "F32",
            "shape": list(shapes[name]),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    generator = torch.Generator().manual_seed(seed)
    codebook: list[torch.Tensor] = []
    with path.open("wb") as out:
        out.write(struct.pack("<Q", len(encoded)) + encoded)
        for name in names:
            _values(name, shapes[name], generator, codebook).numpy().tofile(out)


@pytest.fixture(scope="module")
def released_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("released") / "glm-4-voice-tokenizer"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(RELEASED_CONFIG, indent=2))
    (directory / "preprocessor_config.json").write_text(json.dumps(RELEASED_PREPROCESSOR))
    write_safetensors_streaming(directory / "model.safetensors", _released_shapes(), seed=0)
    yield directory
    # pytest keeps recent temporary folders: do not leave 1.46 GB behind each session
    (directory / "model.safetensors").unlink()


@pytest.fixture(scope="module")
def real_tokenizer(released_dir: Path) -> GLM4VoiceTokenizer:
    # 128 rows per product call instead of 512 keeps short clips cheap on CPU; codes are
    # batch-invariant for any fixed value.
    return load_tokenizer(released_dir, device="cpu", rows_per_call=128)


def test_the_released_key_set_at_real_dimensions_loads(
    released_dir: Path, real_tokenizer: GLM4VoiceTokenizer
) -> None:
    path = released_dir / "model.safetensors"
    assert 1.45e9 < path.stat().st_size < 1.47e9  # 1.46 GB, as released
    with safe_open(str(path), framework="pt") as handle:
        keys = set(handle.keys())
        assert len(keys) == 249
        model = real_tokenizer.model
        state = model.state_dict()
        assert set(state) == keys
        for name in (
            "conv1.weight",
            "layers.15.fc2.weight",
            "layers.7.self_attn.k_proj.weight",
            "codebook.weight",
            "ema_count",
            "embed_positions2.weight",
        ):
            assert torch.equal(state[name], handle.get_tensor(name)), name
    assert len(model.layers) == 16 and model.config.d_model == 1280
    assert real_tokenizer.checkpoint_sha256 == tokenizer_checkpoint_sha256(released_dir)
    assert (released_dir / ".voxlake-sha256.json").exists()
    listing = "".join(
        f"{hashlib.sha256((released_dir / n).read_bytes()).hexdigest()}  {n}\n"
        for n in ("config.json", "model.safetensors", "preprocessor_config.json")
    )
    assert real_tokenizer.checkpoint_sha256 == hashlib.sha256(listing.encode()).hexdigest()
    assert not real_tokenizer.is_demo


def test_voxlakes_model_has_the_notes_key_set() -> None:
    with torch.device("meta"):
        model = WhisperVQEncoder(GLM4VoiceTokenizerConfig.from_dict(RELEASED_CONFIG))
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == _released_shapes()


def _clip(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * RATE)) / RATE
    voiced = np.sin(2 * np.pi * (150 + 40 * np.sin(3 * t + seed)) * t) * (np.sin(9 * t) > -0.3)
    return (0.3 * voiced + 0.03 * rng.standard_normal(len(t))).astype(np.float32)


def test_real_dimensions_codes_are_batch_invariant(real_tokenizer: GLM4VoiceTokenizer) -> None:
    model = real_tokenizer.model
    a, b, c = _clip(1.15, 0), _clip(0.95, 1), _clip(2.5, 2)  # a and b share a length class
    features, frame_mask = window_features(real_tokenizer.extractor, a, 1280)
    b_features, b_mask = window_features(real_tokenizer.extractor, b, 1280)
    original = model.codebook.weight.clone()
    try:
        with torch.inference_mode():
            one = model(features[None], frame_mask[None], return_hidden=True)
            assert one.hidden is not None
            valid = one.token_valid[0]
            assert int(valid.sum()) == 15  # ⌈18400 / 1280⌉
            # random codebooks give one code for everything; draw one around the clip's states
            calibrate_codebook(model, one.hidden[0][valid], seed=0)
            alone = model.quantize(one.hidden)[0][valid].numpy()
            assert len(np.unique(alone)) > 3
            # the fast path, in a batch with a window of another length class and one of
            # the same class, gives the window's codes alone
            mixed = real_tokenizer.tokenize([c, a, b])
            assert real_tokenizer.last_stats is not None
            assert real_tokenizer.last_stats.batches == 1  # groups [c] and [a, b]
            np.testing.assert_array_equal(mixed[1], alone)
            # the same bits, not just the same codes
            batch = torch.zeros(2, 128, features.shape[-1])
            batch[0], batch[1, :, : b_features.shape[-1]] = features, b_features
            mask = torch.zeros(2, features.shape[-1], dtype=torch.long)
            mask[0], mask[1, : b_mask.shape[-1]] = frame_mask, b_mask
            two = model(batch, mask, return_hidden=True).hidden
            assert two is not None and torch.equal(one.hidden[0], two[0])
            # upstream's forward, transcribed literally, agrees to float rounding
            ids, ref_valid, hidden = reference_forward(
                model.state_dict(), model.config, features[None], frame_mask[None]
            )
            assert torch.equal(ref_valid[0], valid[: ref_valid.shape[1]])
            torch.testing.assert_close(one.hidden[0, :15], hidden[0, :15], rtol=1e-3, atol=1e-3)
            # codes agree, except where two entries are tied to within float rounding
            codebook = model.codebook.weight.double()
            for index in np.flatnonzero(ids[0, :15].numpy() != alone):
                row = hidden[0, index].double()
                ours = ((codebook[int(alone[index])] - row) ** 2).sum()
                theirs = ((codebook[int(ids[0, index])] - row) ** 2).sum()
                assert abs(ours - theirs) <= 1e-4 * ours, (index, float(ours), float(theirs))
    finally:
        with torch.no_grad():
            model.codebook.weight.copy_(original)
