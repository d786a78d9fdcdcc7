"""The vita_jsonl connector: the committed VITA-Audio file ingests to exactly its expected
outcome; each `<|audio|>` tag takes the next audio, and the text, role and task of every
audio follow the ASR / TTS / spoken-QA conventions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from source_checks import assert_matches_expected, ingest_source

from pipelines.lake.paths import Lake
from pipelines.sources import vita_jsonl
from pipelines.units import plan_units
from schemas import InventoryItem, ManifestRecord, UnitLimits
from schemas.sources import VitaJsonlOptions


def ingest(
    tmp_path: Path, path: Path, options: dict[str, Any] | None = None
) -> dict[str, ManifestRecord]:
    """Inventory + manifest of one `vita_jsonl` source; rows by native id."""
    return ingest_source("vita_jsonl", tmp_path, path, options)


def _chat(*messages: tuple[str, str], audios: list[str]) -> str:
    return json.dumps(
        {"messages": [{"role": r, "content": c} for r, c in messages], "audios": audios}
    )


def _items(tmp_path: Path, lines: list[str], **options: Any) -> dict[str, InventoryItem]:
    path = tmp_path / "data.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    groups = vita_jsonl.inventory(path, VitaJsonlOptions(**options))
    return {i.native_id: i for g in groups for i in g.items}


@pytest.fixture(scope="module")
def vita_records(
    tmp_path_factory: pytest.TempPathFactory, corpora: Path
) -> dict[str, ManifestRecord]:
    return ingest(tmp_path_factory.mktemp("vita"), corpora / "custom" / "vita" / "data.jsonl")


def test_vita_corpus_matches_expected(
    vita_records: dict[str, ManifestRecord], corpora: Path
) -> None:
    assert_matches_expected(vita_records, corpora / "expected" / "custom_vita.jsonl")


def test_vita_corpus_literal_facts(vita_records: dict[str, ManifestRecord]) -> None:
    def facts(native_id: str) -> tuple[object, ...]:
        record = vita_records[native_id]
        extra = json.loads(record.extra)
        return record.audio_path, record.text, extra["role"], extra["task"], extra["line"]

    assert facts("L1_A0") == ("audio/v1.wav", "hello world", "user", "asr", 1)
    assert facts("L2_A0") == ("audio/v2.wav", "The weather is lovely today.", "assistant", "tts", 2)
    assert facts("L3_A0") == ("audio/v3.wav", None, "user", "qa", 3)
    assert facts("L3_A1") == (
        "audio/v4.wav",
        "The capital of France is Paris.",
        "assistant",
        "qa",
        3,
    )
    assert vita_records["L4"].reject_reason == "malformed_record"  # not JSON
    assert "2 <|audio|> tags but 1 audios" in (vita_records["L5"].reject_message or "")
    escape = vita_records["L6_A0"]
    assert (escape.reject_reason, escape.audio_path) == ("path_escape", "../table/audio/t1.wav")
    assert all(r.speaker is None and r.language is None for r in vita_records.values())


def test_tags_consume_audios_in_order_across_messages(tmp_path: Path) -> None:
    items = _items(
        tmp_path,
        [
            _chat(
                ("system", "You hear <|audio|> first."),
                ("user", "Say it twice.\n<|audio|> and <|audio|>"),
                ("assistant", "one\n<|audio|>two<|audio|>"),
                audios=["s.wav", "u1.wav", "u2.wav", "a1.wav", "a2.wav"],
            ),
        ],
        language="ZH",
    )
    assert [
        (k, i.audio_path, i.text, i.extra["role"], i.extra["task"]) for k, i in items.items()
    ] == [
        ("L1_A0", "s.wav", None, "system", "other"),
        ("L1_A1", "u1.wav", None, "user", "other"),
        ("L1_A2", "u2.wav", None, "user", "other"),
        ("L1_A3", "a1.wav", "one", "assistant", "other"),
        ("L1_A4", "a2.wav", "two", "assistant", "other"),
    ]
    assert {i.language for i in items.values()} == {"zh"}


def test_text_rules_for_user_and_assistant_audio(tmp_path: Path) -> None:
    items = _items(
        tmp_path,
        [
            # A user audio answered in text, with no instruction line: the reply is its text.
            _chat(("user", "<|audio|>"), ("assistant", "  a transcript  "), audios=["a.wav"]),
            # A TTS request whose reply has no text before the tag.
            _chat(
                ("user", "Convert the text to speech.\nfirst line\nsecond line"),
                ("assistant", "<|audio|>"),
                audios=["b.wav"],
            ),
            # An assistant audio with nothing before it and no TTS instruction: no text.
            _chat(("user", "Sing."), ("assistant", "<|audio|>"), audios=["c.wav"]),
            # A user audio with words around it is not the whole turn: no text.
            _chat(("user", "What is in <|audio|> here?"), ("assistant", "a dog"), audios=["d.wav"]),
        ],
    )
    assert items["L1_A0"].text == "a transcript"
    assert (items["L2_A0"].text, items["L2_A0"].extra["task"]) == ("first line\nsecond line", "tts")
    assert items["L3_A0"].text is None
    assert items["L4_A0"].text is None


def test_broken_lines_are_one_rejected_item_each(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(
        b'{"messages": "not a list", "audios": []}\n'
        b"[1]\n"
        b"\n"
        + _chat(("user", "<|audio|>"), ("assistant", "x"), audios=[]).encode()
        + b"\n"
        + _chat(("user", "<|audio|>"), ("assistant", "x"), audios=[3]).encode()
        + b"\n"
        b'{"messages": [{"role": "user", "content": "caf\xe9 <|audio|>"}], "audios": ["a"]}\n'
        + _chat(("user", "no audio at all"), ("assistant", "fine"), audios=[]).encode()
        + b"\n"
    )
    items = {
        i.native_id: i for g in vita_jsonl.inventory(path, VitaJsonlOptions()) for i in g.items
    }
    assert {k: i.problem for k, i in items.items()} == {
        "L1": "malformed_record",
        "L2": "malformed_record",
        "L4": "malformed_record",
        "L5": "malformed_record",
        "L6": "invalid_text_encoding",
    }
    assert all(i.extra == {"line": int(k[1:])} for k, i in items.items())


def test_each_line_is_one_group_under_the_file_stem(tmp_path: Path) -> None:
    """A line's audios (one conversation) stay in one unit; units are packed line by line
    with the durations the WAV headers state."""
    for name, seconds in (("q", 1.0), ("a", 2.0)):
        sf.write(tmp_path / f"{name}.wav", np.zeros(int(16000 * seconds)), 16000)
    qa = _chat(("user", "<|audio|>"), ("assistant", "x\n<|audio|>"), audios=["q.wav", "a.wav"])
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join([qa] * 3) + "\n", encoding="utf-8")
    groups = list(vita_jsonl.inventory(path, VitaJsonlOptions()))
    assert [(g.prefix, [i.native_id for i in g.items]) for g in groups] == [
        ("train", ["L1_A0", "L1_A1"]),
        ("train", ["L2_A0", "L2_A1"]),
        ("train", ["L3_A0", "L3_A1"]),
    ]
    assert [g.planning_durations_s() for g in groups] == [[1.0, 2.0]] * 3
    plans = plan_units("v", groups, UnitLimits(max_duration_s=7.0), Lake(tmp_path / "lake"))
    assert [(p.n_inputs, p.declared_duration_s) for p in plans] == [(4, 6.0), (2, 3.0)]
