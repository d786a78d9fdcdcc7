"""Release exports for training outside voxlake.

- `vita_jsonl`: VITA-Audio JSONL with upstream's `_glm4voice.json` code caches;
- `hf`: a Hugging Face `datasets.DatasetDict` saved with `save_to_disk`;
- `staging`: what both share (the release's kept utterances, the staged output folder,
  `export.json`).
"""
