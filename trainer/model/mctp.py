"""Qwen2 causal LM with VITA-Audio MCTP (multiple cross-modal token prediction) modules.

Layout (see shared/design/VITA_AUDIO_TRAINING.md, "MCTP"):

- As upstream (``Qwen2MTPForCausalLM``: backbone ``layer_idxs = range(L - K)``, module i
  on layer ``L - K + i``), ``config.num_hidden_layers`` (L) counts every decoder layer,
  the MCTP ones included;
  the backbone runs the first ``L - K`` of ``model.layers`` (K = ``num_mctp_modules``)
  and MCTP module i owns decoder layer ``model.layers[L - K + i]``. The MCTP layers are
  appended after the backbone's, so a plain Qwen2 checkpoint (K = 0) keeps all of its
  layers as backbone and ``grow_mctp`` adds new ones without shortening it.
- Module i: ``RMSNorm(embedding) ‖ RMSNorm(previous hidden state)`` →
  ``Linear(2H → H, bias=False)`` → its decoder layer → the shared final norm → the
  shared ``lm_head``. The embedding table is shared with the backbone.
- Module 0 takes the backbone's hidden state after the shared final norm, module i+1
  takes module i's output after the final norm: upstream runs every module through
  ``Qwen2Model.forward`` restricted to one layer, which ends in ``model.norm``, and
  chains ``last_hidden_state``. At position t module k pairs its input
  hidden state with the embedding of token ``t + k + 1`` and predicts token ``t + k + 2``
  (for module 0: hidden state at t with the embedding of token t+1). Positions whose
  shifted token lies past the sequence end get a zero embedding; causal attention keeps
  them from influencing earlier positions and their targets are ignored.

Parameter names follow ``Qwen2ForCausalLM`` (``model.*``, ``lm_head.*``) plus
``mtp_embed_norms``, ``mtp_hidden_norms`` and ``mtp_projs``, so checkpoints are ordinary
Hugging Face directories (``config.json`` + ``model.safetensors``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask
from transformers.models.qwen2.configuration_qwen2 import Qwen2Config
from transformers.models.qwen2.modeling_qwen2 import Qwen2ForCausalLM, Qwen2RMSNorm

IGNORE_INDEX = -100
"""Label value that carries no loss (user/system tokens, padding, positions past the end)."""

TrainableStage = Literal["all", "mctp_only"]


class Qwen2MCTPConfig(Qwen2Config):
    """``Qwen2Config`` plus the MCTP settings.

    Args:
        num_mctp_modules: K, the number of MCTP modules; the last K of the
            ``num_hidden_layers`` decoder layers belong to them.
        mctp_loss_weight: factor on the mean of the MCTP modules' cross-entropies.
        **kwargs: every ``Qwen2Config`` argument.
    """

    model_type = "qwen2_mctp"

    def __init__(
        self, num_mctp_modules: int = 0, mctp_loss_weight: float = 1.0, **kwargs: object
    ) -> None:
        # Upstream VITA-Audio configs call K `num_nextn_predict_layers`; accept their files.
        upstream_k = kwargs.pop("num_nextn_predict_layers", None)
        if upstream_k is not None and num_mctp_modules == 0:
            num_mctp_modules = int(upstream_k)  # type: ignore[arg-type]
        self.num_mctp_modules = num_mctp_modules
        self.mctp_loss_weight = mctp_loss_weight
        super().__init__(**kwargs)
        if not 0 <= num_mctp_modules < self.num_hidden_layers:
            raise ValueError(
                f"num_mctp_modules={num_mctp_modules} must lie in [0, num_hidden_layers="
                f"{self.num_hidden_layers}) so that the backbone keeps at least one layer"
            )


@dataclass
class MCTPOutput:
    """What ``Qwen2MCTPForCausalLM.forward`` returns.

    Attributes:
        logits: main head logits, (batch, seq, vocab); position t predicts token t+1.
        mctp_logits: one (batch, seq, vocab) tensor per module; module k at position t
            predicts token t+k+2.
        loss: total training loss (None without labels): main cross-entropy (absent when
            ``freeze_lm``) + ``mctp_loss_weight`` × mean of the module cross-entropies.
        main_loss: main head cross-entropy in nats per target token (None without labels).
        mctp_losses: per-module cross-entropies in nats per target token.
    """

    logits: torch.Tensor
    mctp_logits: list[torch.Tensor] = field(default_factory=list)
    loss: torch.Tensor | None = None
    main_loss: torch.Tensor | None = None
    mctp_losses: list[torch.Tensor] = field(default_factory=list)


def shifted_targets(
    labels: torch.Tensor, offset: int, position_ids: torch.Tensor | None = None
) -> torch.Tensor:
    """Targets for a head that predicts the token ``offset`` positions ahead.

    ``target[b, t] = labels[b, t + offset]``; positions with ``t + offset`` past the end
    get ``IGNORE_INDEX``. When ``position_ids`` are given (packed samples whose positions
    restart at 0), a target is kept only if ``position_ids[t + offset] ==
    position_ids[t] + offset``, i.e. it lies in the same packed sample.

    Args:
        labels: (batch, seq) token ids, ``IGNORE_INDEX`` where untrained.
        offset: how many tokens ahead the head predicts (1 for the main head, k+2 for
            MCTP module k).
        position_ids: optional (batch, seq) or (1, seq) positions.
    """
    targets = torch.full_like(labels, IGNORE_INDEX)
    seq_len = labels.shape[1]
    if offset >= seq_len:
        return targets
    targets[:, : seq_len - offset] = labels[:, offset:]
    if position_ids is not None:
        position_ids = position_ids.expand_as(labels)
        same_sample = position_ids[:, offset:] - position_ids[:, : seq_len - offset] == offset
        targets[:, : seq_len - offset] = targets[:, : seq_len - offset].masked_fill(
            ~same_sample, IGNORE_INDEX
        )
    return targets


def _token_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy in nats over targets that are not ``IGNORE_INDEX`` (0 if none)."""
    total = F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    count = (targets != IGNORE_INDEX).sum().clamp(min=1)
    return total / count


