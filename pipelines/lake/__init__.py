"""The lake: immutable per-unit files under one root.

- `paths`: where each kind of file lives (the only code that knows the names);
- `atomic`: temp-then-rename writes, deterministic Parquet;
- `views`: read-only SQL views over the lake files, before any catalogue exists.
"""
