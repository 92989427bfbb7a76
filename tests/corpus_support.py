"""Real text for the sweep tests: a slice of the default corpus (prepared by `make install`)."""

from __future__ import annotations

import pytest


def default_corpus_slice(start: int = 2_000_000, stop: int = 2_400_000) -> bytes:
    """Bytes start:stop of the default corpus's train split (a test failure, with the way to
    prepare it, when the corpus is missing)."""
    from sweeps.data import load_corpus

    try:
        train = load_corpus().train
    except FileNotFoundError as exc:
        pytest.fail(f"{exc}")
    return bytes(train[start:stop])