def _shift_embeddings_left(embeds: torch.Tensor, shift: int) -> torch.Tensor:
    """``out[:, t] = embeds[:, t + shift]``, zeros where ``t + shift`` is past the end."""
    out = torch.zeros_like(embeds)
    if shift < embeds.shape[1]:
        out[:, : embeds.shape[1] - shift] = embeds[:, shift:]
    return out


class Qwen2MCTPForCausalLM(Qwen2ForCausalLM):
    """Qwen2 causal LM whose last K decoder layers serve K chained MCTP modules.

    Inherits ``save_pretrained``/``from_pretrained`` (safetensors), and
    ``resize_token_embeddings`` from ``transformers``; a plain ``Qwen2ForCausalLM``
    directory loads with K = 0 and gives the same logits as transformers' own model.
    """

    config_class = Qwen2MCTPConfig
    config: Qwen2MCTPConfig

    def __init__(self, config: Qwen2Config) -> None:
        if not isinstance(config, Qwen2MCTPConfig):
            config = Qwen2MCTPConfig(**config.to_dict())
        super().__init__(config)
        hidden_size, eps = config.hidden_size, config.rms_norm_eps
        num_modules = config.num_mctp_modules
        self.mtp_embed_norms = nn.ModuleList(
            [Qwen2RMSNorm(hidden_size, eps=eps) for _ in range(num_modules)]
        )
        self.mtp_hidden_norms = nn.ModuleList(
            [Qwen2RMSNorm(hidden_size, eps=eps) for _ in range(num_modules)]
        )
        self.mtp_projs = nn.ModuleList(
            [nn.Linear(2 * hidden_size, hidden_size, bias=False) for _ in range(num_modules)]
        )
        self.post_init()

    @property
    def num_mctp_modules(self) -> int:
        """K, the number of MCTP modules."""
        return self.config.num_mctp_modules

    @property
    def num_backbone_layers(self) -> int:
        """L − K, the decoder layers the backbone (main head) runs."""
        return self.config.num_hidden_layers - self.config.num_mctp_modules

    def mctp_layer(self, index: int) -> nn.Module:
        """The decoder layer of MCTP module ``index`` (``model.layers[L − K + index]``)."""
        return self.model.layers[self.num_backbone_layers + index]

    def mctp_parameters(self) -> list[nn.Parameter]:
        """Parameters that belong to MCTP modules only (norms, projections, their layers)."""
        modules: list[nn.Module] = [self.mtp_embed_norms, self.mtp_hidden_norms, self.mtp_projs]
        modules += [self.mctp_layer(i) for i in range(self.num_mctp_modules)]
        return [p for m in modules for p in m.parameters()]

    def set_trainable(self, stage: TrainableStage) -> None:
        """Set ``requires_grad`` for a training stage.

        ``"all"``: every parameter trains (stages 1 and 4). ``"mctp_only"``: the LM is
        frozen (embeddings, backbone layers, final norm, ``lm_head``) and only MCTP module
        parameters train (stages 2 and 3); pair it with ``forward(freeze_lm=True)``.
        """
        if stage not in ("all", "mctp_only"):
            raise ValueError(f"unknown trainable stage {stage!r}; use 'all' or 'mctp_only'")
        for param in self.parameters():
            param.requires_grad_(stage == "all")
        for param in self.mctp_parameters():
            param.requires_grad_(True)

    @torch.no_grad()
    def grow_mctp(self, new_num_modules: int) -> None:
        """Grow from K to ``new_num_modules`` MCTP modules; existing modules are kept.

        A missing module k is a deep copy of module k−1 (norms, projection and decoder
        layer), as upstream does when stage 3 grows from 1 to 10 modules. Module 0, when
        K = 0, gets fresh norms (ones), a freshly initialised projection (normal,
        ``initializer_range``) and a copy of the last backbone decoder layer. New decoder
        layers are appended, so ``num_hidden_layers`` grows and the backbone is unchanged.
        """
        old = self.num_mctp_modules
        if new_num_modules < old:
            raise ValueError(f"cannot shrink MCTP modules from {old} to {new_num_modules}")
        ref = next(self.parameters())
        for k in range(old, new_num_modules):
            if k == 0:
                hidden_size, eps = self.config.hidden_size, self.config.rms_norm_eps
                embed_norm = Qwen2RMSNorm(hidden_size, eps=eps)
                hidden_norm = Qwen2RMSNorm(hidden_size, eps=eps)
                proj = nn.Linear(2 * hidden_size, hidden_size, bias=False)
                proj.weight.normal_(mean=0.0, std=self.config.initializer_range)
            else:
                embed_norm = copy.deepcopy(self.mtp_embed_norms[k - 1])
                hidden_norm = copy.deepcopy(self.mtp_hidden_norms[k - 1])
                proj = copy.deepcopy(self.mtp_projs[k - 1])
            # The last layer is module k-1's when k > 0, the last backbone layer when k == 0.
            layer = copy.deepcopy(self.model.layers[-1])
            layer.self_attn.layer_idx = len(self.model.layers)
            self.mtp_embed_norms.append(embed_norm.to(device=ref.device, dtype=ref.dtype))
            self.mtp_hidden_norms.append(hidden_norm.to(device=ref.device, dtype=ref.dtype))
            self.mtp_projs.append(proj.to(device=ref.device, dtype=ref.dtype))
            self.model.layers.append(layer.to(device=ref.device, dtype=ref.dtype))
            self.config.layer_types = [*self.config.layer_types, self.config.layer_types[-1]]
            self.config.num_hidden_layers += 1
            self.config.num_mctp_modules += 1

    def _attention_masks(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor | None,
        position_ids: torch.Tensor,
    ) -> dict[str, torch.Tensor | None]:
        """Causal masks per layer type, built as ``Qwen2Model.forward`` builds them."""
        mask_kwargs = {
            "config": self.config,
            "inputs_embeds": inputs_embeds,
            "attention_mask": attention_mask,
            "past_key_values": None,
            "position_ids": position_ids,
        }
        masks = {"full_attention": create_causal_mask(**mask_kwargs)}
        if "sliding_attention" in self.config.layer_types:
            masks["sliding_attention"] = create_sliding_window_causal_mask(**mask_kwargs)
        return masks

    def forward(  # type: ignore[override]
        self,
        input_ids: torch.LongTensor,
        labels: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        freeze_lm: bool = False,
    ) -> MCTPOutput:
        """Run the backbone and every MCTP module; compute losses when ``labels`` are given.

        Args:
            input_ids: (batch, seq) token ids.
            labels: (batch, seq) token ids aligned with ``input_ids`` (not pre-shifted),
                ``IGNORE_INDEX`` where untrained. The main head's target at t is
                ``labels[t+1]``, module k's is ``labels[t+k+2]``.
            attention_mask: optional (batch, seq) padding mask, 1 = real token.
            position_ids: optional (batch, seq) positions; packed samples restart at 0,
                which also keeps targets from crossing sample boundaries.
            freeze_lm: run embeddings and backbone without gradient (outputs detached)
                and drop the main loss, as upstream does with the LM frozen. The shared
                final norm and ``lm_head`` stay in the graph so MCTP modules get
                gradients; whether they update is ``set_trainable``'s business.
        """
        if freeze_lm and self.num_mctp_modules == 0:
            raise ValueError("freeze_lm=True needs at least one MCTP module to train")
        seq_len = input_ids.shape[1]
        if position_ids is None:
            position_ids = torch.arange(seq_len, device=input_ids.device).unsqueeze(0)
        layers = self.model.layers
        with torch.set_grad_enabled(torch.is_grad_enabled() and not freeze_lm):
            embeds = self.model.embed_tokens(input_ids)
            masks = self._attention_masks(embeds, attention_mask, position_ids)
            position_embeddings = self.model.rotary_emb(embeds, position_ids)
            hidden = embeds
            for i in range(self.num_backbone_layers):
                hidden = layers[i](
                    hidden,
                    attention_mask=masks[self.config.layer_types[i]],
                    position_embeddings=position_embeddings,
                    position_ids=position_ids,
                )
            hidden = self.model.norm(hidden)
            logits = self.lm_head(hidden)
        if freeze_lm:
            embeds, hidden = embeds.detach(), hidden.detach()

        mctp_logits: list[torch.Tensor] = []
        for k in range(self.num_mctp_modules):
            layer_index = self.num_backbone_layers + k
            next_embeds = _shift_embeddings_left(embeds, k + 1)
            fused = torch.cat(
                [self.mtp_embed_norms[k](next_embeds), self.mtp_hidden_norms[k](hidden)], dim=-1
            )
            hidden = layers[layer_index](
                self.mtp_projs[k](fused),
                attention_mask=masks[self.config.layer_types[layer_index]],
                position_embeddings=position_embeddings,
                position_ids=position_ids,
            )
            hidden = self.model.norm(hidden)
            mctp_logits.append(self.lm_head(hidden))

        output = MCTPOutput(logits=logits, mctp_logits=mctp_logits)
        if labels is None:
            return output
        output.main_loss = _token_cross_entropy(logits, shifted_targets(labels, 1, position_ids))
        output.mctp_losses = [
            _token_cross_entropy(head_logits, shifted_targets(labels, k + 2, position_ids))
            for k, head_logits in enumerate(mctp_logits)
        ]
        loss = logits.new_zeros((), dtype=torch.float32)
        if not freeze_lm:
            loss = loss + output.main_loss
        if output.mctp_losses:
            mean_mctp = torch.stack(output.mctp_losses).mean()
            loss = loss + self.config.mctp_loss_weight * mean_mctp
        output.loss = loss
        return output


# Make `AutoConfig`/`AutoModelForCausalLM` (and `AutoTokenizer`, which reads config.json)
# recognise exported checkpoints.
AutoConfig.register(Qwen2MCTPConfig.model_type, Qwen2MCTPConfig, exist_ok=True)
AutoModelForCausalLM.register(Qwen2MCTPConfig, Qwen2MCTPForCausalLM, exist_ok=True)
