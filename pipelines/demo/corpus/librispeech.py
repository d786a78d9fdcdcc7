"""A LibriSpeech look-alike (mini LibriSpeech layout) with deliberately broken chapters.

Writes `librispeech/LibriSpeech/` with `README.TXT`, `SPEAKERS.TXT`,
`CHAPTERS.TXT`, `BOOKS.TXT` and the splits `dev-clean-2` and `train-clean-5`:
`<split>/<spk>/<chap>/<spk>-<chap>-<NNNN>.flac` (FLAC, 16 kHz mono, 16 bit)
and one `<spk>-<chap>.trans.txt` per chapter. Broken on purpose, one per
chapter: a transcript line without its flac, a flac without a transcript line,
a truncated flac, a transcript line in latin-1, and a line with an id but no text;
and one chapter lists its first line twice (the repeat is `duplicate_id`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipelines.demo.corpus.expected import ExpectedUtterance
from pipelines.demo.corpus.layout import write_bytes, write_lines, write_text
from pipelines.demo.corpus.speech import Voice, encode, is_truncated, probe, synthesize

RATE_HZ = 16000
TRUNCATE_AT = 0.6  # keep 60 % of the bytes: the header survives, the end of the stream does not


@dataclass(frozen=True)
class Reader:
    """A LibriVox reader as SPEAKERS.TXT lists them (names are invented)."""

    speaker_id: str
    sex: str
    subset: str
    name: str
    voice: Voice


@dataclass(frozen=True)
class Chapter:
    """One chapter folder: its utterance texts and the single defect it carries (if any)."""

    split: str
    reader: Reader
    chapter_id: str
    project_id: str
    book_id: str
    title: str
    project_title: str
    texts: tuple[str, ...]
    defect: str | None = None
    repeats_first_line: bool = False  # the first line listed again at the end: duplicate_id


READERS = (
    Reader("1272", "M", "dev-clean-2", "Hollis Marlowe", Voice("en-us+m3", 170)),
    Reader("2428", "F", "dev-clean-2", "June Ashby", Voice("en-us+f3", 170)),
    Reader("103", "F", "train-clean-5", "Wren Calloway", Voice("en-us+f2", 175)),
    Reader("1034", "M", "train-clean-5", "Otis Pemberton", Voice("en-us+m1", 175)),
)
# Listed in SPEAKERS.TXT but reading nothing in the generated splits, as in the real file.
ABSENT_READER = Reader("6000", "F", "train-clean-100", "Mabel Quist", Voice("en-us+f4"))

BOOKS = {
    "2891": ("The Lantern Keeper", "Edith Farrow"),
    "4368": ("Notes From A River Town", "Samuel Reade"),
    "1400": ("A Winter Garden", "Clara Holt"),
}

CHAPTERS = (
    Chapter(
        "dev-clean-2", READERS[0], "128104", "5781", "2891", "Chapter 01",
        "The Lantern Keeper",
        (
            "THE LAMP WAS LIT BEFORE THE SUN WENT DOWN",
            "SHE CARRIED THE OIL UP THE NARROW STAIRS",
            "NOBODY IN THE VILLAGE KNEW HER NAME",
            "THE BOATS CAME HOME SAFE THAT NIGHT",
        ),
        defect="missing_audio",
    ),
    Chapter(
        "dev-clean-2", READERS[0], "135031", "5781", "2891", "Chapter 02",
        "The Lantern Keeper",
        (
            "IN THE MORNING THE SEA WAS CALM",
            "HE DIDN'T SAY A WORD ABOUT THE STORM",
            "THE GULLS WERE LOUD OVER THE HARBOUR",
        ),
        defect="missing_transcript",
        repeats_first_line=True,
    ),
    Chapter(
        "dev-clean-2", READERS[1], "83699", "6120", "4368", "Market Day",
        "Notes From A River Town",
        (
            "THE MARKET OPENED AT SEVEN O'CLOCK",
            "APPLES WERE CHEAP AND THE BREAD WAS WARM",
            "BY NOON THE SQUARE WAS EMPTY AGAIN",
        ),
        defect="truncated_audio",
    ),
    Chapter(
        "train-clean-5", READERS[2], "1240", "7002", "1400", "The First Frost",
        "A Winter Garden",
        (
            "THE FIRST FROST CAME IN OCTOBER",
            "WE COVERED THE ROSES WITH OLD SACKS",
            "CAFÉ AU LAIT AT THE KITCHEN TABLE",
        ),
        defect="invalid_text_encoding",
    ),
    Chapter(
        "train-clean-5", READERS[3], "121119", "7002", "1400", "Seeds",
        "A Winter Garden",
        (
            "SEEDS SLEEP UNDER THE SNOW ALL WINTER",
            "IN SPRING THE GARDEN WAKES UP SLOWLY",
            "THE BEES RETURN WHEN THE PLUMS FLOWER",
        ),
        defect="malformed_record",
    ),
)


def _utterance_id(chapter: Chapter, index: int) -> str:
    return f"{chapter.reader.speaker_id}-{chapter.chapter_id}-{index:04d}"


def write_librispeech(out_dir: Path) -> list[ExpectedUtterance]:
    """Write `out_dir/librispeech/LibriSpeech/` and return the expected manifest rows."""
    root = out_dir / "librispeech" / "LibriSpeech"
    rows: list[ExpectedUtterance] = []
    minutes_by_chapter: dict[str, float] = {}
    for chapter in CHAPTERS:
        chapter_rows, minutes = _write_chapter(root, chapter)
        rows.extend(chapter_rows)
        minutes_by_chapter[chapter.chapter_id] = minutes
    _write_metadata(root, minutes_by_chapter)
    return rows


def _write_chapter(root: Path, chapter: Chapter) -> tuple[list[ExpectedUtterance], float]:
    reader = chapter.reader
    folder = Path(chapter.split) / reader.speaker_id / chapter.chapter_id
    trans_name = f"{reader.speaker_id}-{chapter.chapter_id}.trans.txt"
    base = {"speaker": reader.speaker_id, "language": "en", "split": chapter.split}
    rows: list[ExpectedUtterance] = []
    lines: list[bytes] = []
    total_s = 0.0
    for index, text in enumerate(chapter.texts):
        utt_id = _utterance_id(chapter, index)
        audio_rel = (folder / f"{utt_id}.flac").as_posix()
        is_last = index == len(chapter.texts) - 1
        defect = chapter.defect if is_last else None
        if defect == "missing_audio":
            lines.append(f"{utt_id} {text}".encode())
            rows.append(ExpectedUtterance(utt_id, "missing_audio", text=text,
                                          audio_path=audio_rel, **base))
            continue
        if defect == "malformed_record":
            # An id with no text after it; there is no flac for it either.
            lines.append(utt_id.encode())
            native_id = f"{Path(trans_name).stem}:L{len(lines)}"
            rows.append(ExpectedUtterance(native_id, "malformed_record", **base))
            continue

        # espeak reads "É" fine; only the transcript file gets the wrong encoding.
        data = encode(synthesize(text, reader.voice, RATE_HZ), RATE_HZ, "FLAC", "PCM_16", 1.0)
        info = probe(data)
        total_s += info.duration_s
        if defect == "truncated_audio":
            data = data[: int(len(data) * TRUNCATE_AT)]
            if not is_truncated(data):
                raise RuntimeError(f"{utt_id}: cutting the flac did not truncate it")
            lines.append(f"{utt_id} {text}".encode())
            rows.append(ExpectedUtterance(utt_id, "truncated_audio", text=text,
                                          audio_path=audio_rel, **base))
        elif defect == "missing_transcript":
            rows.append(ExpectedUtterance(utt_id, "missing_transcript", audio_path=audio_rel,
                                          **base))
        elif defect == "invalid_text_encoding":
            lines.append(f"{utt_id} {text}".encode("latin-1"))
            rows.append(ExpectedUtterance(utt_id, "invalid_text_encoding", audio_path=audio_rel,
                                          **base))
        else:
            lines.append(f"{utt_id} {text}".encode())
            rows.append(ExpectedUtterance(
                utt_id, text=text, audio_path=audio_rel, duration_s=info.duration_s,
                sample_rate_hz=info.sample_rate_hz, **base,
            ))
        write_bytes(root / audio_rel, data)
    if chapter.repeats_first_line:
        first = rows[0]
        lines.append(lines[0])
        rows.append(ExpectedUtterance(
            f"{first.native_id}#2", "duplicate_id", text=first.text,
            audio_path=first.audio_path, **base,
        ))
    write_bytes(root / folder / trans_name, b"".join(line + b"\n" for line in lines))
    return rows, total_s / 60.0


def _write_metadata(root: Path, minutes_by_chapter: dict[str, float]) -> None:
    write_text(root / "README.TXT", README)
    minutes_by_reader: dict[str, float] = {}
    for chapter in CHAPTERS:
        speaker = chapter.reader.speaker_id
        minutes_by_reader[speaker] = (
            minutes_by_reader.get(speaker, 0.0) + minutes_by_chapter[chapter.chapter_id]
        )
    speakers = [
        "; Pipe(|) separated metadata about the readers whose speech is in this corpus.",
        ";",
        "; Fields, left to right:",
        "; reader_id: the reader's id (also the first part of every utterance id)",
        "; gender: 'F' for female, 'M' for male",
        "; subset: the corpus subset the reader's audio is assigned to",
        "; duration: minutes of speech by the reader in the corpus",
        "; name: the reader's name (invented for this synthetic corpus)",
        ";",
        ";ID  |SEX| SUBSET           |MINUTES| NAME",
    ]
    for reader in sorted((*READERS, ABSENT_READER), key=lambda r: int(r.speaker_id)):
        minutes = minutes_by_reader.get(reader.speaker_id, 12.5)
        speakers.append(
            f"{reader.speaker_id:<5}| {reader.sex} | {reader.subset:<17}| {minutes:<6.2f}"
            f"| {reader.name}"
        )
    write_lines(root / "SPEAKERS.TXT", speakers)

    chapters = [
        "; Pipe(|) separated metadata about the chapters in this corpus.",
        ";",
        "; Fields, left to right:",
        "; chapter_id, reader_id, duration (minutes used in the corpus), subset,",
        "; project_id (LibriVox project), book_id (see BOOKS.TXT), chapter_title,",
        "; project_title",
        ";",
        ";ID    |READER|MINUTES| SUBSET           | PROJ.|BOOK ID| CH. TITLE            "
        "| PROJECT TITLE",
    ]
    for chapter in sorted(CHAPTERS, key=lambda c: int(c.chapter_id)):
        chapters.append(
            f"{chapter.chapter_id:<7}| {chapter.reader.speaker_id:<5}"
            f"| {minutes_by_chapter[chapter.chapter_id]:<6.2f}| {chapter.split:<17}"
            f"| {chapter.project_id:<5}| {chapter.book_id:<6}| {chapter.title:<21}"
            f"| {chapter.project_title}"
        )
    write_lines(root / "CHAPTERS.TXT", chapters)

    books = [
        "; Pipe(|) separated metadata about the books read in this corpus.",
        ";",
        "; Fields, left to right: book_id, book_title, author",
        ";",
        ";ID    | TITLE                    | AUTHOR",
    ]
    for book_id in sorted(BOOKS, key=int):
        title, author = BOOKS[book_id]
        books.append(f"{book_id:<7}| {title:<25}| {author}")
    write_lines(root / "BOOKS.TXT", books)


README = """\
LibriSpeech look-alike for tests (synthetic)
============================================

This folder mimics the layout of the LibriSpeech ASR corpus (OpenSLR 12) and
of its mini version (OpenSLR 31). It is NOT LibriSpeech: every recording was
synthesised with espeak-ng from the transcripts, and the readers, books and
chapters are invented.

Structure
---------

<split>/<reader id>/<chapter id>/<reader id>-<chapter id>-<NNNN>.flac
    16 kHz, mono, 16-bit FLAC, one utterance per file

<split>/<reader id>/<chapter id>/<reader id>-<chapter id>.trans.txt
    one line per utterance: "<utterance id> <UPPER CASE TEXT>"

SPEAKERS.TXT, CHAPTERS.TXT, BOOKS.TXT
    pipe(|) separated metadata; lines starting with ';' are comments

Splits: dev-clean-2, train-clean-5.

Some chapters are broken on purpose (a missing flac, a flac without a
transcript line, a truncated flac, a transcript line that is not UTF-8, a line
without text) so that ingest rejections can be tested.
"""
