"""Greedy decoding with VITA-Audio's MCTP schedules (Vanilla, Balance, Boost, Turbo).

A model with K MCTP modules (``trainer.model.Qwen2MCTPForCausalLM``, or anything with
the same attributes, see `MCTPCausalLM`) can emit a token in two ways:

- ``M`` (backbone step): run the first ``L - K`` decoder layers over every token the
  backbone has not seen yet (the last emitted one, plus any emitted by MCTP steps since
  the previous ``M``) and take the main head's argmax at the last position.
- ``m`` (MCTP step): run one MCTP module only; its token is emitted without
  verification. After an ``M`` step the module index resets, and consecutive ``m``
  steps use modules 0, 1, 2, … Module k pairs the hidden state stored for the last
  backbone position p (the backbone's for k = 0, module k−1's output otherwise) with the
  embedding of the token just emitted (token p + k + 1) and predicts token p + k + 2, as
  ``Qwen2MCTPForCausalLM.forward`` does at position p during training.

Every decoder layer, the MCTP ones included, keeps its own KV cache (one
``transformers.DynamicCache`` over all L layers). An MCTP layer is run only when its
module is used, so before its new position it first catches up on every position it
has not seen, from the hidden states stored for it, in the same forward. Positions
(rotary embeddings) are the hidden-state positions t, as in our training forward;
upstream uses t + k + 1 for module k, which gives the same attention scores because
rotary attention depends only on position differences.

A schedule ``[main_0, mtp_0, main_1, mtp_1, …]`` expands to an ``M``/``m`` string as
upstream's ``_prepare_mtp_for_generation`` does (`expand_schedule`); character i is
the kind of step that emits new token i. The first token always comes from the prompt's
prefill, a backbone pass.

Batch size 1 only, greedy only. Put the model in ``eval()`` mode first.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn
from transformers import DynamicCache, PretrainedConfig
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

SCHEDULES: dict[str, list[int]] = {
    "vanilla": [8192, 0],
    "balance": [1, 4, 3, 8, 4, 10],
    "boost": [1, 10, 4, 10],
    "turbo": [1, 10],
}
"""Upstream's named schedules ``[main_0, mtp_0, main_1, mtp_1, …]``: each pair is that
many backbone steps, then that many MCTP steps; the last pair repeats."""

BACKBONE_STEP = "M"
MCTP_STEP = "m"


class DecoderStack(Protocol):
    """What `generate` uses of ``model.model`` (a ``transformers`` ``Qwen2Model``)."""

    @property
    def embed_tokens(self) -> nn.Module: ...  # token ids -> (1, n, H)

    @property
    def layers(self) -> nn.ModuleList: ...  # L Qwen2 decoder layers, MCTP layers last

    @property
    def norm(self) -> nn.Module: ...  # the shared final RMSNorm

    @property
    def rotary_emb(self) -> nn.Module: ...  # (x, position_ids) -> (cos, sin)


class MCTPCausalLM(Protocol):
    """The interface `generate` needs: the attributes of ``Qwen2MCTPForCausalLM``.

    ``config`` is a ``transformers`` config with ``num_hidden_layers`` (L, MCTP layers
    included), ``layer_types`` (``"full_attention"``/``"sliding_attention"`` per layer),
    ``num_mctp_modules`` (K; read as 0 when absent) and the attention implementation.
    Module i owns ``model.layers[L - K + i]``, ``mtp_embed_norms[i]``,
    ``mtp_hidden_norms[i]`` and ``mtp_projs[i]`` (``Linear(2H → H)``); ``lm_head`` and
    ``model.norm`` are shared. A model with K = 0 (e.g. a plain ``Qwen2ForCausalLM``) needs
    no ``mtp_*`` lists.
    """

    @property
    def config(self) -> PretrainedConfig: ...

    @property
    def model(self) -> DecoderStack: ...

    @property
    def lm_head(self) -> nn.Module: ...

    @property
    def mtp_embed_norms(self) -> nn.ModuleList: ...

    @property
    def mtp_hidden_norms(self) -> nn.ModuleList: ...

    @property
    def mtp_projs(self) -> nn.ModuleList: ...


@dataclass
class GenerationResult:
    """What `generate` returns.

    Attributes:
        tokens: the new tokens (prompt excluded), the eos token included when it stopped.
        step_kinds: ``"M"`` (backbone) or ``"m"`` (MCTP module) per token.
        token_times_s: wall-clock seconds of the step that emitted each token; token 0 is
            emitted by the prefill, so ``token_times_s[0] == prefill_s``.
        prefill_s: seconds of the prompt's forward pass, which emits token 0.
        tokens_per_s: decode throughput: tokens 1.. over their summed times (the prefill
            excluded); NaN with fewer than two tokens.
        logits: with ``output_logits=True``, the (vocab,) float32 CPU logits each token
            was taken from (main head for ``M``, module k's head for ``m``).
    """

    tokens: list[int]
    step_kinds: str
    token_times_s: list[float]
    prefill_s: float
    tokens_per_s: float
    logits: list[torch.Tensor] = field(default_factory=list)


def _validate_schedule(schedule: Sequence[int]) -> list[int]:
    values = list(schedule)
    if len(values) < 2 or len(values) % 2:
        raise ValueError(
            f"schedule {values} must be [main_0, mtp_0, main_1, mtp_1, ...]: an even number "
            "(at least 2) of step counts"
        )
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in values):
        raise ValueError(f"schedule {values} must hold non-negative integers")
    if values[-2] < 1:
        # The last pair repeats forever: without a backbone step in it, generation would
        # loop forever (0, 0) or run MCTP modules without end (0, n).
        raise ValueError(
            f"schedule {values}: the last pair repeats, so its backbone count must be >= 1"
        )
    first_main = next(
        main for main, mtp in zip(values[::2], values[1::2], strict=True) if main or mtp
    )
    if first_main < 1:
        raise ValueError(
            f"schedule {values} starts with an MCTP step; the first token comes from the "
            "prompt's prefill, a backbone step"
        )
    return values


def expand_schedule(schedule: Sequence[int], max_new_tokens: int) -> str:
    """The ``M``/``m`` string of a schedule: character i is the step that emits token i.

    Upstream's expansion (``_prepare_mtp_for_generation``): pairs ``(main_j, mtp_j)`` are
    taken in order, each giving ``"M" * main_j + "m" * mtp_j``, while more than one pair
    is left; the last pair then repeats until ``max_new_tokens`` characters are covered.
    Upstream keeps the overshoot of the last repetition; it is never read, and this
    function cuts the string to ``max_new_tokens`` characters.

    Checks the schedule's shape only (even length >= 2, non-negative counts, first step a
    backbone step, a backbone step in the repeating last pair); whether a model has
    enough MCTP modules for the schedule's longest ``m`` run is `check_schedule_fits`'s
    business, which `generate` calls with the model's K.

    Raises:
        ValueError: on a malformed schedule or a negative ``max_new_tokens``.
    """
    values = _validate_schedule(schedule)
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 0")
    pairs = list(zip(values[::2], values[1::2], strict=True))
    parts: list[str] = []
    length = 0
    while length < max_new_tokens:
        main, mtp = pairs.pop(0) if len(pairs) > 1 else pairs[0]
        parts.append(BACKBONE_STEP * min(main, max_new_tokens - length) + MCTP_STEP * mtp)
        length += main + mtp
    return "".join(parts)[:max_new_tokens]


def longest_mctp_run(schedule: Sequence[int]) -> int:
    """Longest run of consecutive ``m`` steps anywhere in the schedule's expansion.

    Pairs with a zero backbone count merge their MCTP runs with the previous pair's, so
    this is not simply ``max(mtp_j)``. Independent of ``max_new_tokens``.
    """
    values = _validate_schedule(schedule)
    # Every pair but the last appears once; after that the last pair (backbone count
    # >= 1) repeats, so one repetition shows every run there is.
    kinds = expand_schedule(values, sum(values) + values[-2] + values[-1])
    return max((len(run) for run in kinds.split(BACKBONE_STEP)), default=0)


def check_schedule_fits(schedule: Sequence[int], num_mctp_modules: int) -> None:
    """Raise ``ValueError`` when the schedule needs more MCTP modules than the model has.

    A run of n consecutive ``m`` steps uses modules 0 … n−1, so it needs n <= K. Checked
    on the whole schedule, not on the part a short generation would reach, so a schedule
    that cannot run on a model is refused whatever ``max_new_tokens`` is. (Upstream, on a
    run longer than K, silently runs the backbone instead.)
    """
    needed = longest_mctp_run(schedule)
    if needed > num_mctp_modules:
        raise ValueError(
            f"schedule {list(schedule)} has {needed} consecutive MCTP steps, but the model "
            f"has {num_mctp_modules} MCTP module(s)"
        )


def resolve_schedule(schedule: Sequence[int] | str) -> list[int]:
    """A schedule given by name (a key of `SCHEDULES`) or as a list of counts."""
    if isinstance(schedule, str):
        try:
            return list(SCHEDULES[schedule])
        except KeyError:
            raise ValueError(
                f"unknown schedule {schedule!r}; named schedules: {sorted(SCHEDULES)}"
            ) from None
    return list(schedule)


class _CachedDecoder:
    """KV caches and stored hidden states of one generation (batch size 1).

    ``pending[k]`` holds the (1, n, H) hidden states that MCTP module k has not consumed
    yet, for positions ``module_seen[k] … module_seen[k] + n − 1``: the backbone's
    (post-final-norm) for k = 0, module k−1's (post-final-norm) otherwise.
    """

    def __init__(self, model: MCTPCausalLM, input_ids: torch.Tensor, max_new_tokens: int):
        self.model = model
        self.config = model.config
        self.num_modules = int(getattr(self.config, "num_mctp_modules", 0))
        self.num_backbone = self.config.num_hidden_layers - self.num_modules
        self.layer_types = list(self.config.layer_types)
        self.cache = DynamicCache(config=self.config)
        prompt_len = input_ids.shape[1]
        self.ids = torch.empty(
            (1, prompt_len + max_new_tokens), dtype=torch.long, device=input_ids.device
        )
        self.ids[:, :prompt_len] = input_ids
        self.length = prompt_len
        self.backbone_seen = 0
        self.module_seen = [0] * self.num_modules
        self.pending: list[torch.Tensor | None] = [None] * self.num_modules
        # One mask per layer type serves every backbone layer: they all hold the same length.
        self.backbone_mask_layer = {
            kind: self.layer_types.index(kind)
            for kind in set(self.layer_types[: self.num_backbone])
        }

    def append(self, token: torch.Tensor) -> None:
        self.ids[:, self.length] = token
        self.length += 1

    def _mask(
        self, layer_idx: int, embeds: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor | None:
        """Causal mask for new queries at ``positions`` of layer ``layer_idx``, sized by
        what that layer's cache holds (called before the layer adds the new keys)."""
        kwargs = {
            "config": self.config,
            "inputs_embeds": embeds,
            "attention_mask": None,
            "past_key_values": self.cache,
            "position_ids": positions,
            "layer_idx": layer_idx,
        }
        kind = self.layer_types[layer_idx]
        if kind == "full_attention":
            return create_causal_mask(**kwargs)
        if kind == "sliding_attention":
            return create_sliding_window_causal_mask(**kwargs)
        raise ValueError(f"unsupported layer type {kind!r} of layer {layer_idx}")

    def _run_layer(
        self, layer_idx: int, hidden: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        stack = self.model.model
        return stack.layers[layer_idx](
            hidden,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=self.cache,
            use_cache=True,
            position_embeddings=stack.rotary_emb(hidden, positions),
        )

    def backbone_step(self) -> torch.Tensor:
        """Catch the backbone up on every unseen token; main-head logits (1, vocab) at the
        last one."""
        stack = self.model.model
        start, end = self.backbone_seen, self.length
        positions = torch.arange(start, end, device=self.ids.device).unsqueeze(0)
        hidden = stack.embed_tokens(self.ids[:, start:end])
        masks = {
            kind: self._mask(layer_idx, hidden, positions)
            for kind, layer_idx in self.backbone_mask_layer.items()
        }
        position_embeddings = stack.rotary_emb(hidden, positions)
        for layer_idx in range(self.num_backbone):
            hidden = stack.layers[layer_idx](
                hidden,
                attention_mask=masks[self.layer_types[layer_idx]],
                position_ids=positions,
                past_key_values=self.cache,
                use_cache=True,
                position_embeddings=position_embeddings,
            )
        hidden = stack.norm(hidden)
        self.backbone_seen = end
        self._store(0, hidden)
        return self.model.lm_head(hidden[:, -1])

    def mctp_step(self, k: int) -> torch.Tensor:
        """Run module k over the positions it has not seen (up to the last backbone
        position p); its logits (1, vocab) at p, which predict token p + k + 2."""
        stack = self.model.model
        previous = self.pending[k]
        start = self.module_seen[k]
        if previous is None or start + previous.shape[1] != self.backbone_seen:
            raise RuntimeError(f"MCTP module {k} has no hidden states up to the backbone's")
        end = self.backbone_seen
        if self.length != end + k + 1:
            raise RuntimeError(f"MCTP module {k} needs token {end + k} to be the last emitted")
        embeds = stack.embed_tokens(self.ids[:, start + k + 1 : end + k + 1])
        fused = torch.cat(
            [self.model.mtp_embed_norms[k](embeds), self.model.mtp_hidden_norms[k](previous)],
            dim=-1,
        )
        hidden = self.model.mtp_projs[k](fused)
        positions = torch.arange(start, end, device=self.ids.device).unsqueeze(0)
        layer_idx = self.num_backbone + k
        mask = self._mask(layer_idx, hidden, positions)
        hidden = stack.norm(self._run_layer(layer_idx, hidden, positions, mask))
        self.module_seen[k] = end
        self.pending[k] = None
        self._store(k + 1, hidden)
        return self.model.lm_head(hidden[:, -1])

    def _store(self, k: int, hidden: torch.Tensor) -> None:
        """Keep hidden states for module k (nothing to keep past the last module)."""
        if k >= self.num_modules:
            return
        previous = self.pending[k]
        self.pending[k] = hidden if previous is None else torch.cat([previous, hidden], dim=1)


def generate(
    model: MCTPCausalLM,
    input_ids: torch.Tensor,
    *,
    max_new_tokens: int,
    schedule: Sequence[int] | str,
    eos_token_ids: Iterable[int] = (),
    output_logits: bool = False,
) -> GenerationResult:
    """Greedy decoding that follows an MCTP schedule.

    Args:
        model: a ``Qwen2MCTPForCausalLM`` or any object with its attributes
            (`MCTPCausalLM`), in eval mode.
        input_ids: (1, prompt_len) token ids, prompt_len >= 1; batch size 1 only.
        max_new_tokens: most tokens to emit.
        schedule: ``[main_0, mtp_0, …]`` or a name from `SCHEDULES`. With ``"vanilla"``
            (or K = 0 and any all-backbone schedule) this is ordinary greedy decoding.
        eos_token_ids: stop after emitting any of these (the eos token is kept).
        output_logits: also return the logits each token was taken from.

    Raises:
        ValueError: batch size other than 1, an empty prompt, a malformed schedule, or
            a schedule with more consecutive MCTP steps than the model has modules.
    """
    if input_ids.ndim != 2 or input_ids.shape[0] != 1:
        raise ValueError(
            f"input_ids must have shape (1, prompt_len); got {tuple(input_ids.shape)} "
            "(batch size 1 only)"
        )
    if input_ids.shape[1] < 1:
        raise ValueError("input_ids must hold at least one prompt token")
    counts = resolve_schedule(schedule)
    kinds = expand_schedule(counts, max_new_tokens)
    check_schedule_fits(counts, int(getattr(model.config, "num_mctp_modules", 0)))
    eos = {int(t) for t in eos_token_ids}

    tokens: list[int] = []
    times: list[float] = []
    kept_logits: list[torch.Tensor] = []
    with torch.inference_mode():
        decoder = _CachedDecoder(model, input_ids.long(), max_new_tokens)
        module = 0
        for kind in kinds:
            started = time.perf_counter()
            if kind == BACKBONE_STEP:
                logits = decoder.backbone_step()
                module = 0
            else:
                logits = decoder.mctp_step(module)
                module += 1
            next_id = logits.argmax(dim=-1)
            decoder.append(next_id)
            token = int(next_id.item())  # waits for the device: the time covers the step
            times.append(time.perf_counter() - started)
            tokens.append(token)
            if output_logits:
                kept_logits.append(logits[0].float().cpu())
            if token in eos:
                break

    decode_s = sum(times[1:])
    return GenerationResult(
        tokens=tokens,
        step_kinds=kinds[: len(tokens)],
        token_times_s=times,
        prefill_s=times[0] if times else 0.0,
        tokens_per_s=(len(tokens) - 1) / decode_s if len(tokens) > 1 and decode_s > 0 else math.nan,
        logits=kept_logits,
    )
