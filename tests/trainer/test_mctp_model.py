"""Tests for the Qwen2 + MCTP model: shapes, target offsets, layer split, freezing,
growth, overfitting and Hugging Face save/load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import Qwen2Config, Qwen2ForCausalLM

from trainer.model import IGNORE_INDEX, Qwen2MCTPConfig, Qwen2MCTPForCausalLM, shifted_targets

VOCAB = 64
TINY = {
    "vocab_size": VOCAB,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 4,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "max_position_embeddings": 128,
    "tie_word_embeddings": False,
}


def tiny_model(num_mctp_modules: int = 2, seed: int = 0) -> Qwen2MCTPForCausalLM:
    torch.manual_seed(seed)
    config = Qwen2MCTPConfig(num_mctp_modules=num_mctp_modules, **TINY)
    return Qwen2MCTPForCausalLM(config).eval()


def test_shifted_targets_offsets_and_ends() -> None:
    labels = torch.arange(10).unsqueeze(0)
    assert shifted_targets(labels, 2).tolist() == [[2, 3, 4, 5, 6, 7, 8, 9, -100, -100]]
    assert shifted_targets(labels, 3).tolist() == [[3, 4, 5, 6, 7, 8, 9, -100, -100, -100]]
    assert (shifted_targets(labels, 12) == IGNORE_INDEX).all()
    # Two packed samples of 5 tokens: targets never cross the boundary at position 5.
    positions = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3, 4]])
    assert shifted_targets(labels, 2, positions).tolist() == [
        [2, 3, 4, -100, -100, 7, 8, 9, -100, -100]
    ]


def test_shapes_and_losses_use_offsets_two_and_three() -> None:
    model = tiny_model()
    input_ids = torch.arange(10).unsqueeze(0).repeat(2, 1)
    out = model(input_ids, labels=input_ids)
    assert out.logits.shape == (2, 10, VOCAB)
    assert len(out.mctp_logits) == 2
    assert all(lg.shape == (2, 10, VOCAB) for lg in out.mctp_logits)

    def ce(logits: torch.Tensor, offset: int) -> torch.Tensor:
        # Position t of this head predicts input_ids[t + offset]; the tail has no target.
        n = 10 - offset
        return F.cross_entropy(logits[:, :n].reshape(-1, VOCAB), input_ids[:, offset:].reshape(-1))

    torch.testing.assert_close(out.main_loss, ce(out.logits, 1))
    torch.testing.assert_close(out.mctp_losses[0], ce(out.mctp_logits[0], 2))
    torch.testing.assert_close(out.mctp_losses[1], ce(out.mctp_logits[1], 3))
    expected = out.main_loss + (out.mctp_losses[0] + out.mctp_losses[1]) / 2
    torch.testing.assert_close(out.loss, expected)


def test_mctp_module_sees_only_tokens_up_to_t_plus_k_plus_1() -> None:
    """Changing token j must not change module k's logits at positions t < j - k - 1."""
    model = tiny_model()
    ids = torch.arange(10).unsqueeze(0)
    changed = ids.clone()
    changed[0, 6] = 40
    with torch.no_grad():
        a, b = model(ids), model(changed)
    for k in range(2):
        last_unaffected = 6 - k - 1  # module k at t uses tokens <= t + k + 1
        torch.testing.assert_close(
            a.mctp_logits[k][:, :last_unaffected], b.mctp_logits[k][:, :last_unaffected]
        )
        assert not torch.allclose(
            a.mctp_logits[k][:, last_unaffected], b.mctp_logits[k][:, last_unaffected]
        )


def test_backbone_runs_first_l_minus_k_layers_and_modules_the_rest() -> None:
    model = tiny_model(num_mctp_modules=2)
    calls: list[int] = []
    for index, layer in enumerate(model.model.layers):
        layer.register_forward_hook(lambda *_, i=index: calls.append(i))
    model(torch.arange(8).unsqueeze(0))
    assert model.num_backbone_layers == 2
    assert calls == [0, 1, 2, 3]  # backbone 0, 1; then module 0 -> layer 2, module 1 -> 3
    assert model.mctp_layer(0) is model.model.layers[2]


def test_mctp_only_step_changes_only_mctp_parameters() -> None:
    model = tiny_model()
    model.train()
    model.set_trainable("mctp_only")
    mctp_ids = {id(p) for p in model.mctp_parameters()}
    assert {id(p) for p in model.parameters() if p.requires_grad} == mctp_ids
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids = torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(1))
    out = model(ids, labels=ids, freeze_lm=True)
    torch.testing.assert_close(out.loss, torch.stack(out.mctp_losses).mean())
    assert out.loss.item() != pytest.approx((out.main_loss + out.loss).item())
    out.loss.backward()
    optimizer.step()
    for name, param in model.named_parameters():
        moved = not torch.equal(before[name], param.detach())
        assert moved == (id(param) in mctp_ids), name
    model.set_trainable("all")
    assert all(p.requires_grad for p in model.parameters())


