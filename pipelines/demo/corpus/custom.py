"""User-made corpora: an audio folder tree, a CSV/JSONL manifest and a VITA-Audio JSONL file.

Writes, under `custom/`:

- `folder/`: audio in every format libsndfile reads (wav, flac, mp3, ogg
  vorbis, ogg opus; 8 to 48 kHz; mono and stereo) with optional same-stem
  `.txt`/`.lab` transcripts, a `broken/` folder (truncated, empty, garbage,
  NaN-filled, latin-1 transcript, transcript without audio), a `quality/`
  folder of files ingest accepts but the quality policy must reject (0 dB
  noise, hard clipping, 0.3 s long, mostly digital silence, a paragraph of
  transcript for 1.5 s of speech) and a symlink that leaves the folder;
- `table/`: `audio/` plus `manifest.csv` (whole files and start/end cuts of
  a long file, and bad rows) and `manifest.jsonl`;
- `vita/`: `data.jsonl` in VITA-Audio's chat format (ASR, TTS and spoken QA
  lines, and bad lines) with its `audio/`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.demo.corpus.expected import ExpectedUtterance
from pipelines.demo.corpus.layout import write_bytes, write_lines, write_text
from pipelines.demo.corpus.speech import (
    AudioInfo,
    Voice,
    add_noise_at_snr,
    encode,
    hard_clip,
    is_truncated,
    is_unreadable,
    probe,
    silence,
    synthesize,
    to_stereo,
)
from schemas.prompts import ASR_PROMPT, AUDIO_TAG, TTS_PROMPT

EN_F = Voice("en-us+f3", 165)
EN_M = Voice("en-us+m3", 165)
EN_F2 = Voice("en-us+f2", 170)
ZH = Voice("cmn", 190)

GARBAGE_SEED = 20240601
GARBAGE_BYTES = 4096
TRUNCATE_AT = 0.6

# Quality defects (`quality/`), each planted well past its default policy threshold.
NOISE_SEED = 20240602
NOISY_SNR_DB = 0.0  # white noise as powerful as the speech; the policy floor is 5 dB
CLIP_GAIN = 8.0  # on speech peaking at 0.5: samples above a quarter of the peak hit full scale
SHORT_DURATION_S = 0.3  # the policy's shortest utterance is 0.5 s
TRAILING_SILENCE_S = 6.0  # after ~0.8 s of speech: ~90 % silent frames, limit 80 %
MISALIGNED_SPOKEN = "Only the start was recorded."
MISALIGNED_TEXT = (
    "Only the start was recorded. The rest of this transcript goes on for far longer "
    "than the audio lasts, so nobody could have said all of it in the one and a half "
    "seconds the file takes to play back."
)


@dataclass(frozen=True)
class FolderFile:
    """One planted file of the folder corpus: an audio file and/or its transcript."""

    stem: str  # relative to custom/folder, without extension
    audio_ext: str | None
    text: str | None
    text_ext: str = ".txt"
    voice: Voice = EN_F
    rate_hz: int = 16000
    format: str = "WAV"
    subtype: str | None = "PCM_16"
    stereo: bool = False
    defect: str | None = None
    later: str | None = None  # the quality rule that must reject it (see expected.py)
    spoken: str | None = None  # what the audio says, when there is no transcript to read

    @property
    def speech(self) -> str:
        """The sentence synthesised for this file."""
        sentence = self.spoken or self.text
        if sentence is None:
            raise ValueError(f"{self.stem}: nothing to synthesise")
        return sentence


FOLDER_FILES = (
    FolderFile("speaker_a/a1", ".wav", "Hello, this is the first speaker on a quiet day."),
    FolderFile("speaker_a/a2", ".flac", "The second file keeps its words in a lab file.",
               text_ext=".lab", rate_hz=44100, format="FLAC", stereo=True),
    FolderFile("speaker_b/b1", ".mp3", "An mp3 file recorded at twenty two kilohertz.",
               voice=EN_M, rate_hz=22050, format="MP3", subtype=None),
    FolderFile("speaker_b/b2", ".ogg", "Vorbis in stereo at forty eight kilohertz.",
               voice=EN_M, rate_hz=48000, format="OGG", subtype="VORBIS", stereo=True),
    FolderFile("speaker_b/b3", ".opus", "Opus is what most voice calls use today.",
               voice=EN_M, rate_hz=48000, format="OGG", subtype="OPUS"),
    FolderFile("speaker_c/c1", ".wav", None, voice=ZH, rate_hz=8000,
               spoken="我的声音没有文字记录"),
    FolderFile("broken/truncated", ".flac", "This flac file was cut short.", format="FLAC",
               defect="truncated_audio"),
    FolderFile("broken/empty", ".wav", "This wave file has no samples.", defect="empty_audio"),
    FolderFile("broken/cut_wav", ".wav", "This wave file ends before its header says.",
               defect="truncated_audio"),
    FolderFile("broken/tag_only", ".mp3", "An mp3 tag with no audio after it.", format="MP3",
               subtype=None, defect="unreadable_audio"),
    FolderFile("broken/garbage", ".mp3", "These bytes are not audio.", format="MP3",
               subtype=None, defect="unreadable_audio"),
    FolderFile("broken/nan", ".wav", "Every sample of this file is not a number.",
               subtype="FLOAT", later="max_non_finite_samples"),
    FolderFile("broken/latin1", ".wav", "Café au lait, s'il vous plaît.",
               defect="invalid_text_encoding"),
    FolderFile("broken/orphan", None, "A transcript whose audio never existed.",
               defect="missing_audio"),
    FolderFile("quality/noisy", ".wav",
               "The rain on the roof drowned out almost every word she said.",
               voice=EN_M, later="min_snr_db"),
    FolderFile("quality/clipped", ".wav",
               "Someone turned the gain all the way up on this recording.",
               later="max_clipping_ratio"),
    FolderFile("quality/short", ".wav", "yes", later="min_duration_s"),
    FolderFile("quality/mostly_silent", ".wav", "Good morning.", later="max_silence_ratio"),
    FolderFile("quality/misaligned", ".wav", MISALIGNED_TEXT, voice=Voice("en-us+m3", 180),
               later="max_chars_per_s", spoken=MISALIGNED_SPOKEN),
)

# Symlink (relative, inside the folder) -> target outside the folder, relative to the link.
ESCAPING_LINK = ("links/escape.wav", "../../table/audio/t1.wav")


# An ID3v2.3 tag (a 10-byte header, 16 bytes of padding) and no MPEG frame after it.
ID3_TAG_ONLY = b"ID3\x03\x00\x00\x00\x00\x00\x10" + bytes(16)


def write_custom(out_dir: Path) -> dict[str, list[ExpectedUtterance]]:
    """Write `out_dir/custom/{folder,table,vita}` and return expected rows per expected file."""
    custom = out_dir / "custom"
    # The table comes first: the folder's escaping symlink points at one of its files.
    table_rows, table_jsonl_rows = write_table(custom / "table")
    return {
        "custom_table": table_rows,
        "custom_table_jsonl": table_jsonl_rows,
        "custom_folder": write_folder(custom / "folder"),
        "custom_vita": write_vita(custom / "vita"),
    }


def _speaker_of(stem: str) -> str | None:
    parts = stem.split("/")
    return parts[0] if len(parts) > 1 else None


def _folder_audio(spec: FolderFile) -> bytes:
    if spec.stem == "broken/tag_only":
        return ID3_TAG_ONLY
    if spec.defect == "unreadable_audio":
        data = np.random.default_rng(GARBAGE_SEED).bytes(GARBAGE_BYTES)
        if not is_unreadable(data):
            raise RuntimeError(f"{spec.stem}: the garbage bytes decode as audio")
        return data
    if spec.defect == "empty_audio":
        return encode(np.zeros(0), spec.rate_hz, spec.format, spec.subtype)
    audio = _plant_quality_defect(spec, synthesize(spec.speech, spec.voice, spec.rate_hz))
    if spec.stereo:
        audio = to_stereo(audio, spec.rate_hz)
    data = encode(audio, spec.rate_hz, spec.format, spec.subtype)
    if spec.defect == "truncated_audio":
        data = data[: int(len(data) * TRUNCATE_AT)]
        if not is_truncated(data):
            raise RuntimeError(f"{spec.stem}: cutting the file did not truncate it")
    return data


def _plant_quality_defect(spec: FolderFile, audio: np.ndarray) -> np.ndarray:
    """Degrade clean speech so that the policy rule `spec.later` rejects it (and fires first)."""
    if spec.later == "max_non_finite_samples":
        return np.full_like(audio, np.nan)
    if spec.later == "min_snr_db":
        return add_noise_at_snr(audio, NOISY_SNR_DB, NOISE_SEED)
    if spec.later == "max_clipping_ratio":
        return hard_clip(audio, CLIP_GAIN)
    if spec.later == "min_duration_s":
        keep = round(SHORT_DURATION_S * spec.rate_hz)
        if audio.size < keep:
            raise RuntimeError(f"{spec.stem}: {spec.speech!r} is shorter than {SHORT_DURATION_S} s")
        return audio[:keep]
    if spec.later == "max_silence_ratio":
        return np.concatenate([audio, silence(TRAILING_SILENCE_S, spec.rate_hz)])
    # max_chars_per_s is in the transcript, not the audio; the others are clean speech.
    return audio


def write_folder(root: Path) -> list[ExpectedUtterance]:
    """Write the audio folder corpus under `root`; return its expected rows."""
    rows: list[ExpectedUtterance] = []
    for spec in FOLDER_FILES:
        audio_rel = None
        info = None
        if spec.audio_ext is not None:
            audio_rel = spec.stem + spec.audio_ext
            data = _folder_audio(spec)
            write_bytes(root / audio_rel, data)
            if spec.defect is None:
                info = probe(data)
        if spec.text is not None:
            # Sidecars end in a newline (and one has stray spaces): ingest strips them.
            encoding = "latin-1" if spec.defect == "invalid_text_encoding" else "utf-8"
            padding = "  " if spec.stem == "speaker_b/b1" else ""
            write_text(root / (spec.stem + spec.text_ext), f"{padding}{spec.text}\n", encoding)
        text = None if spec.defect == "invalid_text_encoding" else spec.text
        rows.append(
            ExpectedUtterance(
                spec.stem,
                spec.defect,
                later_reason=spec.later,
                text=text,
                speaker=_speaker_of(spec.stem),
                audio_path=audio_rel,
                duration_s=info.duration_s if info else None,
                sample_rate_hz=info.sample_rate_hz if info else None,
            )
        )
    link_rel, target = ESCAPING_LINK
    link = root / link_rel
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(target, link)
    if not (link.parent / target).resolve().is_file():
        raise RuntimeError(f"{link_rel} -> {target}: the target was not written first")
    rows.append(
        ExpectedUtterance(
            link_rel.rsplit(".", 1)[0],
            "path_escape",
            speaker=_speaker_of(link_rel),
            audio_path=link_rel,
        )
    )
    return rows


@dataclass(frozen=True)
class TableFile:
    """A whole audio file the table manifest lists."""

    path: str
    text: str
    speaker: str
    language: str
    voice: Voice
    rate_hz: int


TABLE_FILES = (
    TableFile("audio/t1.wav", "Good morning from the table.", "tom", "en", EN_M, 16000),
    TableFile("audio/t2.wav", "Yes, the second row has a comma.", "ann", "en", EN_F2, 22050),
    TableFile("audio/t3.wav", "  Spaces around this text are stripped.  ", "tom", "en",
              EN_M, 24000),
    TableFile("audio/t4.wav", "表格里的中文句子", "li", "zh", ZH, 32000),
)

LONG_PATH = "audio/long.wav"
LONG_RATE_HZ = 16000
LONG_DURATION_S = 10.0
LONG_SENTENCES = (
    "The first sentence of the long recording is here.",
    "After a pause, the second sentence follows it.",
)
GRID_S = 0.25  # cut points on a 0.25 s grid: exact in binary, so end - start is exact


def _long_recording() -> tuple[bytes, list[tuple[float, float]]]:
    """A ~10 s file with two sentences; returns its bytes and each sentence's (start, end)."""
    pieces = [silence(0.5, LONG_RATE_HZ)]
    cursor = 0.5
    cuts: list[tuple[float, float]] = []
    for sentence in LONG_SENTENCES:
        speech = synthesize(sentence, EN_F2, LONG_RATE_HZ)
        end = math.ceil((cursor + speech.size / LONG_RATE_HZ) / GRID_S) * GRID_S
        pieces += [speech, silence(end - cursor - speech.size / LONG_RATE_HZ, LONG_RATE_HZ)]
        cuts.append((cursor - GRID_S, end))
        pieces.append(silence(1.5, LONG_RATE_HZ))
        cursor = end + 1.5
    audio = np.concatenate(pieces)
    if audio.size > LONG_DURATION_S * LONG_RATE_HZ:
        raise RuntimeError(f"the two sentences of {LONG_PATH} do not fit in {LONG_DURATION_S} s")
    audio = np.concatenate([audio, silence(LONG_DURATION_S - audio.size / LONG_RATE_HZ,
                                           LONG_RATE_HZ)])
    return encode(audio, LONG_RATE_HZ, "WAV", "PCM_16"), cuts


