"""ASR scoring: word or character error rate of one transcript, with its S/D/I counts.

`score_transcript(reference, hypothesis, language)` normalises both texts, splits them
into units and aligns them with `jiwer` (Levenshtein alignment, unit costs):

- **Normalisation** (the standard normalisers, as shipped by `transformers` with Whisper):
  first Unicode NFKC, which folds full-width forms to half-width (``ＡＢＣ１２３，`` →
  ``ABC123,``) and compatibility characters to their plain form. English (a language
  code starting ``en``) then goes through Whisper's ``EnglishTextNormalizer``: lower case,
  bracketed text and fillers (``uh``, ``um``) removed, contractions and titles spelled
  out (``won't`` → ``will not``, ``mr`` → ``mister``), spelled-out numbers written as
  digits (``twenty five dollars`` → ``$25``), punctuation and symbols removed. Every other
  language goes through Whisper's ``BasicTextNormalizer``: lower case, text in brackets
  removed, every Unicode mark, symbol and punctuation character replaced by a space.
  Whitespace is collapsed last. Whisper's British-to-American spelling table ships with
  the Whisper tokenizer, not with `transformers`, so it is not applied.
- **Units**: CER for languages written without spaces between words (`CER_LANGUAGES`:
  Mandarin and other Chinese, Japanese, Thai, Lao, Burmese, Khmer): every character is
  a unit, except that a run of ASCII letters and digits (an English word or a number in
  Mandarin text) is one unit, as WeNet's ``compute-wer.py`` counts code-switched text.
  WER otherwise: whitespace-separated words.

>>> score = score_transcript("Hello, World!", "hello word", "en")
>>> (score.metric, score.n_ref_units, score.substitutions, score.deletions, score.insertions)
('wer', 2, 1, 0, 0)
>>> score = score_transcript("今天，天气很好。", "今天天气好", "zh")
>>> (score.metric, score.n_ref_units, score.deletions, round(score.error_rate, 4))
('cer', 6, 1, 0.1667)
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from typing import Literal

import jiwer
from transformers.models.whisper.english_normalizer import (
    BasicTextNormalizer,
    EnglishTextNormalizer,
)

Metric = Literal["wer", "cer"]

CER_LANGUAGES = frozenset({"zh", "cmn", "yue", "wuu", "ja", "th", "lo", "my", "km"})
"""Languages (ISO 639 codes, region suffix ignored) written without spaces between words:
scored by character error rate."""

_ASCII_WORD = re.compile(r"[a-z0-9']+|\S", re.IGNORECASE)


def _base_language(language: str | None) -> str:
    """``zh-CN`` → ``zh``; None and blank → ``""``."""
    return re.split(r"[-_]", (language or "").strip().lower(), maxsplit=1)[0]


def metric_for(language: str | None) -> Metric:
    """``cer`` for languages written without spaces (`CER_LANGUAGES`), ``wer`` otherwise.

    >>> metric_for("zh-CN"), metric_for("en"), metric_for(None)
    ('cer', 'wer', 'wer')
    """
    return "cer" if _base_language(language) in CER_LANGUAGES else "wer"


@cache
def _english() -> EnglishTextNormalizer:
    return EnglishTextNormalizer({})


@cache
def _basic() -> BasicTextNormalizer:
    return BasicTextNormalizer()


def normalize(text: str, language: str | None) -> str:
    """`text` as it is scored: NFKC, then Whisper's English or basic normaliser, spaces
    collapsed.

    >>> normalize("Mr. Smith won't pay twenty five dollars!", "en")
    'mister smith will not pay $25'
    >>> normalize("今天，天气很好！（笑）ＯＫ", "zh")
    '今天 天气很好 ok'
    """
    folded = unicodedata.normalize("NFKC", text)
    if _base_language(language) == "en":
        out = _english()(folded)
    else:
        out = _basic()(folded)
    return " ".join(out.split())


def split_units(normalized: str, metric: Metric) -> list[str]:
    """The units of a normalised text: words for WER; characters for CER, a run of ASCII
    letters and digits counting as one unit.

    >>> split_units("我用 iphone 12 拍照", "cer")
    ['我', '用', 'iphone', '12', '拍', '照']
    >>> split_units("hello world", "wer")
    ['hello', 'world']
    """
    if metric == "wer":
        return normalized.split()
    return _ASCII_WORD.findall(normalized)


AlignmentOp = Literal["equal", "substitute", "delete", "insert"]


@dataclass(frozen=True)
class AlignedUnit:
    """One step of the alignment: a reference unit, a hypothesis unit, or both."""

    op: AlignmentOp
    reference: str | None
    hypothesis: str | None


@dataclass(frozen=True)
class TranscriptScore:
    """A scored transcript: the normalised texts, unit counts and S/D/I."""

    metric: Metric
    reference_normalized: str
    hypothesis_normalized: str
    n_ref_units: int
    n_hyp_units: int
    substitutions: int
    deletions: int
    insertions: int

    @property
    def n_errors(self) -> int:
        """Substitutions + deletions + insertions."""
        return self.substitutions + self.deletions + self.insertions

    @property
    def error_rate(self) -> float | None:
        """Errors per reference unit; None for an empty reference (no rate exists)."""
        return self.n_errors / self.n_ref_units if self.n_ref_units else None


def _alignment_chunks(reference: list[str], hypothesis: list[str]) -> list[jiwer.AlignmentChunk]:
    if not reference and not hypothesis:
        return []
    # Units hold no spaces, so joining them with spaces lets jiwer split them back exactly.
    output = jiwer.process_words(" ".join(reference), " ".join(hypothesis))
    return output.alignments[0]


def align_units(reference: list[str], hypothesis: list[str]) -> list[AlignedUnit]:
    """The Levenshtein alignment of two unit lists, one step per unit.

    >>> [a.op for a in align_units(["a", "b", "c"], ["a", "x", "c", "d"])]
    ['equal', 'substitute', 'equal', 'insert']
    """
    steps: list[AlignedUnit] = []
    for chunk in _alignment_chunks(reference, hypothesis):
        refs = reference[chunk.ref_start_idx : chunk.ref_end_idx]
        hyps = hypothesis[chunk.hyp_start_idx : chunk.hyp_end_idx]
        if chunk.type in ("equal", "substitute"):
            steps += [AlignedUnit(chunk.type, r, h) for r, h in zip(refs, hyps, strict=True)]
        elif chunk.type == "delete":
            steps += [AlignedUnit("delete", r, None) for r in refs]
        else:
            steps += [AlignedUnit("insert", None, h) for h in hyps]
    return steps


def score_units(reference: list[str], hypothesis: list[str]) -> tuple[int, int, int]:
    """(substitutions, deletions, insertions) of the minimum-edit alignment."""
    if not reference:
        return 0, 0, len(hypothesis)
    if not hypothesis:
        return 0, len(reference), 0
    output = jiwer.process_words(" ".join(reference), " ".join(hypothesis))
    return output.substitutions, output.deletions, output.insertions


def score_transcript(reference: str, hypothesis: str, language: str | None) -> TranscriptScore:
    """Normalise, split and align a reference and a hypothesis (see the module docstring)."""
    metric = metric_for(language)
    ref_norm, hyp_norm = normalize(reference, language), normalize(hypothesis, language)
    ref_units, hyp_units = split_units(ref_norm, metric), split_units(hyp_norm, metric)
    substitutions, deletions, insertions = score_units(ref_units, hyp_units)
    return TranscriptScore(
        metric=metric,
        reference_normalized=ref_norm,
        hypothesis_normalized=hyp_norm,
        n_ref_units=len(ref_units),
        n_hyp_units=len(hyp_units),
        substitutions=substitutions,
        deletions=deletions,
        insertions=insertions,
    )
