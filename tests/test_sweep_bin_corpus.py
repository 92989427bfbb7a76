"""A pre-tokenized .bin corpus (nanoGPT convention) in a sweep: `corpus_vocab_size` sizes every
trial's embedding and readout and is recorded in the runs; a file with a token id >= its vocab
size, a size that is not whole tokens, or too few tokens for one sequence is refused in one
line, naming the file."""

from __future__ import annotations

import math
import re
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from corpus_support import default_corpus_slice

import sweeps.train
from sweeps.config import CONFIG_DIR, load_config
from sweeps.data import load_corpus
from sweeps.engine import export, run_sweep
from sweeps.model import ModelConfig, count_params
from sweeps.train import TrainConfig, train

VOCAB = 500  # 256 byte ids + the 244 most common words of the text

pytestmark = pytest.mark.slow


def tokenize(text: bytes, vocab_size: int) -> np.ndarray:
    """A lossless word-and-byte tokenizer: ids 0-255 are bytes, ids 256.. the most common
    words (runs of letters) of `text`; other words are spelled out in bytes."""
    pieces = re.findall(rb"[A-Za-z]+|[^A-Za-z]", text)
    words = Counter(p for p in pieces if len(p) > 1).most_common(vocab_size - 256)
    ids = {word: 256 + i for i, (word, _) in enumerate(words)}
    out: list[int] = []
    for piece in pieces:
        if piece in ids:
            out.append(ids[piece])
        else:
            out.extend(piece)
    return np.array(out, dtype=np.uint16)


@pytest.fixture(scope="module")
def tokens(tmp_path_factory) -> Path:
    """400 kB of the default corpus's real text, tokenized into a uint16 .bin file."""
    ids = tokenize(default_corpus_slice(), VOCAB)
    assert int(ids.max()) == VOCAB - 1  # every word id occurs: a 256-id model would crash
    path = tmp_path_factory.mktemp("tokens") / "tokens.bin"
    ids.tofile(path)
    return path


def sweep_config(tmp_path: Path, corpus: Path, head: str) -> Path:
    """tiny.toml on this corpus, with these top-level keys."""
    path = tmp_path / "bin.toml"
    path.write_text(
        f'name = "bin"\ncorpus = "{corpus}"\nresults_dir = "{tmp_path / "results"}"\n'
        + head
        + (CONFIG_DIR / "tiny.toml").read_text()
    )
    return path


def test_sweep_on_a_bin_corpus_trains_every_trial_with_its_vocab_size(
    tmp_path, tokens, monkeypatch
):
    cfg = load_config(sweep_config(tmp_path, tokens, f"corpus_vocab_size = {VOCAB}\n"))
    assert cfg.model.vocab_size == VOCAB
    built: list[tuple[int, int]] = []
    build_model = sweeps.train.build_model

    def spy(mcfg):
        model = build_model(mcfg)
        built.append((model.token_embedding.num_embeddings, model.readout.out_features))
        return model

    monkeypatch.setattr(sweeps.train, "build_model", spy)
    storage = f"sqlite:///{tmp_path / 'storage.db'}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        status = run_sweep(cfg, storage, workers=1, threads=1, progress=False)
    assert sum(s["finished"] for s in status) == cfg.n_planned()
    assert built == [(VOCAB, VOCAB)] * cfg.n_planned()
    runs_path, curves_path, missing = export(cfg, storage, tmp_path / "out")
    assert missing == 0
    runs = pd.read_csv(runs_path)
    assert len(runs) == cfg.n_planned()
    assert (runs["vocab_size"] == VOCAB).all()
    assert (runs["corpus"] == str(tokens)).all()
    for _, row in runs.iterrows():
        model = ModelConfig(width=int(row["width"]), depth=int(row["depth"]), head_dim=16,
                            seq_len=32, vocab_size=VOCAB, base_width=16)  # fmt: skip
        assert (row["n_params"], row["n_params_total"]) == count_params(model)
    finished = runs[runs["state"] == "complete"]
    assert len(finished) and (finished["loss"] < math.log(VOCAB)).all()  # they learned


