"""A WenetSpeech look-alike: long Opus recordings cut into segments by one big JSON file.

Writes `wenetspeech/` with `WenetSpeech.json`, `TERMS_OF_ACCESS` and Ogg Opus
recordings (16 kHz mono, 15-40 s, 3-5 Mandarin sentences separated by silence
over a faint noise floor) under `audio/<split>/<source>/B00000/<aid>.opus`.
Segment times are the true positions of the sentences (on a 0.25 s grid, so
`end_time - begin_time` is exact in binary floating point). The JSON keeps the
corpus's quirks (`batch_id`, `confidence` < 1, spaces, no-break spaces and
`Ω` in texts, a `notes` key after `audios`) and its defects (a segment past
the end of its recording, a segment ending before it begins, an audio whose
file does not exist, an audio whose path leaves the corpus). A good segment
with confidence below the demo policy's floor must be dropped by the quality
step (`later_reason` `min_confidence`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.demo.corpus.expected import DEMO_MIN_CONFIDENCE, ExpectedUtterance
from pipelines.demo.corpus.layout import write_bytes, write_text
from pipelines.demo.corpus.speech import Voice, add_noise_floor, encode, probe, silence, synthesize

RATE_HZ = 16000
GRID_S = 0.25  # segment boundaries fall on this grid: 2-decimal times, exact differences
LEAD_S = 1.0
GAP_S = 1.0
MIN_RECORDING_S = 15.0
# Real recordings do not end on a round number; the tail after the last sentence is odd.
TAIL_S = 1.37
NOISE_LEVEL = 0.002  # about -54 dBFS: room tone under the speech, as in real recordings
VOICE = Voice("cmn", 190)

# What the official WenetSpeech tools strip from segment texts.
STRIPPED_CHARACTERS = (" ", "\u00a0", "Ω")


@dataclass(frozen=True)
class Segment:
    """One labelled segment: `text` as stored in the JSON; `defect` is its planted problem."""

    text: str
    subsets: tuple[str, ...]
    confidence: float = 1.0
    defect: str | None = None  # "segment_out_of_range" | "invalid_timing"


@dataclass(frozen=True)
class Recording:
    """One long-form recording and its entry in `audios`."""

    aid: str
    split: str
    source: str
    folder: str  # the folder under audio/<split>/ (youtube, podcast, third_party)
    tags: tuple[str, ...]
    url: str
    segments: tuple[Segment, ...]
    batch_id: str | None = None
    defect: str | None = None  # "missing_audio" | "path_escape"

    @property
    def path(self) -> str:
        """The `path` field: where the recording lives, relative to the corpus root."""
        if self.defect == "path_escape":
            return "../../outside.opus"
        return f"audio/{self.split}/{self.folder}/B00000/{self.aid}.opus"


RECORDINGS = (
    Recording(
        "Y0000000000_--5llN02F84", "train", "youtube", "youtube", ("drama",),
        "https://www.youtube.com/watch?v=--5llN02F84",
        (
            Segment("怎么样这些日子住得还习惯吧", ("L", "M", "S")),
            Segment("我们明天去公园散步", ("L", "M")),
            Segment("这个问题我想再考虑一下", ("W",), confidence=0.8),
            Segment("欢迎收听今天的节目", ("L",)),
        ),
    ),
    Recording(
        "X0000000001_4RqlbH2n7Wc", "train", "podcast", "podcast", ("news",),
        "https://podcast.example.com/episodes/4RqlbH2n7Wc",
        (
            Segment("今天 天气\u00a0很好Ω", ("L", "M", "S")),
            Segment("新闻 播报 现在开始", ("L",)),
            Segment("请大家注意安全", ("L", "M")),
            Segment("节目到此结束", ("L",), defect="segment_out_of_range"),
        ),
        batch_id="B00000",
    ),
    Recording(
        "X0000000002_Tq0aZ7pLm3s", "dev", "third_party", "third_party", ("documentary",),
        "https://video.example.com/watch/Tq0aZ7pLm3s",
        (
            Segment("山上的风景非常美丽", ("DEV",)),
            Segment("河水慢慢地流向大海", ("DEV",), defect="invalid_timing"),
            Segment("他们在村子里住了三年", ("DEV",)),
        ),
        batch_id="B00000",
    ),
    Recording(
        "Y0000000003_k9VbN3xQw1E", "test_net", "youtube", "youtube", ("vlog",),
        "https://www.youtube.com/watch?v=k9VbN3xQw1E",
        (
            Segment("大家好\u00a0欢迎来到我的频道", ("TEST_NET",)),
            Segment("今天我们做一道家常菜", ("TEST_NET",)),
            Segment("先把土豆切成小块", ("TEST_NET",)),
        ),
    ),
    Recording(
        "Y0000000004_pP8sLr2TzQ0", "train", "youtube", "youtube", ("sports",),
        "https://www.youtube.com/watch?v=pP8sLr2TzQ0",
        (
            Segment("比赛马上就要开始了", ("L", "M", "S")),
            Segment("观众们都站了起来", ("L",)),
        ),
        defect="missing_audio",
    ),
    Recording(
        "X0000000005_zz0utsIde00", "train", "podcast", "podcast", ("talk",),
        "https://podcast.example.com/episodes/zz0utsIde00",
        (Segment("这段录音不在语料目录里", ("L",)),),
        defect="path_escape",
    ),
)


def clean_text(text: str) -> str:
    """A segment text as the official tools (and voxlake) store it: spaces, NBSP and Ω removed."""
    for character in STRIPPED_CHARACTERS:
        text = text.replace(character, "")
    return text


def _on_grid(seconds: float) -> float:
    return math.ceil(seconds / GRID_S - 1e-9) * GRID_S


@dataclass(frozen=True)
class _Placed:
    begin_s: float
    end_s: float


def _render(recording: Recording, seed: int) -> tuple[np.ndarray, list[_Placed]]:
    """The recording's samples and where each segment's speech sits in it."""
    pieces: list[np.ndarray] = [silence(LEAD_S, RATE_HZ)]
    cursor = LEAD_S
    placed: list[_Placed] = []
    for segment in recording.segments:
        if segment.defect == "segment_out_of_range":
            continue  # not spoken: it is placed past the end below
        speech = synthesize(clean_text(segment.text), VOICE, RATE_HZ)
        end = _on_grid(cursor + speech.size / RATE_HZ)
        pieces.append(speech)
        pieces.append(silence(end - cursor - speech.size / RATE_HZ, RATE_HZ))
        placed.append(_Placed(cursor, end))
        pieces.append(silence(GAP_S, RATE_HZ))
        cursor = end + GAP_S
    audio = np.concatenate(pieces)
    if audio.size < MIN_RECORDING_S * RATE_HZ:
        audio = np.concatenate([audio, silence(MIN_RECORDING_S - audio.size / RATE_HZ, RATE_HZ)])
    audio = np.concatenate([audio, silence(TAIL_S + 0.11 * seed, RATE_HZ)])
    return add_noise_floor(audio, NOISE_LEVEL, seed), placed


def write_wenetspeech(out_dir: Path) -> list[ExpectedUtterance]:
    """Write `out_dir/wenetspeech/` and return the expected manifest rows."""
    root = out_dir / "wenetspeech"
    audios: list[dict[str, object]] = []
    rows: list[ExpectedUtterance] = []
    for seed, recording in enumerate(RECORDINGS):
        entry, entry_rows = _write_recording(root, recording, seed)
        audios.append(entry)
        rows.extend(entry_rows)
    rows.append(_repeat_first_segment(audios[0], rows[0]))
    audios.append(WRONG_TYPE_ENTRY)
    rows.append(
        ExpectedUtterance(
            f"{WRONG_TYPE_ENTRY['aid']}:segments", "malformed_record", language="zh",
            audio_path=str(WRONG_TYPE_ENTRY["path"]),
        )
    )
    document = {
        "dataset": "WenetSpeech",
        "language": "Chinese Mandarin",
        "version": "v1.0-fixture",
        "description": (
            "Synthetic look-alike of WenetSpeech for voxlake tests: espeak-ng speech, "
            "invented recordings, the real JSON layout."
        ),
        "audios": audios,
        # After "audios" on purpose: a stream parser must not stop at the big array.
        "notes": "Segments with confidence < 1 are weakly labelled (subset W).",
    }
    write_text(root / "WenetSpeech.json", json.dumps(document, ensure_ascii=False, indent=2) + "\n")
    write_text(root / "TERMS_OF_ACCESS", TERMS_OF_ACCESS)
    return rows


# An entry whose `segments` is not a list (an export that flattened it): its segments
# cannot be counted, so one rejected row stands for them.
WRONG_TYPE_ENTRY: dict[str, object] = {
    "aid": "Y0000000009_flattened",
    "duration": 12.0,
    "md5": hashlib.md5(b"Y0000000009_flattened").hexdigest(),
    "path": "audio/train/youtube/B00000/Y0000000009_flattened.opus",
    "source": "youtube",
    "tags": ["vlog"],
    "url": "https://www.youtube.com/watch?v=flattened",
    "segments": "Y0000000009_flattened_S00000,Y0000000009_flattened_S00001",
}


def _repeat_first_segment(entry: dict[str, object], first: ExpectedUtterance) -> ExpectedUtterance:
    """List the entry's first segment a second time; the repeat is a `duplicate_id` row."""
    segments = entry["segments"]
    assert isinstance(segments, list)
    segments.append(dict(segments[0]))
    return dataclasses.replace(
        first, native_id=f"{first.native_id}#2", reason="duplicate_id", later_reason=None,
        sample_rate_hz=None,
    )


