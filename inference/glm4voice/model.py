"""The Whisper-VQ encoder of the GLM-4-Voice tokenizer: 100 Hz log-mel frames → 12.5 Hz codes.

`WhisperVQEncoder` has upstream's parameter names (no prefix; see
`/work/shared/design/GLM4VOICE_TOKENIZER.md`), so the released
`model.safetensors` loads into it key for key. Its forward pass is
upstream's: two GELU convolutions (causal: left-padded by 2), learned
positions, pre-LN Whisper layers under an additive block-causal mask, average
(or max) pooling after layer `pooling_position`, and nearest-codebook
quantisation by squared L2 distance after layer `quantize_position`.

Batch invariance, by construction. The codes of a window must not depend on
which other windows share its batch. The masks give that mathematically (no
valid token can see a padded frame), but float kernels do not: a matrix
product's rounding depends on its shape (on this CPU, `nn.Linear` rows differ
in the last bit between 37 and 600 rows), and attention's on the sequence
length. So the encoder (1) pads every input to a multiple of
`length_quantum_frames` encoder frames (20 = 0.4 s) *inside* the model, with
frames that are masked out and lie past the window's last code, and runs
attention per group of windows of one such length class; (2) computes every
row-wise product (convolutions as im2col products, projections,
feed-forward, codebook distances) over the rows of all groups together, in
calls of exactly `rows_per_call` rows, zero-padding the last call. A window
then goes through kernels of the same shapes whether it runs alone or in any
batch, and its codes are bitwise those it gets alone (tested on this CPU; on
CUDA it relies on cuBLAS and SDPA choosing one kernel per shape, as they do
for fixed shapes). What it costs is measured in bench/README.md,
"GLM-4-Voice tokenizer".

Why this module is long: it is one model whose batch-invariance rules (fixed
row counts, length classes, masks) hold only if every layer keeps them; the
layers, the attention and the fixed-shape products are kept side by side so
that rule can be checked in one read against the upstream module layout.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from inference.glm4voice.config import GLM4VoiceTokenizerConfig

LAYER_NORM_EPS = 1e-5  # nn.LayerNorm's default, which upstream's layers use

# Encoder frames (50 per second) an input is padded to a multiple of inside the model.
LENGTH_QUANTUM_FRAMES = 20

# Rows per matrix-product call. Bigger is faster (measured on a 2-core Xeon: a 1280×1280
# product runs at about half the speed in calls of 512 rows as in calls of 4096, and at
# 0.87× in calls of 2048) and wastes more on the last, zero-padded call of each batch.
ROWS_PER_CALL = {"cpu": 2048, "cuda": 4096}


class CausalConv1d(nn.Conv1d):
    """`nn.Conv1d` with `padding=0` that left-pads its input by `dilation·(kernel−1)` zeros.

    Output frame t depends on input frames ≤ t·stride only (no look-ahead).
    Parameter names are those of `nn.Conv1d` (`weight`, `bias`).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
        dilation: int = 1, bias: bool = True,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0,
                         dilation=dilation, bias=bias)
        self.left_padding = dilation * (kernel_size - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, channels, frames) → (batch, out_channels, ⌈frames / stride⌉) for kernel 3."""
        return super().forward(F.pad(x, (self.left_padding, 0)))


def conv_padding(conv: nn.Conv1d) -> tuple[int, int]:
    """Zero frames (left, right) the convolution adds around its input."""
    if isinstance(conv, CausalConv1d):
        return conv.left_padding, 0
    pad = conv.padding[0]
    assert isinstance(pad, int)
    return pad, pad


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Whisper's sinusoidal position table, (length, channels): sin half then cos half.

    Upstream initialises `embed_positions` with it (the released weights are learned).
    """
    if channels % 2:
        raise ValueError(f"channels must be even, not {channels}")
    log_increment = math.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = torch.exp(-log_increment * torch.arange(channels // 2, dtype=torch.float32))
    scaled = torch.arange(length, dtype=torch.float32)[:, None] * inv_timescales[None, :]
    return torch.cat([scaled.sin(), scaled.cos()], dim=1)


# --- masks --------------------------------------------------------------------------------


def block_causal_allowed(key_valid: torch.Tensor, block_size: int) -> torch.Tensor:
    """Which keys each query may attend: (batch, frames) bool → (batch, query, key) bool.

    Query i may attend key j when j ≤ i or both lie in the same block of
    `block_size` frames (blocks start at frame 0), and only when key j is
    valid. This is upstream's `tril | block_diag(ones)` then `& mask[:, None, :]`.
    """
    frames = key_valid.shape[-1]
    index = torch.arange(frames, device=key_valid.device)
    allowed = (index[None, :] <= index[:, None]) | (
        (index[:, None] // block_size) == (index[None, :] // block_size)
    )
    return allowed[None, :, :] & key_valid.bool()[:, None, :]


def padding_allowed(key_valid: torch.Tensor) -> torch.Tensor:
    """Every query may attend every valid key: (batch, frames) → (batch, query, key) bool."""
    frames = key_valid.shape[-1]
    return key_valid.bool()[:, None, :].expand(-1, frames, -1)


def causal_allowed(batch: int, frames: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Query i attends keys j ≤ i, padded or not, as SDPA's `is_causal`: (batch, query, key)."""
    allowed = torch.ones(frames, frames, dtype=torch.bool, device=device).tril()
    return allowed[None].expand(batch, -1, -1)


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(batch, query, key) bool → (batch, 1, query, key) additive mask: 0 allowed, dtype min not."""
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[:, None]


def attention_allowed(
    config: GLM4VoiceTokenizerConfig, key_valid: torch.Tensor, block_size: int | None
) -> torch.Tensor:
    """The mask upstream's layers apply, as (batch, query, key) bool.

    Causal layers (`encoder_causal_attention` or `quantize_causal_encoder`)
    drop the padding mask and use plain causal attention, as upstream does;
    otherwise block-causal over valid keys when a block size is set, else all
    valid keys.
    """
    if config.encoder_causal_attention or config.quantize_causal_encoder:
        return causal_allowed(key_valid.shape[0], key_valid.shape[1], key_valid.device)
    if block_size is not None:
        return block_causal_allowed(key_valid, block_size)
    return padding_allowed(key_valid)


# --- pooling and quantisation --------------------------------------------------------------


def pool_time(hidden: torch.Tensor, kernel_size: int, pooling_type: str) -> torch.Tensor:
    """Pool (batch, frames, d) over time: (batch, ⌈frames / kernel⌉, d).

    As upstream: zero-pad the time axis on the right to a multiple of the
    kernel, then `AvgPool1d(kernel)` or `MaxPool1d(kernel)` (stride = kernel).
    """
    x = hidden.transpose(1, 2)
    remainder = x.shape[-1] % kernel_size
    if remainder:
        x = F.pad(x, (0, kernel_size - remainder))
    if pooling_type == "avg":
        x = F.avg_pool1d(x, kernel_size)
    elif pooling_type == "max":
        x = F.max_pool1d(x, kernel_size)
    else:
        raise ValueError(f"unknown pooling_type {pooling_type!r}")
    return x.transpose(1, 2).contiguous()


def nearest_code(
    rows: torch.Tensor, codebook: torch.Tensor, codebook_sqr: torch.Tensor | None = None
) -> torch.Tensor:
    """Index of the nearest codebook row for each row: (n, d), (V, d) → (n,) int64.

    Distance: squared L2 as upstream computes it, ‖c‖² + ‖x‖² − 2·x·cᵀ (one
    `addmm`), minimised over the V entries.
    """
    if codebook_sqr is None:
        codebook_sqr = torch.sum(codebook**2, dim=1)
    rows_sqr = torch.sum(rows**2, dim=1, keepdim=True)
    distances = torch.addmm(codebook_sqr + rows_sqr, rows, codebook.t(), beta=1.0, alpha=-2.0)
    return torch.min(distances, dim=1).indices


# --- fixed-shape row products --------------------------------------------------------------


def in_row_calls(
    inputs: Sequence[torch.Tensor], rows_per_call: int | None,
    compute: Callable[..., torch.Tensor],
) -> torch.Tensor:
    """`compute(*chunks)` over the rows of `inputs`, in calls of exactly `rows_per_call` rows.

    All inputs have the same number of rows; the last call is zero-padded to
    `rows_per_call` rows and the padding rows of its result are dropped.
    `compute` must act row by row. The result has the inputs' row count.
    `rows_per_call=None`: one call over all rows (fastest, not batch-invariant).
    """
    total = inputs[0].shape[0]
    if total == 0:
        raise ValueError("no rows to compute")
    if rows_per_call is None:
        return compute(*inputs)
    out: torch.Tensor | None = None
    for start in range(0, total, rows_per_call):
        stop = min(start + rows_per_call, total)
        chunks = [tensor[start:stop] for tensor in inputs]
        if stop - start < rows_per_call:
            chunks = [
                torch.cat([c, c.new_zeros((rows_per_call - (stop - start), *c.shape[1:]))])
                for c in chunks
            ]
        result = compute(*chunks)
        if out is None:
            out = result.new_empty((total, *result.shape[1:]))
        out[start:stop] = result[: stop - start]
    assert out is not None
    return out


def conv_gelu_rows(
    conv: nn.Conv1d, groups: Sequence[torch.Tensor], rows_per_call: int | None
) -> list[torch.Tensor]:
    """`gelu(conv(x))` for each time-major x (batch, frames, in) → (batch, out_frames, out).

    Computed as one im2col product over the rows of all groups, in fixed-size
    calls (`in_row_calls`); equal to `F.gelu(conv(x.transpose(1, 2))).transpose(1, 2)`
    up to float rounding.
    """
    left, right = conv_padding(conv)
    kernel, stride, dilation = conv.kernel_size[0], conv.stride[0], conv.dilation[0]
    flats, indices, shapes = [], [], []
    base = 0
    for x in groups:
        batch, frames, channels = x.shape
        padded_frames = frames + left + right
        out_frames = (padded_frames - dilation * (kernel - 1) - 1) // stride + 1
        flats.append(F.pad(x, (0, 0, left, right)).reshape(batch * padded_frames, channels))
        starts = (
            torch.arange(batch, device=x.device)[:, None] * padded_frames
            + torch.arange(out_frames, device=x.device)[None, :] * stride
        ).reshape(-1, 1) + base
        indices.append(starts + torch.arange(kernel, device=x.device)[None, :] * dilation)
        shapes.append((batch, out_frames))
        base += batch * padded_frames
    flat = flats[0] if len(flats) == 1 else torch.cat(flats)
    channels = flat.shape[1]
    # weight (out, in, k) → (out, k·in) to match rows laid out tap by tap
    weight = conv.weight.permute(0, 2, 1).reshape(conv.out_channels, kernel * channels)

    def compute(index_chunk: torch.Tensor) -> torch.Tensor:
        rows = flat[index_chunk].reshape(index_chunk.shape[0], kernel * channels)
        return F.gelu(F.linear(rows, weight, conv.bias))

    out = in_row_calls([torch.cat(indices)], rows_per_call, compute)
    parts = out.split([batch * frames for batch, frames in shapes])
    return [part.view(batch, frames, -1) for part, (batch, frames) in zip(parts, shapes,
                                                                          strict=True)]


# --- modules -------------------------------------------------------------------------------


class WhisperVQAttention(nn.Module):
    """Whisper self-attention: q/v/out projections with bias, k without; scale head_dim**-0.5."""

    def __init__(self, d_model: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=True)
        self.q_proj = nn.Linear(d_model, d_model, bias=True)
        self.out_proj = nn.Linear(d_model, d_model, bias=True)

    def heads(self, rows: torch.Tensor, batch: int, frames: int) -> torch.Tensor:
        """(batch·frames, d) → (batch, heads, frames, head_dim), contiguous."""
        shaped = rows.view(batch, frames, self.num_heads, self.head_dim)
        return shaped.transpose(1, 2).contiguous()


class WhisperVQEncoderLayer(nn.Module):
    """A pre-LN Whisper encoder layer (upstream's `WhisperVQEncoderLayer`, no dropout).

    x + self_attn(self_attn_layer_norm(x)), then x + fc2(gelu(fc1(final_layer_norm(x)))).
    """

    def __init__(self, d_model: int, num_heads: int, ffn_dim: int) -> None:
        super().__init__()
        self.self_attn = WhisperVQAttention(d_model, num_heads)
        self.self_attn_layer_norm = nn.LayerNorm(d_model, eps=LAYER_NORM_EPS)
        self.fc1 = nn.Linear(d_model, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, d_model)
        self.final_layer_norm = nn.LayerNorm(d_model, eps=LAYER_NORM_EPS)

    def forward(
        self, hidden: torch.Tensor, mask: torch.Tensor, rows_per_call: int | None = None
    ) -> torch.Tensor:
        """(batch, frames, d) under an additive (batch, 1, frames, frames) mask → same shape.

        `rows_per_call=None` computes each product in one call.
        """
        batch, frames, d_model = hidden.shape
        rows = hidden.reshape(batch * frames, d_model)
        out = self.forward_packed(rows, [(batch, frames)], [mask], rows_per_call)
        return out.view(batch, frames, d_model)

    def forward_packed(
        self,
        rows: torch.Tensor,
        layout: Sequence[tuple[int, int]],
        masks: Sequence[torch.Tensor],
        rows_per_call: int | None,
    ) -> torch.Tensor:
        """The layer over packed groups: rows (Σ batch·frames, d), group by group in `layout`.

        Group g is `rows[offset : offset + batch·frames]` viewed (batch, frames, d)
        and attends under `masks[g]`; every row-wise product runs over all rows
        in calls of `rows_per_call` rows.
        """
        d_model = rows.shape[1]
        attn = self.self_attn
        # q, k, v in one product (k has no bias: a zero bias adds exact zeros)
        qkv_weight = torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight])
        qkv_bias = torch.cat([attn.q_proj.bias, torch.zeros_like(attn.q_proj.bias),
                              attn.v_proj.bias])

        def qkv(chunk: torch.Tensor) -> torch.Tensor:
            return F.linear(self.self_attn_layer_norm(chunk), qkv_weight, qkv_bias)

        projected = in_row_calls([rows], rows_per_call, qkv)
        context = torch.empty_like(rows)
        offset = 0
        for (batch, frames), mask in zip(layout, masks, strict=True):
            part = projected[offset : offset + batch * frames]
            q, k, v = (attn.heads(part[:, i * d_model : (i + 1) * d_model], batch, frames)
                       for i in range(3))
            # SDPA's default scale is head_dim**-0.5, upstream's `scaling`.
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            context[offset : offset + batch * frames] = out.transpose(1, 2).reshape(
                batch * frames, d_model)
            offset += batch * frames

        def residual_blocks(x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
            x = x + attn.out_proj(ctx)
            return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))

        out = in_row_calls([rows, context], rows_per_call, residual_blocks)
        if out.dtype == torch.float16:
            # upstream clamps fp16 overflow the same way
            limit = torch.finfo(torch.float16).max - 1000
            out = out.clamp(-limit, limit)
        return out


@dataclass
class EncoderOutput:
    """Codes of a batch. `token_ids` and `token_valid`: (batch, codes); `hidden`: the
    quantiser's input (batch, codes, d_model) when asked for, else None."""

    token_ids: torch.Tensor
    token_valid: torch.Tensor
    hidden: torch.Tensor | None = None


def padded_feature_frames(n_frames: int, length_quantum_frames: int = LENGTH_QUANTUM_FRAMES) -> int:
    """Log-mel frames (100/s) the encoder pads `n_frames` to: a multiple of 2·quantum.

    Two log-mel frames make one encoder frame (conv2 has stride 2).
    """
    step = 2 * length_quantum_frames
    return -(-n_frames // step) * step


class WhisperVQEncoder(nn.Module):
    """Upstream's `WhisperVQEncoder` for inference, with upstream's parameter names.

    Built from a `GLM4VoiceTokenizerConfig`: `conv1`, `conv2`,
    `embed_positions`, `layers.0…`, (`layer_norm` unless
    `quantize_encoder_only`), `codebook`, `embed_positions2` and, when
    `quantize_ema_decay` is set, the `ema_count` / `ema_weight` buffers.
    With `quantize_encoder_only` only the first `quantize_position` layers
    exist. `forward` runs up to the quantiser and returns codes.
    `rows_per_call=None` runs each product in one call: faster, but a
    window's codes may then change (in rare near-ties) with its batch.
    """

    def __init__(
        self,
        config: GLM4VoiceTokenizerConfig,
        *,
        rows_per_call: int | None = ROWS_PER_CALL["cpu"],
        length_quantum_frames: int = LENGTH_QUANTUM_FRAMES,
    ) -> None:
        super().__init__()
        self.config = config
        self.rows_per_call = rows_per_call
        self.length_quantum_frames = length_quantum_frames
        d_model = config.d_model
        if config.encoder_causal_convolution:
            self.conv1: nn.Conv1d = CausalConv1d(config.num_mel_bins, d_model, 3)
            self.conv2: nn.Conv1d = CausalConv1d(d_model, d_model, 3, stride=2)
        else:
            self.conv1 = nn.Conv1d(config.num_mel_bins, d_model, 3, padding=1)
            self.conv2 = nn.Conv1d(d_model, d_model, 3, stride=2, padding=1)
        self.embed_positions = nn.Embedding(config.max_source_positions, d_model)
        n_layers = (
            config.quantize_position if config.quantize_encoder_only else config.encoder_layers
        )
        self.layers = nn.ModuleList(
            WhisperVQEncoderLayer(d_model, config.encoder_attention_heads, config.encoder_ffn_dim)
            for _ in range(n_layers)
        )
        if not config.quantize_encoder_only:
            self.layer_norm = nn.LayerNorm(d_model, eps=LAYER_NORM_EPS)
        if config.quantize_vocab_size is not None:
            self.codebook = nn.Embedding(config.quantize_vocab_size, d_model)
            positions2 = config.max_source_positions
            if config.pooling_kernel_size is not None:
                positions2 = math.ceil(positions2 / config.pooling_kernel_size)
            self.embed_positions2 = nn.Embedding(positions2, d_model)
            if config.quantize_ema_decay is not None:
                self.register_buffer("ema_count", torch.ones(config.quantize_vocab_size))
                self.register_buffer("ema_weight", torch.zeros(config.quantize_vocab_size, d_model))

    def forward(
        self, features: torch.Tensor, frame_mask: torch.Tensor, *, return_hidden: bool = False
    ) -> EncoderOutput:
        """Codes for log-mel features (batch, num_mel_bins, frames) and their frame mask.

        `frame_mask` (batch, frames), 1 for frames of audio: the feature
        extractor's `attention_mask`. Frames are padded inside to a multiple of
        2·`length_quantum_frames` (masked, past every window's last code).
        Codes are one per `2·token_stride_frames` input frames; `token_valid`
        is the frame mask taken `[:, ::2]` then `[:, ::kernel]`, as upstream.
        """
        return self.forward_groups([(features, frame_mask)], return_hidden=return_hidden)[0]

    def forward_groups(
        self,
        groups: Sequence[tuple[torch.Tensor, torch.Tensor]],
        *,
        return_hidden: bool = False,
    ) -> list[EncoderOutput]:
        """`forward` for several (features, frame_mask) groups in one pass.

        Each group is padded to its own length and attends within itself; the
        row-wise products of all groups run together in fixed-size calls. A
        group's result does not depend on the other groups (see module docstring).
        """
        config = self.config
        if config.quantize_vocab_size is None:
            raise ValueError("this encoder has no codebook (quantize_vocab_size is not set)")
        weight = self.conv1.weight
        per_call = self.rows_per_call
        inputs, masks_1d = [], []
        for features, frame_mask in groups:
            _, n_mels, frames = features.shape
            if n_mels != config.num_mel_bins:
                raise ValueError(f"features have {n_mels} mel bins, the model takes "
                                 f"{config.num_mel_bins}")
            if (frames + 1) // 2 > config.max_source_positions:
                raise ValueError(
                    f"{frames} log-mel frames give {(frames + 1) // 2} encoder frames, more "
                    f"than max_source_positions {config.max_source_positions}"
                )
            padded = padded_feature_frames(frames, self.length_quantum_frames)
            x = features.to(device=weight.device, dtype=weight.dtype)
            inputs.append(F.pad(x, (0, padded - frames)).transpose(1, 2))
            masks_1d.append(F.pad(frame_mask.to(weight.device), (0, padded - frames)))

        hidden = conv_gelu_rows(self.conv2, conv_gelu_rows(self.conv1, inputs, per_call),
                                per_call)
        hidden = [x + self._positions(x.shape[1]) for x in hidden]
        key_valid = [mask[:, ::2].bool() for mask in masks_1d]
        block_size = config.quantize_causal_block_size
        layout = [(x.shape[0], x.shape[1]) for x in hidden]
        rows = torch.cat([x.reshape(-1, x.shape[-1]) for x in hidden])
        attention = [additive_mask(attention_allowed(config, valid, block_size), rows.dtype)
                     for valid in key_valid]
        for index in range(config.quantize_position):
            rows = self.layers[index].forward_packed(rows, layout, attention, per_call)
            if config.pools and index + 1 == config.pooling_position:
                kernel = config.token_stride_frames
                parts = rows.split([batch * frames for batch, frames in layout])
                pooled = [pool_time(part.view(batch, frames, -1), kernel, config.pooling_type)
                          for part, (batch, frames) in zip(parts, layout, strict=True)]
                layout = [(x.shape[0], x.shape[1]) for x in pooled]
                rows = torch.cat([x.reshape(-1, x.shape[-1]) for x in pooled])
                key_valid = [valid[:, ::kernel] for valid in key_valid]
                block_size = None if block_size is None else block_size // kernel
                if index + 1 < config.quantize_position:
                    attention = [
                        additive_mask(attention_allowed(config, valid, block_size), rows.dtype)
                        for valid in key_valid
                    ]
        ids = self._quantize_rows(rows)
        sizes = [batch * frames for batch, frames in layout]
        return [
            EncoderOutput(
                token_ids=group_ids.view(batch, frames),
                token_valid=valid,
                hidden=group_rows.view(batch, frames, -1) if return_hidden else None,
            )
            for group_ids, group_rows, valid, (batch, frames) in zip(
                ids.split(sizes), rows.split(sizes), key_valid, layout, strict=True
            )
        ]

    def _positions(self, frames: int) -> torch.Tensor:
        positions = self.embed_positions.weight[:frames]
        if positions.shape[0] < frames:
            # only inside the model's own padding, past the last code of every window
            positions = F.pad(positions, (0, 0, 0, frames - positions.shape[0]))
        return positions

    def quantize(self, hidden: torch.Tensor) -> torch.Tensor:
        """Nearest codebook entries of the quantiser's input: (batch, n, d) → (batch, n) int64,
        computed exactly as `forward` does."""
        return self._quantize_rows(hidden.reshape(-1, hidden.shape[-1])).view(hidden.shape[0], -1)

    def _quantize_rows(self, rows: torch.Tensor) -> torch.Tensor:
        # pooled rows are fewer, and each makes a whole row of distances: smaller calls
        codebook = self.codebook.weight
        codebook_sqr = torch.sum(codebook**2, dim=1)
        per_call = (None if self.rows_per_call is None
                    else max(1, self.rows_per_call // self.config.token_stride_frames))
        return in_row_calls(
            [rows], per_call, lambda chunk: nearest_code(chunk, codebook, codebook_sqr)
        )
