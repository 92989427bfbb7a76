"""Corpora: the default one (prepared by `python -m sweeps.data prepare`) and user ones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sweeps import data
from sweeps.data import DEFAULT_CORPUS_DIR, SOURCES, load_corpus


@pytest.fixture(scope="module")
def default_corpus():
    # CI and `make install` prepare the corpus before the tests run; a missing corpus is a
    # broken install, so this fails (with the fix in the message) rather than skipping.
    try:
        return load_corpus()
    except FileNotFoundError as exc:
        pytest.fail(f"{exc}")


def test_default_corpus_is_large_real_text_with_a_fixed_split(default_corpus):
    meta = json.loads((DEFAULT_CORPUS_DIR / "meta.json").read_text())
    assert default_corpus.vocab_size == 256
    assert len(default_corpus.train) == meta["train_tokens"] >= 20_000_000
    assert len(default_corpus.val) == meta["val_tokens"] >= 200_000
    sample = bytes(default_corpus.train[5_000_000:5_002_000]).decode("utf-8", "replace")
    words = sample.split()
    assert sum(w.strip(".,;:").isalpha() for w in words) > 0.6 * len(words)  # English words
    assert [s["sha256"] for s in meta["sources"]] == [s.sha256 for s in SOURCES]


def test_batches_are_next_token_pairs_and_never_repeat_within_an_epoch(default_corpus):
    gen = np.random.default_rng(0)
    x, y = default_corpus.batch("val", 4, 32, gen)
    assert x.shape == y.shape == (4, 32)
    assert (x[:, 1:] == y[:, :-1]).all()
    stream = default_corpus.batches(batch_size=8, seq_len=64, seed=1)
    starts = set()
    for _ in range(50):
        xb, _ = next(stream)
        starts.update(bytes(row.numpy().astype(np.uint8)) for row in xb)
    assert len(starts) == 400


def test_eval_batches_are_the_same_every_time(default_corpus):
    a = default_corpus.eval_batches(4096, 8, 64)
    b = default_corpus.eval_batches(4096, 8, 64)
    assert sum(len(x) for x, _ in a) == 64
    assert all((xa == xb).all() for (xa, _), (xb, _) in zip(a, b, strict=True))


def test_missing_default_corpus_says_how_to_prepare(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "DEFAULT_CORPUS_DIR", tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="sweeps.data prepare"):
        load_corpus()


def test_user_text_file_and_folder(tmp_path):
    text = "It was the best of times, it was the worst of times. " * 200
    (tmp_path / "a.txt").write_text(text)
    corpus = load_corpus(tmp_path / "a.txt", val_frac=0.1)
    assert corpus.vocab_size == 256
    assert len(corpus.train) + len(corpus.val) == len(text.encode())
    assert bytes(corpus.train[:6]) == b"It was"
    (tmp_path / "b.txt").write_text("Call me Ishmael. " * 100)
    folder = load_corpus(tmp_path)
    assert len(folder.train) + len(folder.val) == len(text) + 2 + 1700


@pytest.mark.parametrize("vocab_size, dtype", [(50_257, np.uint16), (100_000, np.uint32)])
def test_user_bin_file(tmp_path, vocab_size, dtype):
    ids = np.random.default_rng(0).integers(0, vocab_size, 10_000).astype(dtype)
    ids.tofile(tmp_path / "tokens.bin")
    corpus = load_corpus(tmp_path / "tokens.bin", vocab_size=vocab_size)
    assert corpus.vocab_size == vocab_size
    np.testing.assert_array_equal(np.concatenate([corpus.train, corpus.val]), ids)
    x, y = corpus.batch("train", 2, 16, np.random.default_rng(0))
    assert int(x.max()) < vocab_size
    with pytest.raises(ValueError, match="vocab_size"):
        load_corpus(tmp_path / "tokens.bin")


def test_vocab_size_and_dtype_are_only_for_a_bin_file(tmp_path):
    (tmp_path / "a.txt").write_text("It was the best of times, it was the worst of times. " * 20)
    assert load_corpus(tmp_path / "a.txt", vocab_size=256).vocab_size == 256  # its own: fine
    with pytest.raises(ValueError, match=r"vocab_size 1000 is only for .*a\.txt .*vocab_size 256"):
        load_corpus(tmp_path / "a.txt", vocab_size=1000)
    with pytest.raises(ValueError, match=r"dtype='uint16' is only for a \.bin corpus"):
        load_corpus(tmp_path / "a.txt", dtype="uint16")
    ids = np.frombuffer((tmp_path / "a.txt").read_bytes(), dtype=np.uint8).astype(np.uint16)
    ids.tofile(tmp_path / "a.bin")
    assert load_corpus(tmp_path / "a.bin", vocab_size=256, dtype="uint16").vocab_size == 256
    with pytest.raises(ValueError, match=r"vocab_size 100000 does not fit uint16 .*a\.bin"):
        load_corpus(tmp_path / "a.bin", vocab_size=100_000, dtype="uint16")


def test_prepare_rejects_a_checksum_mismatch(tmp_path, monkeypatch):
    source = data.Source(
        name="fake", kind="pypi", spec="fake==1", filename="fake-1.tar.gz", sha256="0" * 64,
        license="none",
    )  # fmt: skip

    def fake_download(cmd, cwd):
        Path(cwd, "fake-1.tar.gz").write_bytes(b"not the pinned file")
        return data.subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(data, "_run", fake_download)
    with pytest.raises(RuntimeError, match="checksum mismatch"):
        data._fetch(source, tmp_path)
    assert not (tmp_path / "fake-1.tar.gz").exists()


def test_warns_when_a_run_would_see_data_twice(tmp_path):
    (tmp_path / "small.txt").write_text("tiny corpus " * 100)
    corpus = load_corpus(tmp_path / "small.txt")
    with pytest.warns(UserWarning, match="more than once"):
        corpus.check_budget(10 * len(corpus.train))
