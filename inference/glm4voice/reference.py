"""The oracle: upstream's algorithm written plainly, one utterance and one window at a time.

`reference_tokenize` is upstream's `extract_speech_token` loop without its
batching: every 30 s window alone through the feature extractor (a batch of
one, `padding="longest"`, `pad_to_multiple_of` one code), through an encoder,
then the codes under the mask `[:, ::2][:, ::kernel]`, windows concatenated
per utterance. No sorting, no padding beyond upstream's.

Two encoders can drive it:

- `module_encoder(model)`: voxlake's `WhisperVQEncoder` on a batch of one.
  The fast path (`GLM4VoiceTokenizer.tokenize`) must give exactly these
  codes: it differs only in windowing, sorting, batching and reassembly, and
  the module's kernels are shape-invariant (see `model.py`).
- `plain_encoder(state, config)`: an independent, literal transcription of
  upstream's forward pass (`reference_forward`: `torch.block_diag` mask,
  eager softmax attention with `q·scaling`, `nn.functional.conv1d`, `addmm`
  distances) over a state dict. It checks the module's arithmetic: hidden
  states agree to float rounding, and codes agree except where two codebook
  entries are tied to within that rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from transformers import WhisperFeatureExtractor

from inference.glm4voice.config import GLM4VoiceTokenizerConfig
from inference.glm4voice.features import WINDOW_SAMPLES, split_windows
from inference.glm4voice.model import WhisperVQEncoder

# (features (1, mels, frames), frame mask (1, frames)) -> (codes (1, n), valid (1, n), hidden)
Encoder = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def reference_tokenize(
    audios: Sequence[np.ndarray],
    extractor: WhisperFeatureExtractor,
    encoder: Encoder,
    samples_per_code: int,
    window_samples: int = WINDOW_SAMPLES,
) -> list[np.ndarray]:
    """Codes of each utterance (16 kHz mono float), upstream's loop with batches of one window."""
    out = []
    for audio in audios:
        codes: list[int] = []
        for window in split_windows(np.asarray(audio, dtype=np.float32), window_samples):
            features = extractor(
                [window],
                sampling_rate=extractor.sampling_rate,
                padding="longest",
                pad_to_multiple_of=samples_per_code,
                return_attention_mask=True,
                return_tensors="pt",
            )
            ids, valid, _ = encoder(features["input_features"], features["attention_mask"])
            codes.extend(ids[0][valid[0].bool()].tolist())
        out.append(np.asarray(codes, dtype=np.uint16))
    return out


def module_encoder(model: WhisperVQEncoder) -> Encoder:
    """voxlake's encoder module as a reference encoder (a batch of one window)."""

    def encode(features: torch.Tensor, frame_mask: torch.Tensor):
        with torch.inference_mode():
            output = model(features, frame_mask, return_hidden=True)
        assert output.hidden is not None
        return output.token_ids.cpu(), output.token_valid.cpu(), output.hidden.cpu()

    return encode


def plain_encoder(state: Mapping[str, torch.Tensor], config: GLM4VoiceTokenizerConfig) -> Encoder:
    """`reference_forward` over a state dict as a reference encoder."""

    def encode(features: torch.Tensor, frame_mask: torch.Tensor):
        with torch.inference_mode():
            return reference_forward(state, config, features, frame_mask)

    return encode


def _block_causal_mask(
    attention_mask: torch.Tensor, block_size: int, dtype: torch.dtype
) -> torch.Tensor:
    # upstream's get_block_causal_attention_mask, literally
    _, frames = attention_mask.shape
    causal = torch.tril(torch.ones(1, frames, frames, dtype=torch.bool))
    blocks = [causal.new_ones((min(start + block_size, frames) - start,) * 2)
              for start in range(0, frames, block_size)]
    allowed = causal | torch.block_diag(*blocks)
    allowed = allowed & attention_mask.bool()[:, None, :]
    return ((1.0 - allowed.to(dtype)) * torch.finfo(dtype).min).unsqueeze(1)