def test_freeze_lm_sends_no_gradient_into_backbone() -> None:
    model = tiny_model()
    ids = torch.arange(10).unsqueeze(0)
    model(ids, labels=ids, freeze_lm=True).loss.backward()
    assert model.model.embed_tokens.weight.grad is None
    assert all(p.grad is None for p in model.model.layers[0].parameters())
    assert model.mtp_projs[0].weight.grad is not None


def test_grow_copies_previous_module() -> None:
    model = tiny_model(num_mctp_modules=1)
    model.mtp_projs[0].weight.data.normal_()
    model.mtp_embed_norms[0].weight.data.fill_(0.5)
    main_before = model(torch.arange(8).unsqueeze(0)).logits
    model.grow_mctp(3)
    assert model.config.num_mctp_modules == 3
    assert model.config.num_hidden_layers == 6
    assert len(model.config.layer_types) == 6
    for k in (1, 2):
        for new, old in (
            (model.mtp_projs[k], model.mtp_projs[0]),
            (model.mtp_embed_norms[k], model.mtp_embed_norms[0]),
            (model.mtp_hidden_norms[k], model.mtp_hidden_norms[0]),
            (model.mctp_layer(k), model.mctp_layer(0)),
        ):
            new_state, old_state = new.state_dict(), old.state_dict()
            assert new_state.keys() == old_state.keys()
            for key in new_state:
                assert torch.equal(new_state[key], old_state[key])
                assert new_state[key].data_ptr() != old_state[key].data_ptr()  # a deep copy
    out = model(torch.arange(8).unsqueeze(0))
    assert len(out.mctp_logits) == 3
    torch.testing.assert_close(out.logits, main_before)  # the backbone is untouched


@pytest.mark.parametrize("freeze_lm", [False, True])
def test_overfits_one_batch(freeze_lm: bool) -> None:
    model = tiny_model()
    model.train()
    if freeze_lm:
        # A fresh lm_head (std 0.02) after the unit-RMS final norm bounds the logits near
        # zero, so a frozen fresh head cannot fit anything; a trained LM's head is larger.
        model.lm_head.weight.data.mul_(10)
        model.set_trainable("mctp_only")
    ids = torch.randint(0, VOCAB, (2, 16), generator=torch.Generator().manual_seed(2))
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    first = model(ids, labels=ids, freeze_lm=freeze_lm)
    for _ in range(60):
        optimizer.zero_grad()
        model(ids, labels=ids, freeze_lm=freeze_lm).loss.backward()
        optimizer.step()
    last = model(ids, labels=ids, freeze_lm=freeze_lm)
    if freeze_lm:
        torch.testing.assert_close(last.main_loss, first.main_loss)
    else:
        assert last.main_loss < 0.5 * first.main_loss
    for k in range(2):
        assert last.mctp_losses[k] < 0.5 * first.mctp_losses[k], k


def test_save_load_round_trip(tmp_path: Path) -> None:
    model = tiny_model()
    ids = torch.randint(0, VOCAB, (1, 9), generator=torch.Generator().manual_seed(3))
    model.save_pretrained(tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"config.json", "model.safetensors"} <= names
    assert names <= {"config.json", "model.safetensors", "generation_config.json"}
    loaded = Qwen2MCTPForCausalLM.from_pretrained(tmp_path).eval()
    assert loaded.config.num_mctp_modules == 2
    with torch.no_grad():
        a, b = model(ids), loaded(ids)
    torch.testing.assert_close(a.logits, b.logits, rtol=0, atol=0)
    for x, y in zip(a.mctp_logits, b.mctp_logits, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_plain_qwen2_checkpoint_loads_with_no_modules(tmp_path: Path) -> None:
    torch.manual_seed(0)
    plain = Qwen2ForCausalLM(Qwen2Config(**TINY)).eval()
    plain.save_pretrained(tmp_path)
    model = Qwen2MCTPForCausalLM.from_pretrained(tmp_path).eval()
    assert model.num_mctp_modules == 0
    ids = torch.randint(0, VOCAB, (2, 11), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = plain(ids).logits
        torch.testing.assert_close(model(ids).logits, expected)
        model.grow_mctp(2)
        grown = model(ids)
    torch.testing.assert_close(grown.logits, expected)
    assert len(grown.mctp_logits) == 2
    # The grown model (L = 6 layers, K = 2) saves and reloads as such.
    model.save_pretrained(tmp_path / "grown")
    reloaded = Qwen2MCTPForCausalLM.from_pretrained(tmp_path / "grown").eval()
    assert (reloaded.config.num_hidden_layers, reloaded.num_mctp_modules) == (6, 2)
    with torch.no_grad():
        again = reloaded(ids)
    for x, y in zip(grown.mctp_logits, again.mctp_logits, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_resize_token_embeddings_for_speech_tokens() -> None:
    model = tiny_model()
    model.resize_token_embeddings(VOCAB + 16)
    assert model.config.vocab_size == VOCAB + 16
    out = model(torch.tensor([[VOCAB + 3, 1, VOCAB + 15, 2]]))
    assert out.logits.shape[-1] == VOCAB + 16
    assert out.mctp_logits[1].shape[-1] == VOCAB + 16
