"""Tests for MCTP schedule decoding (`inference.generate`): schedule expansion, agreement
with transformers' greedy decoding, and agreement of every cached MCTP step with the
full-sequence training forward."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from inference.generate import (
    SCHEDULES,
    check_schedule_fits,
    expand_schedule,
    generate,
    longest_mctp_run,
)
from trainer.model import Qwen2MCTPConfig, Qwen2MCTPForCausalLM

VOCAB = 64
TINY = {
    "vocab_size": VOCAB,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 5,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "tie_word_embeddings": False,
}
SLIDING = {"use_sliding_window": True, "sliding_window": 4, "max_window_layers": 1}


def tiny_model(
    num_mctp_modules: int = 3, seed: int = 0, dtype: torch.dtype = torch.float64, **extra: object
) -> Qwen2MCTPForCausalLM:
    """A tiny random model with weights large enough for varied (non-repeating) tokens;
    float64 so that argmax comparisons cannot flip on rounding."""
    torch.manual_seed(seed)
    model = Qwen2MCTPForCausalLM(
        Qwen2MCTPConfig(num_mctp_modules=num_mctp_modules, **TINY, **extra)
    )
    with torch.no_grad():
        for param in model.parameters():
            if param.ndim > 1:
                param.normal_(0.0, 0.5)
    return model.to(dtype).eval()


def prompt(length: int = 7, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (1, length), generator=torch.Generator().manual_seed(seed))


def backbone_only(model: Qwen2MCTPForCausalLM) -> Qwen2ForCausalLM:
    """A plain transformers Qwen2ForCausalLM holding just the model's backbone (L − K layers)."""
    config = Qwen2Config(**{**TINY, "num_hidden_layers": model.num_backbone_layers})
    reference = Qwen2ForCausalLM(config).to(model.dtype).eval()
    missing, unexpected = reference.load_state_dict(model.state_dict(), strict=False)
    assert not missing
    assert all(
        key.startswith("mtp_") or int(key.split(".")[2]) >= model.num_backbone_layers
        for key in unexpected
    )
    return reference


def hf_greedy(model: Qwen2ForCausalLM, ids: torch.Tensor, max_new_tokens: int, **kw) -> list[int]:
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=0,
        **kw,
    )
    return out[0, ids.shape[1] :].tolist()


# --- schedules -------------------------------------------------------------------------------


def test_expand_named_schedules() -> None:
    assert expand_schedule(SCHEDULES["vanilla"], 6) == "MMMMMM"
    assert expand_schedule(SCHEDULES["turbo"], 25) == "Mmmmmmmmmmm" + "Mmmmmmmmmmm" + "Mmm"
    assert expand_schedule(SCHEDULES["boost"], 30) == ("Mmmmmmmmmmm" + "MMMMmmmmmmmmmm" + "MMMMm")
    assert expand_schedule(SCHEDULES["balance"], 35) == (
        "Mmmmm" + "MMMmmmmmmmm" + "MMMMmmmmmmmmmm" + "MMMMm"
    )
    assert expand_schedule(SCHEDULES["boost"], 3) == "Mmm"
    assert expand_schedule(SCHEDULES["balance"], 0) == ""
    assert len(expand_schedule(SCHEDULES["vanilla"], 10_000)) == 10_000


def test_expand_zero_counts_merge_runs() -> None:
    # A pair with no backbone step extends the previous MCTP run.
    assert expand_schedule([1, 2, 0, 3, 2, 1], 12) == "Mmm" + "mmm" + "MMm" + "MMm"
    assert longest_mctp_run([1, 2, 0, 3, 2, 1]) == 5
    assert expand_schedule([0, 0, 1, 1], 4) == "MmMm"