def _csv_line(values: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue().rstrip("\n")


def _whole_file_row(native_id: str, entry: TableFile, info: AudioInfo) -> ExpectedUtterance:
    return ExpectedUtterance(
        native_id,
        text=entry.text.strip(),
        speaker=entry.speaker,
        language=entry.language,
        audio_path=entry.path,
        duration_s=info.duration_s,
        sample_rate_hz=info.sample_rate_hz,
    )


def write_table(root: Path) -> tuple[list[ExpectedUtterance], list[ExpectedUtterance]]:
    """Write the table corpus under `root`; return expected rows of manifest.csv and .jsonl."""
    csv_lines = [_csv_line(["path", "text", "speaker", "language", "start", "end"])]
    rows: list[ExpectedUtterance] = []
    jsonl_lines: list[str] = []
    jsonl_rows: list[ExpectedUtterance] = []
    for entry in TABLE_FILES:
        data = encode(synthesize(entry.text.strip(), entry.voice, entry.rate_hz), entry.rate_hz,
                      "WAV", "PCM_16")
        write_bytes(root / entry.path, data)
        info = probe(data)
        csv_lines.append(_csv_line([entry.path, entry.text, entry.speaker, entry.language, "", ""]))
        rows.append(_whole_file_row(f"L{len(csv_lines)}", entry, info))
        record = {"path": entry.path, "text": entry.text, "speaker": entry.speaker,
                  "language": entry.language}
        jsonl_lines.append(json.dumps(record, ensure_ascii=False))
        jsonl_rows.append(_whole_file_row(f"L{len(jsonl_lines)}", entry, info))
    jsonl_lines.append('{"path": "audio/t1.wav", "text": "this line is cut off')
    jsonl_rows.append(ExpectedUtterance(f"L{len(jsonl_lines)}", "malformed_record"))

    long_data, cuts = _long_recording()
    write_bytes(root / LONG_PATH, long_data)
    long_rate = probe(long_data).sample_rate_hz
    for sentence, (start, end) in zip(LONG_SENTENCES, cuts, strict=True):
        csv_lines.append(_csv_line([LONG_PATH, sentence, "ann", "en", f"{start}", f"{end}"]))
        rows.append(ExpectedUtterance(
            f"L{len(csv_lines)}", text=sentence, speaker="ann", language="en",
            audio_path=LONG_PATH, offset_s=start, duration_s=end - start,
            sample_rate_hz=long_rate,
        ))

    bad_rows = (
        ("../folder/speaker_a/a1.wav", "A path that climbs out of the table folder.", "tom",
         "en", "", "", "path_escape"),
        ("/etc/hostname", "An absolute path outside the table folder.", "", "", "", "",
         "path_escape"),
        ("audio/missing.wav", "This file was never written.", "ann", "en", "", "",
         "missing_audio"),
        (LONG_PATH, "The end of this cut comes before its start.", "ann", "en", "6.0", "2.0",
         "invalid_timing"),
    )
    for path, text, speaker, language, start, end, reason in bad_rows:
        csv_lines.append(_csv_line([path, text, speaker, language, start, end]))
        rows.append(ExpectedUtterance(
            f"L{len(csv_lines)}", reason, text=text, speaker=speaker or None,
            language=language or None, audio_path=posixpath.normpath(path),
            offset_s=float(start) if start else 0.0,
        ))
    write_lines(root / "manifest.csv", csv_lines)
    write_lines(root / "manifest.jsonl", jsonl_lines)
    return rows, jsonl_rows


@dataclass(frozen=True)
class VitaAudio:
    """An audio file the VITA JSONL refers to, with what it says."""

    path: str
    spoken: str
    voice: Voice


VITA_AUDIOS = (
    VitaAudio("audio/v1.wav", "hello world", EN_F),
    VitaAudio("audio/v2.wav", "The weather is lovely today.", EN_M),
    VitaAudio("audio/v3.wav", "What is the capital of France?", EN_F2),
    VitaAudio("audio/v4.wav", "The capital of France is Paris.", EN_M),
)


def _chat(user: str, assistant: str, audios: list[str]) -> str:
    record = {
        "messages": [
            {"role": "user", "content": user},
            {"role": "assistant", "content": assistant},
        ],
        "audios": audios,
    }
    return json.dumps(record, ensure_ascii=False)


def write_vita(root: Path) -> list[ExpectedUtterance]:
    """Write the VITA-Audio JSONL corpus under `root`; return its expected rows."""
    facts: dict[str, tuple[float, int]] = {}
    for audio in VITA_AUDIOS:
        data = encode(synthesize(audio.spoken, audio.voice, 16000), 16000, "WAV", "PCM_16")
        write_bytes(root / audio.path, data)
        info = probe(data)
        facts[audio.path] = (info.duration_s, info.sample_rate_hz)
    v1, v2, v3, v4 = (audio.path for audio in VITA_AUDIOS)

    def ok(line: int, index: int, path: str, text: str | None) -> ExpectedUtterance:
        duration_s, rate_hz = facts[path]
        return ExpectedUtterance(f"L{line}_A{index}", text=text, audio_path=path,
                                 duration_s=duration_s, sample_rate_hz=rate_hz)

    lines = [
        # ASR: the audio is the user's turn; the assistant's reply is its transcript.
        _chat(f"{ASR_PROMPT}\n{AUDIO_TAG}", "hello world", [v1]),
        # TTS: the assistant speaks the text that follows the instruction line.
        _chat(f"{TTS_PROMPT}\nThe weather is lovely today.", AUDIO_TAG, [v2]),
        # Spoken QA: a question audio, answered with text and then the answer audio.
        _chat(AUDIO_TAG, f"The capital of France is Paris.\n{AUDIO_TAG}", [v3, v4]),
        # Not JSON: the line stops in the middle of the object.
        '{"messages": [{"role": "user", "content": "<|audio|>"}',
        # Two tags but one audio: the whole line is unusable.
        _chat(AUDIO_TAG, f"Paris.\n{AUDIO_TAG}", [v3]),
        # The audio path leaves the vita folder.
        _chat(f"{ASR_PROMPT}\n{AUDIO_TAG}", "Good morning from the table.",
              ["../table/audio/t1.wav"]),
    ]
    rows = [
        ok(1, 0, v1, "hello world"),
        ok(2, 0, v2, "The weather is lovely today."),
        ok(3, 0, v3, None),
        ok(3, 1, v4, "The capital of France is Paris."),
        ExpectedUtterance("L4", "malformed_record"),
        ExpectedUtterance("L5", "malformed_record"),
        ExpectedUtterance("L6_A0", "path_escape", text="Good morning from the table.",
                          audio_path="../table/audio/t1.wav"),
    ]
    write_lines(root / "data.jsonl", lines)
    return rows