def test_train_loads_a_bin_corpus_with_its_vocab_size_and_dtype(tmp_path, tokens):
    wide = tmp_path / "tokens32.bin"
    np.fromfile(tokens, dtype=np.uint16).astype(np.uint32).tofile(wide)
    config = TrainConfig(
        model=ModelConfig(width=32, depth=1, head_dim=16, seq_len=32, vocab_size=VOCAB),
        batch_tokens=256, tokens=256 * 4, eval_every=2, eval_tokens=512, threads=1,
        corpus=wide, corpus_vocab_size=VOCAB, corpus_dtype="uint32",
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train(config)
    assert result.to_row()["vocab_size"] == VOCAB and math.isfinite(result.loss)
    a = load_corpus(wide, vocab_size=VOCAB, dtype="uint32")
    b = load_corpus(tokens, vocab_size=VOCAB)
    np.testing.assert_array_equal(a.train, b.train)


def test_a_token_id_not_below_the_vocab_size_is_refused(tmp_path, tokens):
    with pytest.raises(ValueError) as info:
        load_corpus(tokens, vocab_size=400)
    message = str(info.value)
    assert "\n" not in message
    assert str(tokens) in message and "token id 499" in message and "vocab_size 400" in message
    # The same from a sweep config, before any trial runs.
    cfg = load_config(sweep_config(tmp_path, tokens, "corpus_vocab_size = 400\n"))
    with pytest.raises(ValueError, match=rf"{re.escape(str(tokens))} holds token id 499, .*400"):
        run_sweep(cfg, f"sqlite:///{tmp_path / 'storage.db'}", workers=1, progress=False)
    # A uint16 file read as uint32 pairs its ids into large ones: refused, not trained on.
    ids = np.fromfile(tokens, dtype=np.uint16)
    (tmp_path / "even.bin").write_bytes(ids[: len(ids) // 2 * 2].tobytes())
    with pytest.raises(ValueError, match=r"even\.bin holds token id \d+, not below .* 500"):
        load_corpus(tmp_path / "even.bin", vocab_size=VOCAB, dtype="uint32")
    # A uint32 file read as uint16: its ids' zero high halves sit at every odd position.
    ids.astype(np.uint32).tofile(tmp_path / "wide.bin")
    with pytest.raises(ValueError, match=r"wide\.bin read as uint16 has token id 0 at every odd"):
        load_corpus(tmp_path / "wide.bin", vocab_size=VOCAB)
    assert load_corpus(tmp_path / "wide.bin", vocab_size=VOCAB, dtype="uint32").vocab_size == VOCAB


def test_a_file_that_is_not_whole_tokens_is_refused(tmp_path, tokens):
    odd = tmp_path / "odd.bin"
    odd.write_bytes(tokens.read_bytes() + b"\n")
    size = odd.stat().st_size
    with pytest.raises(
        ValueError, match=rf"odd\.bin is {size} bytes, not a whole number of uint16"
    ):
        load_corpus(odd, vocab_size=VOCAB)
    odd.write_bytes(b"")
    with pytest.raises(ValueError, match=r"odd\.bin is empty"):
        load_corpus(odd, vocab_size=VOCAB)


def test_a_file_too_short_for_one_sequence_is_refused(tmp_path, tokens):
    short = tmp_path / "short.bin"
    np.fromfile(tokens, dtype=np.uint16)[:400].tofile(short)  # val: the last 1%, 4 tokens
    with pytest.raises(ValueError, match=r"short\.bin is too short for one sequence: its val "
                       r"split holds 4 tokens, fewer than seq_len \+ 1 = 33"):  # fmt: skip
        load_corpus(short, vocab_size=VOCAB, seq_len=32)
    cfg = load_config(sweep_config(tmp_path, short, f"corpus_vocab_size = {VOCAB}\n"))
    with pytest.raises(ValueError, match=r"short\.bin is too short for one sequence"):
        run_sweep(cfg, f"sqlite:///{tmp_path / 'storage.db'}", workers=1, progress=False)
