"""Evaluate a Qwen2 + MCTP checkpoint on a release's held-out split.

ASR (`trainer.asr`, `trainer.scoring`): every utterance of the split (up to
`EvalSettings.asr_max_utterances`) is transcribed greedily from its codes with the
upstream ASR prompt and scored: WER, or CER for Mandarin, with substitutions, deletions
and insertions, after normalisation (`EvalResult.transcriptions`, one per utterance).

Measured besides, in the same run, on the same examples:

- main-head cross-entropy and perplexity, separately on text targets and on audio
  targets (audio codes and the begin/end-of-audio markers), and per task;
- top-1 accuracy of the main head and of every MCTP module (module k against the token
  k+2 ahead, inside the same example);
- for each decoding schedule (Vanilla, Balance, Boost, Turbo): agreement of its greedy
  output with Vanilla's, and decode tokens/s with the speed-up against Vanilla. The
  schedules decode the same TTS prompts, interleaved prompt by prompt so that machine
  load affects them alike; every schedule is warmed up first and runs to
  `max_new_tokens` (no early stop) so that all time the same number of tokens.

The TTS side has no speech decoder here (codes cannot be turned back into audio and
re-transcribed), so it is measured by what needs none: teacher-forced audio-token
accuracy per utterance (`EvalResult.example_scores`) and the schedules' agreement and
speed-up.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from inference.generate import SCHEDULES, check_schedule_fits, generate, resolve_schedule
from schemas.training import EvalSettings
from trainer.asr import Transcription, transcribe_split
from trainer.checkpoints import load_base_model, model_checkpoint_sha256
from trainer.data.mixture import eval_examples
from trainer.data.release_split import load_release_split
from trainer.data.stream import DataCounts
from trainer.data.tasks import Example
from trainer.model import IGNORE_INDEX, Qwen2MCTPForCausalLM, shifted_targets
from trainer.text_tokenizer import SpeechVocab, load_text_tokenizer

EVAL_TASKS = ("asr", "tts", "interleave")


@dataclass
class ScheduleResult:
    """One decoding schedule's figures over the decode prompts."""

    name: str
    schedule: list[int]
    tokens: int = 0
    decode_s: float = 0.0
    agreement: float | None = None  # fraction of positions equal to Vanilla's token
    prefix_agreement: float | None = None  # mean identical-prefix length / tokens
    skipped: str | None = None

    @property
    def tokens_per_s(self) -> float | None:
        """Decode throughput (prefill excluded)."""
        return self.tokens / self.decode_s if self.decode_s > 0 else None


@dataclass(frozen=True)
class ExampleScore:
    """Teacher-forced figures of one scored example (one task of one utterance)."""

    key: str
    task: str
    source: str | None
    loss: float | None  # mean nats per trained target token (main head)
    n_audio_targets: int
    n_audio_correct: int  # audio targets whose top-1 prediction is right


@dataclass
class EvalResult:
    """What `evaluate_checkpoint` measured."""

    checkpoint: str
    checkpoint_sha256: str
    release: str
    split: str
    metrics: dict[str, Any] = field(default_factory=dict)
    schedules: list[ScheduleResult] = field(default_factory=list)
    transcriptions: list[Transcription] = field(default_factory=list)
    example_scores: list[ExampleScore] = field(default_factory=list)

    def as_metrics(self) -> dict[str, Any]:
        """Flat metrics plus a `schedules` table, JSON-ready (the EvalRecord's `metrics`)."""
        vanilla = next((s for s in self.schedules if s.name == "vanilla"), None)
        rows = []
        for s in self.schedules:
            speedup = (
                s.tokens_per_s / vanilla.tokens_per_s
                if vanilla and s.tokens_per_s and vanilla.tokens_per_s
                else None
            )
            rows.append(
                {
                    "schedule": s.name,
                    "pattern": s.schedule,
                    "tokens": s.tokens,
                    "tokens_per_s": s.tokens_per_s,
                    "speedup_vs_vanilla": speedup,
                    "agreement_with_vanilla": s.agreement,
                    "prefix_agreement_with_vanilla": s.prefix_agreement,
                    "skipped": s.skipped,
                }
            )
        return {**self.metrics, "schedules": rows}


class _Sums:
    """Running sums of cross-entropy and correct top-1 per named group."""

    def __init__(self) -> None:
        self.nll: dict[str, float] = defaultdict(float)
        self.correct: dict[str, int] = defaultdict(int)
        self.count: dict[str, int] = defaultdict(int)

    def add(self, group: str, logits: torch.Tensor, targets: torch.Tensor) -> None:
        keep = targets != IGNORE_INDEX
        if not bool(keep.any()):
            return
        logits, targets = logits[keep].float(), targets[keep]
        self.nll[group] += float(
            torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
        )
        self.correct[group] += int((logits.argmax(-1) == targets).sum())
        self.count[group] += int(targets.numel())

    def loss(self, group: str) -> float | None:
        return self.nll[group] / self.count[group] if self.count[group] else None

    def accuracy(self, group: str) -> float | None:
        return self.correct[group] / self.count[group] if self.count[group] else None


