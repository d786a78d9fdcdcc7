"""A compact set of strings for duplicate detection over millions of ids.

A Python `set[str]` costs about 140 bytes per id, so a WenetSpeech-sized
source (about 10 million segments) would need well over a gigabyte just to
notice repeated ids. `CompactIdSet` keeps a 128-bit BLAKE2b digest of each id
in an open-addressing table of two NumPy `uint64` arrays: 16 bytes per slot,
at most 50 % load, so about 32 bytes per id. Two different ids are taken for
one only if their 128-bit digests collide (probability about n² / 2¹²⁹:
~1e-25 for ten million ids).

>>> ids = CompactIdSet()
>>> ids.add("a"), ids.add("b"), ids.add("a")
(True, True, False)
>>> len(ids)
2
"""

from __future__ import annotations

import hashlib

import numpy as np

_EMPTY = np.uint64(0)


def _digest(text: str) -> tuple[int, int]:
    raw = hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()
    high = int.from_bytes(raw[:8], "little")
    low = int.from_bytes(raw[8:], "little") or 1  # 0 marks an empty slot
    return high, low


class CompactIdSet:
    """Set of strings stored as 128-bit digests in a NumPy open-addressing table."""

    def __init__(self, capacity: int = 1 << 16) -> None:
        size = 1 << max(4, (capacity - 1).bit_length())
        self._high = np.zeros(size, dtype=np.uint64)
        self._low = np.zeros(size, dtype=np.uint64)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, text: str) -> bool:
        """Add `text`; True if it was new, False if it was already in the set."""
        if 2 * (self._count + 1) > len(self._low):
            self._grow()
        high, low = _digest(text)
        return self._insert(np.uint64(high), np.uint64(low))

    def _insert(self, high: np.uint64, low: np.uint64) -> bool:
        mask = len(self._low) - 1
        slot = int(high) & mask
        while True:
            current = self._low[slot]
            if current == _EMPTY:
                self._high[slot] = high
                self._low[slot] = low
                self._count += 1
                return True
            if current == low and self._high[slot] == high:
                return False
            slot = (slot + 1) & mask  # linear probing

    def _grow(self) -> None:
        old_high, old_low = self._high, self._low
        self._high = np.zeros(2 * len(old_low), dtype=np.uint64)
        self._low = np.zeros(2 * len(old_low), dtype=np.uint64)
        self._count = 0
        for index in np.flatnonzero(old_low):
            self._insert(old_high[index], old_low[index])
