"""Training data from a release: stream its code shards, build VITA-Audio chat examples, pack
them.

One module per step; import a name from the module that defines it (this package
re-exports nothing):

1. `trainer.data.release_split`: `load_release_split` reads
   ``<lake>/releases/<name>/release.json`` and ``utterances.parquet`` and resolves the
   code shards holding a split's utterances (training never opens an audio shard).
2. `trainer.data.stream`: `iter_release_samples` streams those code shards with
   ``webdataset`` (``<key>.codes.npy`` and ``<key>.json`` read from the tar stream,
   nothing extracted), split across ranks and dataloader workers, shuffled by seed and
   epoch.
3. `trainer.data.tasks`: `TASKS` turn a sample into an `Example` (token ids and labels)
   in upstream's ChatML layout (``vita_audio/data/dataset_qwen2.py``): ASR, TTS and the
   interleaved spoken-response task, assistant audio interleaved with its text as
   upstream's ``text_audio_interval`` does (``vita_audio/data/processor/audio_processor.py``).
4. `trainer.data.packing`: `pack_examples` packs examples into fixed-length sequences
   whose positions restart at 0 per sample (the model resets attention and keeps
   targets inside a sample from them).
5. `trainer.data.mixture`: `training_stream` runs 2–4 endlessly over epochs with a
   mixture (upstream's ``used = min(int(N * ratio), num)`` rule,
   ``vita_audio/data/dataset_base.py``); `eval_examples` gives a split's examples in a
   fixed order.

Differences from upstream, on purpose: transcripts are encoded with special tokens split
(a transcript holding the text ``<|im_end|>`` stays text, and one holding
``<|audio_N|>`` is skipped and counted), and the padding of a packed sequence gets
positions 0, 1, … (its own "sample") where upstream continues the last sample's.
"""
