"""The ASR/TTS chat prompts: upstream VITA-Audio's strings, shared by training and the exports.

The trainer's task layouts (`trainer.data.tasks`) and the VITA-Audio JSONL export
(`pipelines.releases.export.vita_jsonl`) both write these; the values are upstream's, byte for
byte, so a model trained here and one trained upstream on an export see the same
prompts. The user turns are laid out as upstream's (``vita_audio/data/dataset_qwen2.py``):

- ASR: user ``f"{ASR_PROMPT}\\n{AUDIO_TAG}"``, assistant the transcript.
- TTS: user ``f"{TTS_PROMPT}\\n{text}"``, assistant ``AUDIO_TAG``.

>>> f"{ASR_PROMPT}\\n{AUDIO_TAG}"
'Convert the speech to text.\\n<|audio|>'
"""

from __future__ import annotations

AUDIO_TAG = "<|audio|>"
"""Where a message's audio goes: each tag takes the next entry of the example's ``audios``
(the trainer writes begin-of-audio, the audio's codes, end-of-audio in its place)."""

ASR_PROMPT = "Convert the speech to text."
"""The ASR instruction, followed by a newline and the audio in the user turn."""

TTS_PROMPT = "Convert the text to speech."
"""The TTS instruction, followed by a newline and the text in the user turn."""
