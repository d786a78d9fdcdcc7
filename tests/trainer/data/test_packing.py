"""`trainer.data.packing`: packed sequences restart positions per sample, keep examples
whole, pack per group, and (in the model) samples of one sequence do not see each other."""

from __future__ import annotations

import torch

from trainer.data.packing import pack_examples
from trainer.data.stream import DataCounts
from trainer.data.tasks import Example
from trainer.model import IGNORE_INDEX, shifted_targets

X = IGNORE_INDEX


def _example(key: str, length: int, task: str = "asr", source: str = "s") -> Example:
    ids = [1000 + n for n in range(length)]
    return Example(ids, [X, *ids[1:]], task, key, source)


def test_packing_resets_positions_and_keeps_samples_whole() -> None:
    lengths = {"a": 5, "b": 7, "c": 4, "d": 12, "long": 13, "e": 3}
    examples = [_example(k, n) for k, n in lengths.items()]
    counts = DataCounts()
    packed = list(pack_examples(examples, 12, pad_id=0, counts=counts))
    assert [p.keys for p in packed] == [("a", "b"), ("c",), ("d",), ("e",)]
    assert counts.dropped_too_long == 1 and counts.sequences == 4
    first, second = packed[0], packed[1]
    assert first.position_ids.tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6]
    assert (first.n_samples, first.n_real_tokens) == (2, 12)
    assert second.position_ids.tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7]
    assert second.input_ids.tolist()[4:] == [0] * 8 and second.labels.tolist()[4:] == [X] * 8
    assert (second.n_samples, second.n_real_tokens) == (1, 4)
    for sequence in packed:
        assert sequence.input_ids.shape == sequence.labels.shape == (12,)
        assert sequence.input_ids.dtype == torch.long
        start = 0
        for key in sequence.keys:  # each example lies whole, in order, in one sequence
            n = lengths[key]
            assert sequence.input_ids[start : start + n].tolist() == [1000 + i for i in range(n)]
            start += n
        # With the positions, no shifted target crosses from one sample into the next.
        targets = shifted_targets(sequence.labels[None], 1, sequence.position_ids[None])[0]
        ends = [i for i in range(11) if sequence.position_ids[i + 1] == 0]
        assert all(targets[i] == X for i in ends)


def test_packing_per_group() -> None:
    examples = [_example("a", 4, "asr"), _example("b", 4, "tts"), _example("c", 4, "asr")]
    packed = list(pack_examples(examples, 10, pad_id=0, per_group=True))
    assert [p.keys for p in packed] == [("a", "c"), ("b",)]


def test_packed_samples_do_not_see_each_other_in_the_model() -> None:
    # The model resets attention where position ids restart (no attention mask given).
    from trainer.model import Qwen2MCTPConfig, Qwen2MCTPForCausalLM

    torch.manual_seed(0)
    config = Qwen2MCTPConfig(
        num_mctp_modules=1,
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    model = Qwen2MCTPForCausalLM(config).eval()
    first = Example(list(range(10, 17)), [X] * 7, "asr", "a")
    second = Example(list(range(30, 35)), [X] * 5, "asr", "b")
    (packed,) = pack_examples([first, second], 16, pad_id=0)
    alone = pack_examples([second], 5, pad_id=0)
    with torch.no_grad():
        out = model(packed.input_ids[None], position_ids=packed.position_ids[None])
        ref = model(next(alone).input_ids[None])
    torch.testing.assert_close(out.logits[0, 7:12], ref.logits[0])
    torch.testing.assert_close(out.mctp_logits[0][0, 7:11], ref.mctp_logits[0][0, :4])
