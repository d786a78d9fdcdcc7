"""ASR scoring: WER and CER with their substitutions, deletions and insertions equal what a
hand alignment of each pair gives, after the documented normalisation."""

from __future__ import annotations

import pytest

from trainer.scoring import (
    align_units,
    metric_for,
    normalize,
    score_transcript,
    split_units,
)

# (reference, hypothesis, language, metric, n_ref_units, S, D, I), aligned by hand:
HAND_SCORED = [
    # Case and punctuation do not count: only "the"→"a" and "mat"→"hat" are errors.
    ("The cat sat on the mat.", "the cat sat on a hat", "en", "wer", 6, 2, 0, 0),
    # "Dr." is spelled out ("doctor"), then deleted; "today" is inserted at the end.
    ("I saw Dr. Brown yesterday.", "i saw brown yesterday today", "en", "wer", 5, 0, 1, 1),
    # Everything dropped: every reference word is a deletion.
    ("Good morning!", "", "en", "wer", 2, 0, 2, 0),
    # Full-width punctuation removed; 气→汽 substituted, 呀 inserted, over 6 characters.
    ("今天，天气很好！", "今天天汽很好呀。", "zh", "cer", 6, 1, 0, 1),
    # Full-width digits and letters folded (３ → 3, ＡＰＰ → app); "app" is one unit.
    ("我有３个ＡＰＰ。", "我有三个app", "zh-CN", "cer", 5, 1, 0, 0),
    # 个 deleted; the reference has 4 characters.
    ("一个苹果", "一苹果", "zh", "cer", 4, 0, 1, 0),
]


@pytest.mark.parametrize(
    ("reference", "hypothesis", "language", "metric", "n_ref", "subs", "dels", "ins"),
    HAND_SCORED,
)
def test_error_counts_equal_the_hand_alignment(
    reference: str,
    hypothesis: str,
    language: str,
    metric: str,
    n_ref: int,
    subs: int,
    dels: int,
    ins: int,
) -> None:
    score = score_transcript(reference, hypothesis, language)
    assert score.metric == metric
    assert (score.n_ref_units, score.substitutions, score.deletions, score.insertions) == (
        n_ref,
        subs,
        dels,
        ins,
    )
    assert score.n_errors == subs + dels + ins
    assert score.error_rate == pytest.approx((subs + dels + ins) / n_ref)


def test_a_perfect_transcript_scores_zero_whatever_its_case_and_punctuation() -> None:
    assert score_transcript("Hello, World!", "hello world", "en").error_rate == 0.0
    assert score_transcript("你好，世界！", "你好世界", "zh").error_rate == 0.0


def test_an_empty_reference_has_no_rate_but_counts_its_insertions() -> None:
    score = score_transcript("", "hello there", "en")
    assert (score.n_ref_units, score.insertions, score.error_rate) == (0, 2, None)


def test_insertions_can_push_the_rate_past_one() -> None:
    score = score_transcript("yes", "no no no", "en")
    assert (score.substitutions, score.insertions, score.error_rate) == (1, 2, 3.0)


@pytest.mark.parametrize(
    ("text", "language", "normalized"),
    [
        ("Hello, World!", "en", "hello world"),
        ("Mr. Smith won't pay.", "en", "mister smith will not pay"),
        ("I'm here (inaudible), um, okay", "en", "i am here okay"),
        ("Ｈｅｌｌｏ　Ｗｏｒｌｄ！", "fr", "hello world"),
        ("Ça va? Très bien.", "fr", "ça va très bien"),
        ("今天，天气很好！（笑）", "zh", "今天 天气很好"),
        ("ＡＢＣ１２３。", "zh", "abc123"),
    ],
)
def test_normalisation_examples(text: str, language: str, normalized: str) -> None:
    assert normalize(text, language) == normalized


def test_metric_follows_the_language() -> None:
    assert [metric_for(x) for x in ("en", "en-US", "zh", "zh_CN", "ja", "de", None)] == [
        "wer",
        "wer",
        "cer",
        "cer",
        "cer",
        "wer",
        "wer",
    ]


def test_cer_units_are_characters_with_ascii_words_kept_whole() -> None:
    assert split_units("我用 iphone 拍照", "cer") == ["我", "用", "iphone", "拍", "照"]
    assert split_units("a  b", "wer") == ["a", "b"]


def test_alignment_marks_each_error_kind() -> None:
    steps = align_units(["i", "saw", "doctor", "brown", "ok"], ["i", "sew", "brown", "ok", "today"])
    assert [(s.op, s.reference, s.hypothesis) for s in steps] == [
        ("equal", "i", "i"),
        ("substitute", "saw", "sew"),
        ("delete", "doctor", None),
        ("equal", "brown", "brown"),
        ("equal", "ok", "ok"),
        ("insert", None, "today"),
    ]
    assert align_units([], []) == []


def test_module_doctests() -> None:
    import doctest

    import trainer.asr
    import trainer.scoring

    for module in (trainer.scoring, trainer.asr):
        failed, tried = doctest.testmod(module)
        assert tried > 0 and failed == 0, module.__name__
