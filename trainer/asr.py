"""ASR with a speech LLM checkpoint: transcribe a release split's utterances from their codes.

Each utterance is prompted exactly as the ASR task trains it (upstream's layout, see
`trainer.data.tasks.asr_example`): user ``Convert the speech to text.\\n<|audio|>``, then
the assistant header. The checkpoint decodes greedily with the Vanilla schedule (every
token from the backbone, as upstream evaluates ASR) until it emits ``<|im_end|>`` or
its budget runs out: `EvalSettings.asr_max_new_tokens`, and at most one token per audio
code plus 16 (12.5 codes per second is several times the text-token rate of fast
speech), so an untrained model that never stops cannot run on for long. The
transcript is the decoded text tokens (audio and special tokens dropped), scored
against the release transcript by `trainer.scoring`. The same example's teacher-forced
loss on the assistant transcript is kept as the utterance's loss.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerFast

from inference.generate import generate
from trainer.data.release_split import ReleaseSplit
from trainer.data.stream import DataCounts, SpeechSample, iter_release_samples
from trainer.data.tasks import ChatEncoder, Example, UnsafeTextError, asr_example
from trainer.model import IGNORE_INDEX, Qwen2MCTPForCausalLM, shifted_targets
from trainer.scoring import TranscriptScore, score_transcript
from trainer.text_tokenizer import SpeechVocab

TOKENS_PER_CODE_BUDGET = 1.0
"""Transcript tokens allowed per audio code, plus `EXTRA_TOKENS_BUDGET`."""

EXTRA_TOKENS_BUDGET = 16


@dataclass(frozen=True)
class Transcription:
    """One utterance transcribed and scored."""

    key: str
    utterance_id: str
    source: str
    language: str | None
    reference: str
    hypothesis: str
    score: TranscriptScore
    loss: float | None  # teacher-forced nats per assistant target token
    n_hyp_tokens: int
    stopped: bool  # <|im_end|> emitted within the budget


def token_budget(n_codes: int, max_new_tokens: int) -> int:
    """Tokens a transcript of `n_codes` audio codes may take.

    >>> token_budget(25, 256), token_budget(10_000, 256)
    (41, 256)
    """
    return max(1, min(max_new_tokens, int(n_codes * TOKENS_PER_CODE_BUDGET) + EXTRA_TOKENS_BUDGET))


def decode_transcript(
    tokens: Iterable[int], tokenizer: PreTrainedTokenizerFast, vocab: SpeechVocab
) -> str:
    """The text of generated tokens: up to ``<|im_end|>``, audio, special and padding ids
    (rows of the embedding beyond the tokenizer) dropped."""
    text_ids = []
    size = len(tokenizer)
    for token in tokens:
        if token == vocab.im_end:
            break
        if token < size and not vocab.is_audio(token):
            text_ids.append(token)
    return tokenizer.decode(text_ids, skip_special_tokens=True).strip()


def _prompt_length(example: Example) -> int:
    return next(i for i, label in enumerate(example.labels) if label != IGNORE_INDEX)


@torch.inference_mode()
def teacher_forced_loss(model: Qwen2MCTPForCausalLM, example: Example) -> float | None:
    """Mean cross-entropy (nats/token) of the main head on the example's trained targets."""
    device = next(model.parameters()).device
    logits = model(torch.tensor([example.input_ids], device=device)).logits[0]
    targets = shifted_targets(torch.tensor([example.labels], device=device), 1)[0]
    keep = targets != IGNORE_INDEX
    if not bool(keep.any()):
        return None
    return float(torch.nn.functional.cross_entropy(logits[keep].float(), targets[keep]))


def transcribe_sample(
    model: Qwen2MCTPForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    vocab: SpeechVocab,
    chat: ChatEncoder,
    sample: SpeechSample,
    max_new_tokens: int,
) -> Transcription:
    """Transcribe one sample greedily (Vanilla) and score it against its transcript.

    Raises UnsafeTextError when the transcript holds speech token strings.
    """
    example = asr_example(sample, chat)
    prompt = example.input_ids[: _prompt_length(example)]
    device = next(model.parameters()).device
    out = generate(
        model,
        torch.tensor([prompt], device=device),
        max_new_tokens=token_budget(len(sample.codes), max_new_tokens),
        schedule="vanilla",
        eos_token_ids=(vocab.im_end,),
    )
    hypothesis = decode_transcript(out.tokens, tokenizer, vocab)
    reference = sample.text.strip()
    return Transcription(
        key=sample.key,
        utterance_id=sample.utterance_id,
        source=sample.source,
        language=sample.language,
        reference=reference,
        hypothesis=hypothesis,
        score=score_transcript(reference, hypothesis, sample.language),
        loss=teacher_forced_loss(model, example),
        n_hyp_tokens=len(out.tokens),
        stopped=bool(out.tokens) and out.tokens[-1] == vocab.im_end,
    )


def transcribe_split(
    model: Qwen2MCTPForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    vocab: SpeechVocab,
    split: ReleaseSplit,
    *,
    max_utterances: int | None,
    max_new_tokens: int,
    progress: Callable[[str], None] | None = None,
    counts: DataCounts | None = None,
) -> list[Transcription]:
    """Transcribe the split's utterances (shards in sorted order, at most `max_utterances`).

    Samples without a transcript or codes are skipped (counted in `counts`), as are
    transcripts that hold speech token strings (`skipped_unsafe_text`).
    """
    counts = counts if counts is not None else DataCounts()
    chat = ChatEncoder(tokenizer, vocab)
    model.eval()
    out: list[Transcription] = []
    for sample in iter_release_samples(split, shuffle_shards=False, counts=counts):
        try:
            out.append(transcribe_sample(model, tokenizer, vocab, chat, sample, max_new_tokens))
        except UnsafeTextError:
            counts.skipped_unsafe_text += 1
            continue
        if progress is not None and len(out) % 25 == 0:
            progress(f"transcribed {len(out)} utterances")
        if max_utterances is not None and len(out) >= max_utterances:
            break
    return out