def _targets(labels: torch.Tensor, offset: int) -> torch.Tensor:
    """`labels` (one unpacked example) shifted left by `offset`, IGNORE_INDEX past the end."""
    return shifted_targets(labels.unsqueeze(0), offset)[0]


def _is_audio_target(targets: torch.Tensor, vocab: SpeechVocab) -> torch.Tensor:
    audio = (targets >= vocab.audio_offset) & (
        targets < vocab.audio_offset + vocab.num_audio_tokens
    )
    return audio | (targets == vocab.begin_of_audio) | (targets == vocab.end_of_audio)


@torch.inference_mode()
def score_examples(
    model: Qwen2MCTPForCausalLM,
    examples: Sequence[Example],
    vocab: SpeechVocab,
    per_example: list[ExampleScore] | None = None,
) -> dict[str, Any]:
    """Losses, perplexities and top-1 accuracies over `examples` (one forward each).

    With `per_example`, each example's own loss and audio-token accuracy are appended.
    """
    sums = _Sums()
    device = next(model.parameters()).device
    for example in examples:
        input_ids = torch.tensor([example.input_ids], device=device)
        labels = torch.tensor(example.labels, device=device)
        output = model(input_ids)
        main = _targets(labels, 1)
        audio = _is_audio_target(main, vocab)
        logits = output.logits[0]
        if per_example is not None:
            own = _Sums()
            own.add("main", logits, main)
            own.add("audio", logits, main.masked_fill(~audio, IGNORE_INDEX))
            per_example.append(
                ExampleScore(
                    key=example.key,
                    task=example.task,
                    source=example.source,
                    loss=own.loss("main"),
                    n_audio_targets=own.count["audio"],
                    n_audio_correct=own.correct["audio"],
                )
            )
        sums.add("main", logits, main)
        sums.add("text", logits, main.masked_fill(audio, IGNORE_INDEX))
        sums.add("audio", logits, main.masked_fill(~audio, IGNORE_INDEX))
        sums.add(f"task_{example.task}", logits, main)
        for k, head in enumerate(output.mctp_logits):
            sums.add(f"mctp_{k}", head[0], _targets(labels, k + 2))

    def ppl(loss: float | None) -> float | None:
        return math.exp(min(loss, 50.0)) if loss is not None else None

    metrics: dict[str, Any] = {
        "n_examples": len(examples),
        "n_target_tokens": sums.count["main"],
        "n_text_targets": sums.count["text"],
        "n_audio_targets": sums.count["audio"],
        "main_loss": sums.loss("main"),
        "main_top1": sums.accuracy("main"),
        "text_top1": sums.accuracy("text"),
        "audio_top1": sums.accuracy("audio"),
        "text_loss": sums.loss("text"),
        "text_ppl": ppl(sums.loss("text")),
        "audio_loss": sums.loss("audio"),
        "audio_ppl": ppl(sums.loss("audio")),
        "task_loss": {t: sums.loss(f"task_{t}") for t in EVAL_TASKS if sums.count[f"task_{t}"]},
        "mctp_top1": [sums.accuracy(f"mctp_{k}") for k in range(model.num_mctp_modules)],
        "mctp_loss": [sums.loss(f"mctp_{k}") for k in range(model.num_mctp_modules)],
    }
    return metrics


def decode_prompt(example: Example) -> list[int]:
    """The prompt of an example: its tokens up to the assistant's first trained token."""
    first = next(i for i, label in enumerate(example.labels) if label != IGNORE_INDEX)
    return example.input_ids[:first]


def compare_schedules(
    model: Qwen2MCTPForCausalLM,
    prompts: Sequence[list[int]],
    schedule_names: Sequence[str],
    max_new_tokens: int,
    progress: Callable[[str], None] | None = None,
) -> list[ScheduleResult]:
    """Decode every prompt with every schedule; agreement with Vanilla and tokens/s."""
    names = ["vanilla", *[n for n in schedule_names if n != "vanilla"]]
    results = {n: ScheduleResult(n, resolve_schedule(n)) for n in names}
    runnable = []
    for name in names:
        try:
            check_schedule_fits(results[name].schedule, model.num_mctp_modules)
            runnable.append(name)
        except ValueError as error:
            results[name].skipped = str(error)
    device = next(model.parameters()).device
    tensors = [torch.tensor([p], device=device) for p in prompts]
    for name in runnable:  # warm-up: first calls allocate caches and kernels
        generate(model, tensors[0], max_new_tokens=min(8, max_new_tokens), schedule=name)
    matches: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for index, prompt in enumerate(tensors):
        outputs = {}
        for name in runnable:
            out = generate(model, prompt, max_new_tokens=max_new_tokens, schedule=name)
            outputs[name] = out.tokens
            results[name].tokens += len(out.tokens) - 1  # token 0 comes from the prefill
            results[name].decode_s += sum(out.token_times_s[1:])
        reference = outputs["vanilla"]
        for name in runnable:
            tokens = outputs[name]
            equal = sum(a == b for a, b in zip(tokens, reference, strict=False))
            prefix = next(
                (i for i, (a, b) in enumerate(zip(tokens, reference, strict=False)) if a != b),
                min(len(tokens), len(reference)),
            )
            matches[name].append((equal, prefix))
        if progress is not None:
            progress(f"decoded prompt {index + 1}/{len(tensors)} with {len(runnable)} schedules")
    for name in runnable:
        total = max_new_tokens * len(tensors)
        results[name].agreement = sum(e for e, _ in matches[name]) / total
        results[name].prefix_agreement = sum(p for _, p in matches[name]) / total
    return [results[n] for n in names]