def _write_recording(
    root: Path, recording: Recording, seed: int
) -> tuple[dict[str, object], list[ExpectedUtterance]]:
    audio, placed = _render(recording, seed)
    data = encode(audio, RATE_HZ, "OGG", "OPUS")
    info = probe(data)
    true_duration_s = info.duration_s
    exists = recording.defect is None
    if exists:
        write_bytes(root / recording.path, data)
        md5 = hashlib.md5(data).hexdigest()
    else:
        md5 = hashlib.md5(recording.aid.encode()).hexdigest()  # the file it names is absent

    segments: list[dict[str, object]] = []
    rows: list[ExpectedUtterance] = []
    spoken = iter(placed)
    for index, segment in enumerate(recording.segments):
        if segment.defect == "segment_out_of_range":
            begin = _on_grid(true_duration_s - 1.0)
            end = begin + 4.0
        else:
            position = next(spoken)
            begin, end = position.begin_s, position.end_s
            if segment.defect == "invalid_timing":
                begin, end = end, begin  # the labels are swapped: end_time < begin_time
        sid = f"{recording.aid}_S{index:05d}"
        segments.append(
            {
                "sid": sid,
                "confidence": segment.confidence,
                "begin_time": round(begin, 2),
                "end_time": round(end, 2),
                "subsets": list(segment.subsets),
                "text": segment.text,
            }
        )
        reason = recording.defect or segment.defect
        declared_duration = None if reason == "invalid_timing" else round(end - begin, 2)
        weak = reason is None and segment.confidence < DEMO_MIN_CONFIDENCE
        rows.append(
            ExpectedUtterance(
                sid,
                reason,
                later_reason="min_confidence" if weak else None,
                text=clean_text(segment.text),
                language="zh",
                split=recording.split,
                subsets=list(segment.subsets),
                audio_path=recording.path,
                offset_s=round(begin, 2),
                duration_s=declared_duration,
                sample_rate_hz=info.sample_rate_hz if reason is None else None,
            )
        )

    entry: dict[str, object] = {
        "aid": recording.aid,
        "duration": round(true_duration_s, 2),
        "md5": md5,
        "path": recording.path,
        "source": recording.source,
        "tags": list(recording.tags),
        "url": recording.url,
    }
    if recording.batch_id is not None:
        entry["batch_id"] = recording.batch_id
    entry["segments"] = segments
    return entry, rows


TERMS_OF_ACCESS = """\
Terms of access (synthetic test corpus)

This folder imitates the layout of the WenetSpeech corpus for software tests.
It holds no WenetSpeech data: the recordings were synthesised with espeak-ng,
and the ids, URLs and texts are invented. The real corpus is distributed
under its own terms of access by its authors; read and accept those before
using it.
"""
