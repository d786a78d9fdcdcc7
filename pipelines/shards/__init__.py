"""Deterministic WebDataset shards: `writer` packs a unit, `reader` reads members back."""
