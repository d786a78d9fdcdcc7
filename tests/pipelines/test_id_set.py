"""The compact id set used for duplicate detection behaves like a set of strings."""

from __future__ import annotations

import random

from pipelines.id_set import CompactIdSet


def test_matches_a_python_set_through_growth() -> None:
    rng = random.Random(7)
    ids = [f"Y{rng.randrange(30_000):010d}_S{rng.randrange(5):05d}" for _ in range(50_000)]
    compact = CompactIdSet(capacity=16)
    reference: set[str] = set()
    for text in ids:
        assert compact.add(text) == (text not in reference)
        reference.add(text)
    assert len(compact) == len(reference)


def test_unicode_and_empty_ids() -> None:
    compact = CompactIdSet()
    assert compact.add("")
    assert compact.add("怎么样")
    assert not compact.add("怎么样")
    assert compact.add("怎么样 ")
