"""Utterance audio: decode once, prepare (mono, 16 kHz, cut), and the stored 16-bit form.

- `decode`: audio files to float32 at their own rate (libsndfile, FFmpeg for the rest);
- `prepare`: mono, resampling (soxr HQ), cutting; each recording decoded once per unit;
- `pcm`: the 16-bit PCM the shards store, its content hash, its FLAC encoding;
- `ref`: safe paths under a source root and tar members read without extraction;
- `headers`: durations from FLAC/WAV headers without decoding, for unit planning;
- `opener`: a source's `AudioOpener`;
- `rows`: the prepared audio of manifest rows, for every step that needs samples.
"""
