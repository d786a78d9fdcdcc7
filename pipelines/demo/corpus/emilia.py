"""An Emilia look-alike: WebDataset tars of MP3 + JSON samples, in the current hub layout.

Writes `emilia/Emilia/EN/EN-B000000.tar`, `emilia/Emilia/ZH/ZH-B000000.tar`
and `emilia/Emilia-YODAS/EN/EN-B000000.tar`. Each sample is `<id>.mp3` (MP3,
24 kHz mono) immediately followed by `<id>.json` with Emilia's fields (`id`,
`wav` in the old layout, `text` with its leading space, `duration`, `speaker`,
`language`, `dnsmos`). Planted defects: an mp3 without json, a json without
mp3, a json that does not parse, and a sample whose member names climb out
of the archive (`../evil.mp3`, `../evil.json`). One good sample declares a
DNSMOS below the demo policy's floor, so the quality step must drop it
(`later_reason` `min_dnsmos`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipelines.demo.corpus.expected import DEMO_MIN_DNSMOS, ExpectedUtterance
from pipelines.demo.corpus.layout import write_tar
from pipelines.demo.corpus.speech import Voice, encode, probe, synthesize

RATE_HZ = 24000


@dataclass(frozen=True)
class Sample:
    """One Emilia sample: `key` is the WebDataset key (= `id`), `defect` its planted problem."""

    key: str
    text: str
    voice: Voice
    dnsmos: float
    # missing_metadata | missing_audio | malformed_record | path_escape | wrong_type (a
    # `text` that is a list: malformed_record, with the other fields of its record)
    defect: str | None = None


@dataclass(frozen=True)
class Shard:
    """One tar: `<collection>/<LANG>/<LANG>-B000000.tar`."""

    collection: str
    language: str
    samples: tuple[Sample, ...]

    @property
    def path(self) -> str:
        """The tar's path relative to the Emilia root."""
        upper = self.language.upper()
        return f"{self.collection}/{upper}/{upper}-B000000.tar"


# Emilia keeps segments of 3 s and more: slow voices and full sentences get there.
EN_A = Voice("en-us+f3", 140)
EN_B = Voice("en-us+m3", 140)
EN_C = Voice("en-us+f4", 145)
ZH = Voice("cmn", 180)

SHARDS = (
    Shard(
        "Emilia", "en",
        (
            Sample("EN_B00000_S00000_W000000",
                   " So the first thing we did was check the weather.", EN_A, 3.3697),
            Sample("EN_B00000_S00000_W000001",
                   " Honestly, it rained all week and nobody minded.", EN_A, 2.7413),
            Sample("EN_B00000_S00001_W000000",
                   " Welcome back to the show, I'm glad you are here.", EN_B, 3.2154),
            Sample("EN_B00000_S00001_W000001",
                   " Today we talk about gardens and old houses.", EN_B, 3.4018),
            Sample("EN_B00000_S00002_W000000",
                   " This clip lost its metadata somewhere on the way.", EN_C, 3.1102,
                   defect="missing_metadata"),
        ),
    ),
    Shard(
        "Emilia", "zh",
        (
            Sample("ZH_B00000_S00000_W000000", " 我们今天来聊一聊做饭的事情。", ZH, 3.3051),
            Sample("ZH_B00000_S00000_W000001", "其实每个人都有自己的习惯。", ZH, 3.1877),
            Sample("ZH_B00000_S00001_W000000", " 这一段的音频文件丢失了。", ZH, 3.2290,
                   defect="missing_audio"),
            Sample("ZH_B00000_S00001_W000001", " 好了，下次节目我们再见。", ZH, 3.4502),
            Sample("ZH_B00000_S00002_W000000", " 这一段的文字被存成了列表。", ZH, 3.2811,
                   defect="wrong_type"),
        ),
    ),
    Shard(
        "Emilia-YODAS", "en",
        (
            Sample("EN_B00000_S10000_W000000",
                   " Hey everyone, thanks for watching this video.", EN_C, 3.1960),
            Sample("EN_B00000_S10000_W000001",
                   " Let me show you, step by step, how the little robot works.", EN_C, 3.0833),
            Sample("EN_B00000_S10001_W000000",
                   " The metadata for this clip is not valid at all.", EN_B, 3.2541,
                   defect="malformed_record"),
            Sample("../evil", " This sample tries very hard to climb out of its archive.",
                   EN_A, 3.3000, defect="path_escape"),
        ),
    ),
)


def _speaker(key: str) -> str:
    """Emilia's speaker id: the sample id without its `_W<n>` suffix."""
    return key.rsplit("_W", 1)[0] if "_W" in key else key


def _record(sample: Sample, language: str, duration_s: float) -> dict[str, object]:
    speaker = _speaker(sample.key)
    prefix = sample.key.split("_S")[0]
    return {
        "id": sample.key,
        "wav": f"{prefix}/{speaker}/mp3/{sample.key}.mp3",
        "text": sample.text,
        "duration": duration_s,
        "speaker": speaker,
        "language": language,
        "dnsmos": sample.dnsmos,
    }


def write_emilia(out_dir: Path) -> list[ExpectedUtterance]:
    """Write `out_dir/emilia/` and return the expected manifest rows."""
    root = out_dir / "emilia"
    rows: list[ExpectedUtterance] = []
    for shard in SHARDS:
        members: list[tuple[str, bytes]] = []
        for sample in shard.samples:
            mp3 = encode(synthesize(sample.text.strip(), sample.voice, RATE_HZ), RATE_HZ, "MP3")
            info = probe(mp3)
            duration_s = round(info.duration_s, 3)
            record = _record(sample, shard.language, duration_s)
            document = json.dumps(record, ensure_ascii=False).encode()
            mp3_name, json_name = f"{sample.key}.mp3", f"{sample.key}.json"
            if sample.defect == "malformed_record":
                document = document[: len(document) // 2]  # cut mid-object: not JSON
            if sample.defect == "wrong_type":
                record["text"] = [sample.text]  # valid JSON, but the transcript is a list
                document = json.dumps(record, ensure_ascii=False).encode()
            if sample.defect != "missing_audio":
                members.append((mp3_name, mp3))
            if sample.defect != "missing_metadata":
                members.append((json_name, document))
            rows.append(_expected(shard, sample, duration_s, info.sample_rate_hz))
        write_tar(root / shard.path, members)
    return rows


def _expected(shard: Shard, sample: Sample, duration_s: float, rate_hz: int) -> ExpectedUtterance:
    member = None if sample.defect == "missing_audio" else f"{sample.key}.mp3"
    if sample.defect in ("missing_metadata", "malformed_record"):
        # Nothing readable describes the sample: only where its audio is is known.
        return ExpectedUtterance(
            sample.key, sample.defect, audio_path=shard.path, audio_member=member
        )
    if sample.defect == "wrong_type":
        # Rejected as a whole, but every field of the right type is still reported.
        return ExpectedUtterance(
            sample.key, "malformed_record", speaker=_speaker(sample.key),
            language=shard.language, audio_path=shard.path, audio_member=member,
            duration_s=duration_s,
        )
    low_dnsmos = sample.defect is None and sample.dnsmos < DEMO_MIN_DNSMOS
    return ExpectedUtterance(
        sample.key,
        sample.defect,
        later_reason="min_dnsmos" if low_dnsmos else None,
        text=sample.text.strip(),
        speaker=_speaker(sample.key),
        language=shard.language,
        audio_path=shard.path,
        audio_member=member,
        duration_s=duration_s,
        sample_rate_hz=rate_hz if sample.defect is None else None,
    )
