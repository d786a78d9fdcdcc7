"""The cut a manifest row describes, the one rule for how a row's audio is taken.

Segments of longer recordings are cut by their declared offset and duration,
whole files are decoded to their end. The quality step is the only step that
decodes the source (`prepare_many`, each recording once); every later step
reads the audio shards it writes. Rows are named as `pipelines.lake.views`
reads them: `declared_duration_s` is the duration the manifest declares.
"""

from __future__ import annotations

from pipelines.audio.prepare import Segment


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
