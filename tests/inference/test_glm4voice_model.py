"""The Whisper-VQ encoder's pieces on small hand-checked cases, and against independent oracles.

Oracles: hand-written masks and pooled values, brute-force nearest neighbours,
`transformers`' own `WhisperEncoderLayer`, and `reference.reference_forward`
(a literal transcription of upstream's forward pass).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import WhisperConfig
from transformers.models.whisper.modeling_whisper import WhisperEncoderLayer

from inference.glm4voice.config import RELEASED_CONFIG, GLM4VoiceTokenizerConfig
from inference.glm4voice.demo import init_random_weights
from inference.glm4voice.model import (
    CausalConv1d,
    WhisperVQEncoder,
    WhisperVQEncoderLayer,
    additive_mask,
    block_causal_allowed,
    conv_gelu_rows,
    in_row_calls,
    nearest_code,
    padded_feature_frames,
    pool_time,
)
from inference.glm4voice.reference import reference_forward

SMALL = {
    "d_model": 64,
    "encoder_layers": 4,
    "encoder_attention_heads": 2,
    "encoder_ffn_dim": 128,
    "pooling_position": 4,
    "quantize_position": 4,
    "quantize_vocab_size": 512,
}


def _encoder(seed: int = 0, **changes: object) -> WhisperVQEncoder:
    config = GLM4VoiceTokenizerConfig.from_dict({**RELEASED_CONFIG, **SMALL, **changes})
    model = init_random_weights(WhisperVQEncoder(config, rows_per_call=64), seed)
    return model.eval().requires_grad_(False)


# --- causal convolution --------------------------------------------------------------------


def test_causal_conv_keeps_length_halves_with_stride_and_never_looks_ahead() -> None:
    torch.manual_seed(0)
    conv1, conv2 = CausalConv1d(8, 16, 3), CausalConv1d(16, 16, 3, stride=2)
    assert conv1.padding == (0,) and conv1.left_padding == 2
    x = torch.randn(1, 8, 11)
    y1 = conv1(x)
    assert y1.shape == (1, 16, 11)
    assert conv2(y1).shape == (1, 16, 6)  # ⌈11 / 2⌉
    # frame t is conv over input frames t-2, t-1, t with zeros before the start
    padded = F.pad(x, (2, 0))
    t = 5
    expected = torch.einsum("oik,ik->o", conv1.weight, padded[0, :, t : t + 3]) + conv1.bias
    torch.testing.assert_close(y1[0, :, t], expected)
    # changing a future sample changes nothing before it
    changed = x.clone()
    changed[..., 7] += 10.0
    z1 = conv1(changed)
    assert torch.equal(z1[..., :7], y1[..., :7]) and not torch.equal(z1[..., 7], y1[..., 7])
    z2, y2 = conv2(z1), conv2(y1)
    assert torch.equal(z2[..., :4], y2[..., :4])  # encoder frame 3 reads input frames ≤ 6
    assert not torch.equal(z2[..., 4], y2[..., 4])


def test_whisper_conv_pads_symmetrically_and_sees_one_frame_ahead() -> None:
    model = _encoder(encoder_causal_convolution=False)
    assert isinstance(model.conv1, torch.nn.Conv1d) and not isinstance(model.conv1, CausalConv1d)
    assert model.conv1.padding == (1,) and model.conv2.padding == (1,)
    x = torch.randn(1, 128, 10)
    changed = x.clone()
    changed[..., 6] += 5.0
    assert not torch.equal(model.conv1(changed)[..., 5], model.conv1(x)[..., 5])


@pytest.mark.parametrize("causal", [True, False])
def test_im2col_convolution_equals_the_conv_module(causal: bool) -> None:
    model = _encoder(encoder_causal_convolution=causal)
    x = torch.randn(3, 128, 40)
    for conv, inputs in ((model.conv1, x), (model.conv2, F.gelu(model.conv1(x)))):
        expected = F.gelu(conv(inputs)).transpose(1, 2)
        [got] = conv_gelu_rows(conv, [inputs.transpose(1, 2)], rows_per_call=16)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        # several groups of other lengths in one pass: each as if alone, bit for bit
        other = torch.randn(2, inputs.shape[1], 17)
        first, second = conv_gelu_rows(
            conv, [inputs.transpose(1, 2), other.transpose(1, 2)], rows_per_call=16
        )
        assert torch.equal(first, got)
        torch.testing.assert_close(
            second, F.gelu(conv(other)).transpose(1, 2), rtol=1e-5, atol=1e-5
        )


# --- masks ---------------------------------------------------------------------------------


def test_block_causal_mask_for_seven_frames_blocks_of_three_two_padded() -> None:
    valid = torch.tensor([[1, 1, 1, 1, 1, 0, 0]])
    # row = query, column = key. Blocks {0,1,2} {3,4,5} {6}: a query sees every earlier
    # key, the later keys of its own block, and never the padded keys 5 and 6.
    expected = torch.tensor(
        [
            [1, 1, 1, 0, 0, 0, 0],
            [1, 1, 1, 0, 0, 0, 0],
            [1, 1, 1, 0, 0, 0, 0],
            [1, 1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 1, 0, 0],
        ],
        dtype=torch.bool,
    )
    allowed = block_causal_allowed(valid, block_size=3)
    assert allowed.shape == (1, 7, 7)
    assert torch.equal(allowed[0], expected)
    additive = additive_mask(allowed, torch.float32)
    assert additive.shape == (1, 1, 7, 7)
    assert torch.equal(additive[0, 0] == 0, expected)
    assert (additive[0, 0][~expected] == torch.finfo(torch.float32).min).all()


def test_block_causal_mask_without_padding_and_a_partial_last_block() -> None:
    allowed = block_causal_allowed(torch.ones(1, 5, dtype=torch.bool), block_size=2)[0].int()
    assert allowed.tolist() == [
        [1, 1, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0],
        [1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1],
    ]


# --- pooling -------------------------------------------------------------------------------


def test_avg_pooling_pads_right_with_zeros_to_a_multiple_of_the_kernel() -> None:
    hidden = torch.arange(1.0, 11.0).reshape(1, 10, 1)  # frames 1..10, one channel
    pooled = pool_time(hidden, 4, "avg")
    assert pooled.shape == (1, 3, 1)  # ⌈10 / 4⌉
    assert pooled[0, :, 0].tolist() == [2.5, 6.5, (9 + 10 + 0 + 0) / 4]
    assert pool_time(torch.ones(2, 8, 3), 4, "avg").shape == (2, 2, 3)  # no padding needed


def test_max_pooling_pads_with_zeros_too() -> None:
    hidden = torch.tensor([-5.0, -1.0, -3.0, -2.0, -7.0, -6.0]).reshape(1, 6, 1)
    pooled = pool_time(hidden, 4, "max")
    # the padded zeros win the max of the last group, as in upstream
    assert pooled[0, :, 0].tolist() == [-1.0, 0.0]


# --- quantiser -----------------------------------------------------------------------------


def test_nearest_code_equals_brute_force_nearest_neighbour() -> None:
    generator = torch.Generator().manual_seed(3)
    codebook = torch.randn(1000, 16, generator=generator, dtype=torch.float64)
    rows = torch.randn(300, 16, generator=generator, dtype=torch.float64) * 1.5
    brute = torch.stack([((codebook - row) ** 2).sum(1).argmin() for row in rows])
    assert torch.equal(nearest_code(rows, codebook), brute)
    # a row equal to a codebook entry maps to it
    assert nearest_code(codebook[[17, 423]], codebook).tolist() == [17, 423]


# --- fixed-shape row calls -----------------------------------------------------------------


def test_row_calls_pad_the_last_call_and_keep_row_order() -> None:
    calls = []

    def double(chunk: torch.Tensor) -> torch.Tensor:
        calls.append(chunk.shape[0])
        return chunk * 2

    rows = torch.arange(10.0).reshape(10, 1)
    out = in_row_calls([rows], 4, double)
    assert calls == [4, 4, 4] and torch.equal(out, rows * 2)


def test_row_calls_give_each_row_the_same_bits_wherever_it_sits() -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 512)
    rows = torch.randn(700, 256)
    alone = in_row_calls([rows[:37]], 128, linear)
    shifted = in_row_calls([rows[5:300]], 128, linear)
    assert torch.equal(alone[5:37], shifted[:32])


def test_one_call_per_product_computes_the_same_thing() -> None:
    model = _encoder(seed=4)
    features = torch.randn(3, 128, 120)
    frame_mask = torch.ones(3, 120, dtype=torch.long)
    fixed = model(features, frame_mask, return_hidden=True)
    model.rows_per_call = None
    single = model(features, frame_mask, return_hidden=True)
    assert fixed.hidden is not None and single.hidden is not None
    torch.testing.assert_close(single.hidden, fixed.hidden, rtol=1e-5, atol=1e-5)
    _assert_codes_agree(
        single.token_ids.flatten(),
        fixed.token_ids.flatten(),
        fixed.hidden.reshape(-1, 64),
        model.codebook.weight,
    )


def test_padded_lengths_are_multiples_of_the_quantum() -> None:
    assert padded_feature_frames(8) == 40 and padded_feature_frames(40) == 40
    assert padded_feature_frames(41) == 80 and padded_feature_frames(3000) == 3000


# --- the layer against transformers' Whisper layer ------------------------------------------


def test_layer_equals_transformers_whisper_encoder_layer() -> None:
    config = WhisperConfig(d_model=64, encoder_attention_heads=4, encoder_ffn_dim=96)
    config._attn_implementation = "eager"
    theirs = WhisperEncoderLayer(config).eval()
    ours = WhisperVQEncoderLayer(64, 4, 96).eval()
    assert set(ours.state_dict()) == set(theirs.state_dict())  # same names, k_proj no bias
    with torch.no_grad():
        for tensor in theirs.state_dict().values():
            tensor.normal_(0.0, 0.2)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 9, 64)
    valid = torch.tensor([[1] * 9, [1] * 6 + [0] * 3], dtype=torch.bool)
    mask = additive_mask(block_causal_allowed(valid, 4), torch.float32)
    with torch.no_grad():
        expected = theirs(x, mask)
        torch.testing.assert_close(ours(x, mask), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours(x, mask, rows_per_call=5), expected, rtol=1e-5, atol=1e-5)


# --- the whole encoder against the literal upstream transcription --------------------------


def _assert_codes_agree(
    ours: torch.Tensor, theirs: torch.Tensor, hidden: torch.Tensor, codebook: torch.Tensor
) -> None:
    """Codes equal, except where the two nearest entries are tied to float rounding."""
    differ = (ours != theirs).nonzero().flatten()
    for index in differ.tolist():
        row = hidden[index].double()
        d_ours = ((codebook[ours[index]].double() - row) ** 2).sum()
        d_theirs = ((codebook[theirs[index]].double() - row) ** 2).sum()
        assert abs(d_ours - d_theirs) <= 1e-4 * d_ours, (index, float(d_ours), float(d_theirs))
    assert len(differ) <= max(1, len(ours) // 100)


@pytest.mark.parametrize(
    "changes",
    [
        {},  # the released architecture (causal conv, avg pool after the last layer)
        {"encoder_causal_convolution": False, "pooling_type": "max"},
        {"pooling_position": 2, "quantize_causal_block_size": 40},  # layers after pooling
        {"quantize_causal_block_size": None},  # plain key-padding attention
        {"encoder_causal_attention": True},  # upstream's is_causal layers, no padding mask
    ],
)
def test_encoder_matches_the_literal_upstream_forward(changes: dict) -> None:
    model = _encoder(seed=1, **changes)
    generator = torch.Generator().manual_seed(2)
    features = torch.randn(2, 128, 336, generator=generator) * 0.5
    frame_mask = torch.zeros(2, 336, dtype=torch.long)
    frame_mask[0, :336] = 1
    frame_mask[1, :203] = 1
    ours = model(features, frame_mask, return_hidden=True)
    state = model.state_dict()
    with torch.inference_mode():
        ids, valid, hidden = reference_forward(state, model.config, features, frame_mask)
    n = valid.shape[1]
    assert torch.equal(ours.token_valid[:, :n], valid)
    assert not ours.token_valid[:, n:].any()  # the encoder's own padding is never valid
    assert valid.sum(1).tolist() == [42, 26]  # ⌈336 / 8⌉, ⌈203 / 8⌉
    assert ours.hidden is not None
    for row in range(2):
        keep = valid[row]
        torch.testing.assert_close(
            ours.hidden[row, :n][keep], hidden[row][keep], rtol=1e-4, atol=1e-4
        )
        _assert_codes_agree(
            ours.token_ids[row, :n][keep], ids[row][keep], hidden[row][keep], model.codebook.weight
        )
    codes = np.concatenate([ours.token_ids[r, :n][valid[r]].numpy() for r in range(2)])
    assert len(np.unique(codes)) > 5  # the test would be vacuous on a constant code


def test_the_encoder_only_model_has_exactly_the_released_key_names() -> None:
    with torch.device("meta"):
        model = WhisperVQEncoder(GLM4VoiceTokenizerConfig.from_dict(RELEASED_CONFIG))
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    assert len(shapes) == 249
    assert shapes["conv1.weight"] == (1280, 128, 3) and shapes["conv2.weight"] == (1280, 1280, 3)
    assert shapes["embed_positions.weight"] == (1500, 1280)
    assert shapes["embed_positions2.weight"] == (375, 1280)
    assert shapes["codebook.weight"] == (16384, 1280)
    assert shapes["ema_count"] == (16384,) and shapes["ema_weight"] == (16384, 1280)
    assert "layers.0.self_attn.k_proj.bias" not in shapes
    assert shapes["layers.15.fc1.weight"] == (5120, 1280)
    assert "layers.16.fc1.weight" not in shapes and "layer_norm.weight" not in shapes
    full = GLM4VoiceTokenizerConfig.from_dict({**RELEASED_CONFIG, "quantize_encoder_only": False})
    with torch.device("meta"):
        names = set(WhisperVQEncoder(full).state_dict())
    assert "layers.31.fc2.bias" in names and "layer_norm.weight" in names
