"""The audio of a unit's rows, prepared the same way by every step that needs samples.

Quality, tokens, shards and the report all decode a unit's utterances with
`prepare_many` (mono, 16 kHz, cut; each recording decoded once): segments of
longer recordings are cut by their declared offset and duration, whole files
are decoded to their end. Keeping that rule in one place keeps the audio each
step sees identical. Rows are named as `pipelines.lake.views` reads them:
`declared_duration_s` is the duration the manifest declares.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pipelines.audio.decode import AudioDecodeError
from pipelines.audio.opener import source_opener
from pipelines.audio.prepare import PreparedAudio, Segment, prepare_many
from schemas import SourceConfig


def segment_of(row: dict) -> Segment:
    """The cut a row describes: its audio reference, offset and declared duration."""
    return Segment(
        audio_path=row["audio_path"],
        audio_member=row["audio_member"],
        offset_s=row["offset_s"] or 0.0,
        # Whole files are decoded to their end: the measured duration is then the
        # decoded one, which the quality policy compares with the declared one.
        duration_s=row["declared_duration_s"] if row["is_segment"] else None,
    )


def prepare_rows(
    source: SourceConfig, project_dir: Path, rows: list[dict]
) -> Iterator[tuple[int, PreparedAudio | AudioDecodeError]]:
    """`(row index, prepared audio or decode error)` for every row, recordings decoded once."""
    segments = [segment_of(row) for row in rows]
    with source_opener(source, project_dir) as opener:
        yield from prepare_many(segments, opener.open)


def prepare_accepted_rows(
    source: SourceConfig, project_dir: Path, rows: list[dict]
) -> Iterator[tuple[int, PreparedAudio]]:
    """Like `prepare_rows` for utterances the quality step accepted: they must still decode.

    A decode failure here means the source changed underneath the lake: that is
    an infrastructure problem, not a property of the utterance, so it raises.
    """
    for index, outcome in prepare_rows(source, project_dir, rows):
        if isinstance(outcome, AudioDecodeError):
            raise RuntimeError(
                f"{rows[index]['utterance_id']} was accepted but no longer decodes: "
                f"{outcome.message}"
            )
        yield index, outcome
