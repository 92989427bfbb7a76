"""Exceptions of the scaling package: bad law files and questions a law cannot answer."""

from __future__ import annotations

__all__ = ["LawFileError", "UnsupportedQuery"]


class LawFileError(ValueError):
    """A law file that cannot be read: malformed, truncated, missing a field, wrong type, or newer.

    `path` is the file, `field` the dotted path of the offending field (or None when the file
    as a whole is unreadable); the message names both.
    """

    def __init__(self, path: str, field: str | None, problem: str) -> None:
        self.path = str(path)
        self.field = field
        self.problem = problem
        where = f" field {field!r}" if field else ""
        super().__init__(f"law file {self.path}:{where} {problem}")


class UnsupportedQuery(ValueError):
    """A law (often a preset) asked for something it does not define; the message says what."""