def evaluate_checkpoint(
    checkpoint: Path,
    lake_root: Path,
    release: str,
    settings: EvalSettings,
    progress: Callable[[str], None] | None = None,
) -> EvalResult:
    """Score `checkpoint` on `release`'s `settings.split` and compare decoding schedules."""
    say = progress or (lambda _message: None)
    unknown = [n for n in settings.schedules if n not in SCHEDULES]
    if unknown:
        raise ValueError(f"unknown schedule(s) {', '.join(unknown)}; known: {', '.join(SCHEDULES)}")
    model = load_base_model(checkpoint).eval()
    # One accelerator when there is one: transcribing a test set token by token on CPU
    # takes hours at upstream's size.
    model = model.to(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    tokenizer, vocab = load_text_tokenizer(checkpoint)
    split = load_release_split(lake_root, release, settings.split)
    if split.n_utterances == 0:
        raise ValueError(f"release {release!r} has no {settings.split!r} utterances to evaluate on")
    examples = eval_examples(split, tokenizer, vocab, EVAL_TASKS, max_samples=settings.max_examples)
    by_task: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        if len(by_task[example.task]) < settings.max_examples:
            by_task[example.task].append(example)
    chosen = [e for task in EVAL_TASKS for e in by_task[task]]
    if not chosen:
        raise ValueError(f"release {release!r} split {settings.split!r} gave no examples")
    say(f"scoring {len(chosen)} held-out examples of {release}/{settings.split}")
    example_scores: list[ExampleScore] = []
    metrics = score_examples(model, chosen, vocab, per_example=example_scores)
    metrics["num_mctp_modules"] = model.num_mctp_modules
    transcriptions: list[Transcription] = []
    if settings.asr:
        say(f"transcribing {release}/{settings.split} (greedy, Vanilla schedule)")
        counts = DataCounts()
        transcriptions = transcribe_split(
            model,
            tokenizer,
            vocab,
            split,
            max_utterances=settings.asr_max_utterances,
            max_new_tokens=settings.asr_max_new_tokens,
            progress=say,
            counts=counts,
        )
        metrics["asr"] = asr_summary(transcriptions)
        metrics["asr"]["skipped_no_text"] = counts.skipped_no_text
        metrics["asr"]["skipped_unsafe_text"] = counts.skipped_unsafe_text
    prompts = [decode_prompt(e) for e in by_task["tts"][: settings.decode_prompts]]
    if not prompts:
        prompts = [decode_prompt(e) for e in chosen[: settings.decode_prompts]]
    say(f"decoding {len(prompts)} prompts × {len(settings.schedules)} schedules")
    schedules = compare_schedules(
        model, prompts, settings.schedules, settings.max_new_tokens, progress=say
    )
    metrics["decode_prompts"] = len(prompts)
    metrics["max_new_tokens"] = settings.max_new_tokens
    metrics["device"] = next(model.parameters()).device.type
    return EvalResult(
        checkpoint=str(checkpoint),
        checkpoint_sha256=model_checkpoint_sha256(checkpoint),
        release=release,
        split=settings.split,
        metrics=metrics,
        schedules=schedules,
        transcriptions=transcriptions,
        example_scores=example_scores,
    )


def asr_summary(transcriptions: Sequence[Transcription]) -> dict[str, Any]:
    """Corpus figures of the transcriptions per metric (WER and CER never mixed): utterances,
    reference units, S/D/I, error rate (total errors / total reference units), and the
    share of transcripts that ended with <|im_end|> within their budget."""
    by_metric: dict[str, dict[str, Any]] = {}
    for t in transcriptions:
        row = by_metric.setdefault(
            t.score.metric,
            {
                "n_utterances": 0,
                "n_ref_units": 0,
                "n_errors": 0,
                "substitutions": 0,
                "deletions": 0,
                "insertions": 0,
                "n_stopped": 0,
            },
        )
        row["n_utterances"] += 1
        row["n_ref_units"] += t.score.n_ref_units
        row["n_errors"] += t.score.n_errors
        row["substitutions"] += t.score.substitutions
        row["deletions"] += t.score.deletions
        row["insertions"] += t.score.insertions
        row["n_stopped"] += int(t.stopped)
    for row in by_metric.values():
        row["error_rate"] = row["n_errors"] / row["n_ref_units"] if row["n_ref_units"] else None
    return {"n_utterances": len(transcriptions), "by_metric": dict(sorted(by_metric.items()))}