def test_longest_runs_of_named_schedules() -> None:
    runs = {name: longest_mctp_run(schedule) for name, schedule in SCHEDULES.items()}
    assert runs == {"vanilla": 0, "balance": 10, "boost": 10, "turbo": 10}
    check_schedule_fits(SCHEDULES["boost"], 10)
    with pytest.raises(ValueError, match="10 consecutive MCTP steps"):
        check_schedule_fits(SCHEDULES["boost"], 9)


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ([], "even number"),
        ([1, 2, 3], "even number"),
        ([1, -1], "non-negative"),
        ([1.0, 2], "non-negative"),
        ([1, 4, 0, 4], "last pair"),
        ([0, 0], "last pair"),
        ([0, 3, 1, 1], "starts with an MCTP step"),
    ],
)
def test_malformed_schedules_are_refused(schedule: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        expand_schedule(schedule, 8)


def test_schedule_longer_than_k_and_bad_inputs_are_refused() -> None:
    model = tiny_model(num_mctp_modules=3)
    ids = prompt()
    with pytest.raises(ValueError, match="has 3 MCTP module"):
        generate(model, ids, max_new_tokens=2, schedule="turbo")  # refused even if short
    with pytest.raises(ValueError, match="batch size 1"):
        generate(model, ids.repeat(2, 1), max_new_tokens=2, schedule="vanilla")
    with pytest.raises(ValueError, match="at least one"):
        generate(model, ids[:, :0], max_new_tokens=2, schedule="vanilla")
    with pytest.raises(ValueError, match="unknown schedule"):
        generate(model, ids, max_new_tokens=2, schedule="warp")
    empty = generate(model, ids, max_new_tokens=0, schedule="vanilla")
    assert empty.tokens == [] and empty.step_kinds == "" and empty.token_times_s == []


# --- agreement with transformers and with the training forward --------------------------------


@pytest.mark.parametrize("num_mctp_modules", [0, 2])
def test_vanilla_equals_transformers_greedy(num_mctp_modules: int) -> None:
    model = tiny_model(num_mctp_modules=num_mctp_modules, dtype=torch.float32)
    reference = backbone_only(model)
    ids = prompt(length=9)
    expected = hf_greedy(reference, ids, 24)
    assert len(set(expected)) > 5  # not a degenerate repetition
    result = generate(model, ids, max_new_tokens=24, schedule="vanilla")
    assert result.tokens == expected
    assert result.step_kinds == "M" * 24
    # Any object with the interface works, transformers' own model (K = 0) included.
    assert generate(reference, ids, max_new_tokens=24, schedule=[1, 0]).tokens == expected


def test_sliding_window_vanilla_equals_transformers_greedy() -> None:
    model = tiny_model(num_mctp_modules=0, dtype=torch.float32, **SLIDING)
    assert "sliding_attention" in model.config.layer_types
    reference = Qwen2ForCausalLM(Qwen2Config(**TINY, **SLIDING)).eval()
    reference.load_state_dict(model.state_dict())
    ids = prompt(length=9)
    assert generate(model, ids, max_new_tokens=20, schedule="vanilla").tokens == hf_greedy(
        reference, ids, 20
    )


def check_against_training_forward(
    model: Qwen2MCTPForCausalLM, ids: torch.Tensor, schedule: list[int], max_new_tokens: int
) -> str:
    """Every token generate emits equals the training forward's argmax at the right
    position over the same sequence, and so do the logits it came from."""
    result = generate(
        model, ids, max_new_tokens=max_new_tokens, schedule=schedule, output_logits=True
    )
    assert len(result.tokens) == max_new_tokens
    with torch.no_grad():
        full = model(torch.cat([ids, torch.tensor([result.tokens])], dim=1))
    prompt_len, module = ids.shape[1], 0
    for i, (kind, token) in enumerate(zip(result.step_kinds, result.tokens, strict=True)):
        position = prompt_len + i  # of the emitted token in the full sequence
        if kind == "M":
            module = 0
            expected = full.logits[0, position - 1]
        else:
            # Module k at hidden position p predicts token p + k + 2.
            expected = full.mctp_logits[module][0, position - module - 2]
            module += 1
        torch.testing.assert_close(result.logits[i], expected.float(), rtol=1e-6, atol=1e-6)
        assert int(expected.argmax()) == token, (i, kind)
    return result.step_kinds


@pytest.mark.parametrize(
    ("extra", "schedule"),
    [({}, [1, 3]), ({}, [2, 1, 1, 2, 3, 3]), ({}, [1, 0, 1, 3]), (SLIDING, [1, 2, 2, 3])],
)
def test_mctp_steps_match_training_forward(extra: dict, schedule: list[int]) -> None:
    model = tiny_model(num_mctp_modules=3, **extra)
    kinds = check_against_training_forward(model, prompt(), schedule, 30)
    assert kinds == expand_schedule(schedule, 30)
    assert "m" in kinds


def test_catch_up_gives_full_forward_backbone_logits() -> None:
    """An M step after three m steps feeds four tokens to the backbone at once; its logits
    equal a full forward over the whole prefix."""
    model = tiny_model(num_mctp_modules=3)
    ids = prompt()
    result = generate(model, ids, max_new_tokens=13, schedule=[1, 3], output_logits=True)
    assert result.step_kinds == "MmmmMmmmMmmmM"
    sequence = torch.cat([ids, torch.tensor([result.tokens])], dim=1)
    for i in (4, 8, 12):
        with torch.no_grad():
            expected = model(sequence[:, : ids.shape[1] + i]).logits[0, -1]
        torch.testing.assert_close(result.logits[i], expected.float(), rtol=1e-9, atol=1e-9)


def test_m_steps_run_only_their_module_layer() -> None:
    model = tiny_model(num_mctp_modules=3)
    calls = [0] * len(model.model.layers)
    for index, layer in enumerate(model.model.layers):
        layer.register_forward_hook(lambda *_, i=index: calls.__setitem__(i, calls[i] + 1))
    result = generate(model, prompt(), max_new_tokens=11, schedule=[2, 2, 1, 3])
    assert result.step_kinds == "MMmmMmmmMmm"
    assert calls == [4, 4, 3, 3, 1]  # backbone: 4 M steps; modules 0, 1, 2


# --- stopping and timings ----------------------------------------------------------------------


@pytest.mark.parametrize("schedule", ["vanilla", [1, 3]])
def test_eos_stops_generation(schedule: str | list[int]) -> None:
    model = tiny_model(num_mctp_modules=3, dtype=torch.float32)
    ids = prompt()
    full = generate(model, ids, max_new_tokens=20, schedule=schedule).tokens
    stop_at = next(i for i in range(3, 20) if full[i] not in full[:i])
    result = generate(
        model, ids, max_new_tokens=20, schedule=schedule, eos_token_ids=[full[stop_at], VOCAB + 5]
    )
    assert result.tokens == full[: stop_at + 1]
    assert len(result.step_kinds) == len(result.token_times_s) == stop_at + 1
    if schedule == "vanilla":
        reference = backbone_only(model)
        assert hf_greedy(reference, ids, 20, eos_token_id=full[stop_at]) == result.tokens


def test_timings_have_one_entry_per_token() -> None:
    model = tiny_model(num_mctp_modules=3, dtype=torch.float32)
    result = generate(model, prompt(), max_new_tokens=15, schedule=[1, 3])
    assert len(result.token_times_s) == len(result.tokens) == len(result.step_kinds) == 15
    assert all(t > 0 for t in result.token_times_s)
    assert result.prefill_s == result.token_times_s[0]
    assert result.tokens_per_s == pytest.approx(14 / sum(result.token_times_s[1:]))
    assert result.logits == []
    one = generate(model, prompt(), max_new_tokens=1, schedule=[1, 3])
    assert len(one.tokens) == 1 and math.isnan(one.tokens_per_s)