def _padding_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # transformers' get_extended_attention_mask for an encoder: keys only
    return ((1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min)


def _mask(config: GLM4VoiceTokenizerConfig, attention_mask: torch.Tensor, block_size: int | None,
          dtype: torch.dtype) -> torch.Tensor | None:
    if config.encoder_causal_attention or config.quantize_causal_encoder:
        return None  # upstream's causal layers ignore the mask and use is_causal
    if block_size is not None:
        return _block_causal_mask(attention_mask, block_size, dtype)
    return _padding_mask(attention_mask, dtype)


def _layer(state: Mapping[str, torch.Tensor], prefix: str, heads: int, x: torch.Tensor,
           mask: torch.Tensor | None) -> torch.Tensor:
    def w(name: str) -> torch.Tensor:
        return state[prefix + name]

    batch, frames, d_model = x.shape
    head_dim = d_model // heads
    residual = x
    h = F.layer_norm(x, (d_model,), w("self_attn_layer_norm.weight"),
                     w("self_attn_layer_norm.bias"), 1e-5)
    q = (h @ w("self_attn.q_proj.weight").t() + w("self_attn.q_proj.bias")) * head_dim**-0.5
    k = h @ w("self_attn.k_proj.weight").t()
    v = h @ w("self_attn.v_proj.weight").t() + w("self_attn.v_proj.bias")

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.view(batch, frames, heads, head_dim).transpose(1, 2)

    scores = split(q) @ split(k).transpose(2, 3)
    if mask is None:
        causal = torch.ones(frames, frames, dtype=torch.bool).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
    else:
        scores = scores + mask
    context = torch.softmax(scores, dim=-1) @ split(v)
    context = context.transpose(1, 2).reshape(batch, frames, d_model)
    x = residual + (context @ w("self_attn.out_proj.weight").t() + w("self_attn.out_proj.bias"))
    residual = x
    h = F.layer_norm(x, (d_model,), w("final_layer_norm.weight"), w("final_layer_norm.bias"), 1e-5)
    h = F.gelu(h @ w("fc1.weight").t() + w("fc1.bias"))
    return residual + (h @ w("fc2.weight").t() + w("fc2.bias"))


def reference_forward(
    state: Mapping[str, torch.Tensor],
    config: GLM4VoiceTokenizerConfig,
    features: torch.Tensor,
    attention_mask: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Upstream's `WhisperVQEncoder.forward` up to the codes, over an unprefixed state dict.

    features (batch, mels, frames), attention_mask (batch, frames) →
    (codes (batch, n), valid (batch, n) bool, quantiser input (batch, n, d)).
    """
    dtype = state["conv1.weight"].dtype
    x = features.to(dtype)
    for name, stride in (("conv1", 1), ("conv2", 2)):
        weight, bias = state[f"{name}.weight"], state[f"{name}.bias"]
        if config.encoder_causal_convolution:
            x = F.conv1d(F.pad(x, (2, 0)), weight, bias, stride=stride)
        else:
            x = F.conv1d(x, weight, bias, stride=stride, padding=1)
        x = F.gelu(x)
    seq_length = features.shape[-1] // 2
    x = x.permute(0, 2, 1) + state["embed_positions.weight"][:seq_length]
    mask_1d = attention_mask[:, ::2]
    block_size = config.quantize_causal_block_size
    mask = _mask(config, mask_1d, block_size, dtype)
    for index in range(config.quantize_position):
        x = _layer(state, f"layers.{index}.", config.encoder_attention_heads, x, mask)
        if index + 1 == config.pooling_position and config.pooling_kernel_size is not None:
            kernel = config.pooling_kernel_size
            x = x.permute(0, 2, 1)
            if x.shape[-1] % kernel:
                x = F.pad(x, (0, kernel - x.shape[-1] % kernel))
            pool = torch.nn.AvgPool1d(kernel) if config.pooling_type == "avg" else (
                torch.nn.MaxPool1d(kernel))
            x = pool(x).permute(0, 2, 1)
            mask_1d = mask_1d[:, ::kernel]
            block_size = None if block_size is None else block_size // kernel
            mask = _mask(config, mask_1d, block_size, dtype)
    codebook = state["codebook.weight"]
    flat = x.reshape(-1, codebook.shape[1])
    distances = torch.addmm(torch.sum(codebook**2, dim=1) + torch.sum(flat**2, dim=1, keepdim=True),
                            flat, codebook.t(), alpha=-2.0, beta=1.0)
    ids = torch.min(distances, dim=1).indices.reshape(x.shape[0], x.shape[1])
    return ids, mask_1d.bool(), x
