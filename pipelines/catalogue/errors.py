"""The catalogue's errors: one base class, and the lock conflict a caller may wait out."""

from __future__ import annotations


class CatalogueError(Exception):
    """The catalogue cannot be built, opened or read; the message says why."""


class CatalogueLockedError(CatalogueError):
    """Another process holds the catalogue: a writer is running (or readers block a writer)."""
